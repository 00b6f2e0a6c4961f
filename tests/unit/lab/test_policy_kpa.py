"""The KPA with AIBrix's defaults: stable mode, panic mode, rates, the scale-down delay."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.policies.kpa import Kpa
from lab.policies.registry import parse
from lab.policies.static import StaticMetrics

pytestmark = pytest.mark.unit

KV = "vllm:kv_cache_usage_perc"
RUNNING = "vllm:num_requests_running"
PENDING = "brix_gateway_requests_pending"


def kpa(spec: str = "kpa") -> Kpa:
    (policy,) = parse(spec)
    made = policy.make()
    assert isinstance(made, Kpa)
    return made


def step(policy: Kpa, now: float, value: float | None, replicas: int,
         ready: int | None = None, metric: str = KV) -> int:
    sums = {} if value is None else {metric: value}
    return policy.decide(now=now, metrics=StaticMetrics(now, sums), replicas=replicas,
                         ready=replicas if ready is None else ready)


def test_aibrix_defaults() -> None:
    policy = kpa()
    assert (policy.stable_window, policy.panic_window, policy.panic_threshold) == (60, 6, 2.0)
    assert (policy.max_scale_up_rate, policy.max_scale_down_rate) == (2.0, 2.0)
    assert policy.scale_down_delay == 300.0
    assert (policy.metric, policy.target) == ("kv_cache", 0.5)


def test_stable_mode_follows_the_stable_window_mean() -> None:
    policy = kpa("kpa:metric=running;target=10")
    # 4 pods at 30 running in all: ceil(30 / 10) = 3, but the scale-down delay
    # (the highest count of the last 300 s) holds 4 as long as 4 was decided.
    replicas = 3
    for i in range(1, 9):
        replicas = step(policy, 15.0 * i, 30.0, replicas, metric=RUNNING)
    assert replicas == 3
    assert not policy.in_panic


def test_a_moderate_rise_moves_with_the_stable_mean_not_the_latest_sample() -> None:
    policy = kpa("kpa:metric=running;target=10;delay=0")
    replicas = 3
    # Knative starts in panic above one pod; it ends a stable window after t=15.
    for i in range(1, 7):  # t = 15..90: 30 running on 3 pods (at target)
        replicas = step(policy, 15.0 * i, 30.0, replicas, metric=RUNNING)
    assert replicas == 3
    assert not policy.in_panic
    # 50 running: ceil(50 / 10) = 5 is 1.67 x the 3 ready pods, under the 2.0 panic
    # threshold. The stable mean over 60 s (30, 30, 30, 50) is 35 -> 4 pods, not 5.
    replicas = step(policy, 105.0, 50.0, replicas, metric=RUNNING)
    assert not policy.in_panic
    assert replicas == 4


def test_panic_mode_scales_on_the_panic_window_at_once() -> None:
    policy = kpa("kpa:metric=running;target=10;delay=0")
    replicas = 2
    for i in range(1, 5):
        replicas = step(policy, 15.0 * i, 20.0, replicas, metric=RUNNING)
    # 45 running on 2 pods: ceil(45 / 10) = 5 is 2.5 x the ready pods >= 2.0: panic.
    # Stable alone would say ceil(mean(20, 20, 20, 45) / 10) = 3; panic takes the
    # panic window's 5, within the rate limit of ceil(2 x 2) = 4.
    replicas = step(policy, 75.0, 45.0, replicas, metric=RUNNING)
    assert policy.in_panic
    assert replicas == 4


def test_panic_never_scales_down_and_ends_a_stable_window_after_the_last_surge() -> None:
    policy = kpa("kpa:metric=running;target=10;delay=0")
    replicas = step(policy, 15.0, 50.0, 2, metric=RUNNING)  # 5 / 2 >= 2: panic
    assert policy.in_panic
    assert replicas == 4
    # Load falls: no scale-down while panicking.
    for i in range(2, 6):  # t = 30..75
        replicas = step(policy, 15.0 * i, 5.0, replicas, metric=RUNNING)
        assert replicas == 4
    assert policy.in_panic  # 60 s since the surge, not more
    replicas = step(policy, 90.0, 5.0, replicas, metric=RUNNING)
    assert not policy.in_panic  # 75 s > the stable window since the last surge
    assert replicas < 4


def test_scale_down_is_delayed_and_halves_at_most() -> None:
    policy = kpa("kpa:metric=running;target=10")
    replicas = 8
    for i in range(1, 6):
        replicas = step(policy, 15.0 * i, 80.0, replicas, metric=RUNNING)
    assert replicas == 8
    history = []
    for i in range(6, 130):  # to t = 1935
        replicas = step(policy, 15.0 * i, 0.0, replicas, metric=RUNNING)
        history.append((15.0 * i, replicas))
    # Every count decided in the last 300 s still holds: 8 until t=375 at least.
    assert all(r == 8 for t, r in history if t < 75.0 + 300.0)
    after = [r for t, r in history if t >= 75.0 + 300.0]
    assert after[0] < 8
    # Down at most by half per decision (max scale-down rate 2), never up, to the min:
    # each halving is itself held by the delay, so the descent takes several windows.
    counts = [8, *after]
    assert all(a // 2 <= b <= a for a, b in itertools.pairwise(counts))
    assert after[-1] == 1


def test_missing_metric_holds_and_from_zero_needs_pending() -> None:
    policy = kpa()
    assert step(policy, 15.0, None, 3) == 3
    zero = kpa("kpa:zero=true;min=0")
    assert step(zero, 15.0, None, 0) == 0
    woken = zero.decide(now=30.0, metrics=StaticMetrics(30.0, {PENDING: 2.0}), replicas=0,
                        ready=0)
    assert woken == 1


def test_scale_to_zero_only_when_enabled() -> None:
    on = kpa("kpa:zero=true;min=0;delay=0;metric=running;target=10")
    off = kpa("kpa:min=0;delay=0;metric=running;target=10")
    assert step(on, 15.0, 0.0, 1, metric=RUNNING) == 0
    assert step(off, 15.0, 0.0, 1, metric=RUNNING) == 1


@pytest.mark.parametrize(("spec", "word"), [
    ("kpa:panic_window=120", "panic_window"),
    ("kpa:panic=11", "panic"),
    ("kpa:up_rate=1", "up_rate"),
    ("kpa:metric=cpu", "metric"),
    ("kpa:min=3;max=2", "min"),
])
def test_bad_settings_are_refused_by_name(spec: str, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        parse(spec)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.one_of(st.none(), st.floats(0, 400)), st.integers(0, 40)),
                min_size=1, max_size=40),
       st.integers(1, 3), st.integers(3, 50))
def test_every_decision_is_within_bounds_and_the_rate_limits(
        steps: list[tuple[float | None, int]], low: int, high: int) -> None:
    policy = Kpa(metric="running", target=10.0, min_replicas=low, max_replicas=high,
                 scale_down_delay=0.0)
    replicas = low
    for i, (value, ready_seen) in enumerate(steps):
        ready = min(ready_seen, replicas)
        answer = step(policy, 15.0 * (i + 1), value, replicas, ready=ready, metric=RUNNING)
        assert low <= answer <= high or (value is None and answer == replicas)
        if value is not None and answer > max(replicas, low):
            assert answer <= math.ceil(2.0 * max(1, ready))  # at most doubles the ready pods
        replicas = answer
