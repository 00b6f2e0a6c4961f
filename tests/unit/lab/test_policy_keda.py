"""KEDA over the HPA: activation, scale to and from zero, the two clocks, null answers."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lab.policies.base import Autoscaler
from lab.policies.registry import parse
from lab.policies.static import StaticMetrics

pytestmark = pytest.mark.unit

WAITING = "vllm:num_requests_waiting"
RUNNING = "vllm:num_requests_running"
PENDING = "brix_gateway_requests_pending"


def one(spec: str) -> Autoscaler:
    (policy,) = parse(spec)
    return policy.make()


def drive(policy: Autoscaler, replicas: int, until: float,
          load: Callable[[float], dict[str, float]]) -> list[tuple[float, int]]:
    """Call ``decide`` every ``interval`` until ``until``, applying each answer at once
    (every pod ready); the (time, replicas) of each call."""
    out = []
    now = policy.interval
    while now <= until + 1e-9:
        replicas = policy.decide(now=now, metrics=StaticMetrics(now, load(now)),
                                 replicas=replicas, ready=replicas)
        out.append((now, replicas))
        now += policy.interval
    return out


def test_keda_hpa_scales_on_waiting_requests_per_replica() -> None:
    policy = one("keda-hpa")  # threshold 5
    got = drive(policy, 1, 15.0, lambda _: {WAITING: 23.0})
    assert got == [(15.0, 5)]  # ceil(23 / 5); within the first step's 4-pod/100 % limit


def test_sweep_thresholds_give_different_answers_to_one_load() -> None:
    answers = [p.make().decide(now=15.0, metrics=StaticMetrics(15.0, {WAITING: 20.0}),
                               replicas=2, ready=2) for p in parse("keda-hpa:threshold=1,2,5,10")]
    assert answers == [6, 6, 4, 2]  # 20, 10 capped at 2+4 / 2*2; ceil(20/5); ceil(20/10)


def test_keda_scales_to_zero_only_after_the_cooldown_since_last_active() -> None:
    policy = one("keda-hpa:min=0;cooldown=360")

    def load(now: float) -> dict[str, float]:
        return {WAITING: 3.0 if now <= 30.0 else 0.0}

    got = dict(drive(policy, 1, 600.0, load))
    assert got[30.0] == 1
    assert got[375.0] == 1  # 345 s after t=30
    assert got[390.0] == 0  # 360 s after the last active poll


def test_a_fresh_scaledobject_takes_a_target_never_active_to_zero_at_the_first_poll() -> None:
    policy = one("keda-hpa:min=0;fresh=true")
    assert policy.decide(now=15.0, metrics=StaticMetrics(15.0, {}), replicas=1, ready=1) == 0


@pytest.mark.parametrize(("spec", "cooldown"), [("keda-hpa:min=0", 360.0),
                                                ("brix-keda", 300.0)])
def test_a_run_starts_mid_operation_so_the_cooldown_counts_from_the_start(
        spec: str, cooldown: float) -> None:
    # The initial replicas of a min-0 ScaledObject were active within its cooldown
    # (each policy's default): an idle first poll (the scrape before the trace) holds
    # them until the cooldown has passed since 0, then goes to zero.
    policy = one(spec)
    got = dict(drive(policy, 1, cooldown + 30.0, lambda _: {}))
    assert all(replicas == 1 for now, replicas in got.items() if now < cooldown - 1e-9)
    assert got[cooldown] == 0  # the first poll a cooldown after 0


def test_from_zero_keda_activates_and_the_hpa_takes_over() -> None:
    policy = one("brix-keda")  # min 0; activity from the queue incl. the gateway's pending
    quiet = StaticMetrics(5.0, {})
    assert policy.decide(now=5.0, metrics=quiet, replicas=0, ready=0) == 0
    waiting = StaticMetrics(10.0, {PENDING: 30.0})
    assert policy.decide(now=10.0, metrics=waiting, replicas=0, ready=0) == 1
    # The HPA's next sync (t=15) scales on queue / 4 = 8 pods, rate-limited to 1 + 4.
    assert policy.decide(now=15.0, metrics=StaticMetrics(15.0, {PENDING: 30.0}),
                         replicas=1, ready=0) == 5


def test_keda_hpa_cannot_wake_from_zero_on_engine_metrics_alone() -> None:
    # At zero there are no engines, so no vllm series: KEDA reads 0 and stays inactive.
    policy = one("keda-hpa:min=0")
    got = drive(policy, 0, 120.0, lambda _: {PENDING: 50.0})
    assert {r for _, r in got} == {0}


def test_running_work_keeps_brix_keda_active() -> None:
    policy = one("brix-keda:cooldown=30")
    got = dict(drive(policy, 1, 120.0, lambda _: {RUNNING: 2.0, WAITING: 0.0}))
    assert got[120.0] >= 1


def test_the_hpa_acts_on_its_own_15s_clock_between_kedas_polls() -> None:
    policy = one("brix-keda")  # polling 5 s, called every 5 s
    assert policy.interval == 5.0
    got = drive(policy, 1, 30.0, lambda _: {WAITING: 40.0})
    assert got == [(5.0, 1), (10.0, 1), (15.0, 5), (20.0, 5), (25.0, 5), (30.0, 10)]


def test_ignore_null_values_reads_no_series_as_zero_or_holds() -> None:
    zeroed = one("keda-hpa:stabilization=0")
    held = one("keda-hpa:stabilization=0;ignore_null=false")
    empty = StaticMetrics(15.0, {})
    assert zeroed.decide(now=15.0, metrics=empty, replicas=4, ready=4) == 1
    assert held.decide(now=15.0, metrics=empty, replicas=4, ready=4) == 4


def test_activation_threshold_gates_scale_from_zero() -> None:
    policy = one("brix-keda:activation=5")
    assert policy.decide(now=5.0, metrics=StaticMetrics(5.0, {PENDING: 5.0}),
                         replicas=0, ready=0) == 0
    assert policy.decide(now=10.0, metrics=StaticMetrics(10.0, {PENDING: 6.0}),
                         replicas=0, ready=0) == 1
