"""brix-slo in the lab: scaler.slo over what Prometheus answers, through the registry."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lab.policies.registry import parse
from lab.policies.slo import BrixSlo
from lab.policies.static import StaticMetrics

pytestmark = pytest.mark.unit

REQUESTS = "brix_gateway_requests_total"
WAITING = "vllm:num_requests_waiting"
PENDING = "brix_gateway_requests_pending"
RUNNING = "vllm:num_requests_running"
TTFT = "vllm:time_to_first_token_seconds"
SUCCESS = "vllm:request_success_total"
PROMPT = "vllm:prompt_tokens_total"
OUTPUT = "vllm:generation_tokens_total"


def slo(spec: str = "brix-slo:capacity=2") -> BrixSlo:
    (policy,) = parse(spec)
    made = policy.make()
    assert isinstance(made, BrixSlo)
    return made


def test_demand_over_capacity_and_the_backlog_over_the_pod_start() -> None:
    policy = slo("brix-slo:capacity=2;utilization=0.8;ttft=2;pod_start=30")
    calm = policy.decide(now=15.0, metrics=StaticMetrics(15.0, {REQUESTS: 4.0}),
                         replicas=1, ready=1)
    assert calm == math.ceil(4.0 / (2 * 0.8))
    queued = slo("brix-slo:capacity=2;utilization=0.8;ttft=2;pod_start=30").decide(
        now=15.0, metrics=StaticMetrics(15.0, {REQUESTS: 4.0, WAITING: 40.0, PENDING: 40.0}),
        replicas=1, ready=1)
    assert queued == math.ceil((4.0 + 80.0 / 30) / (2 * 0.8))
    assert "forecast" in policy.last_reason


def test_a_ramp_scales_up_before_any_queue_forms() -> None:
    ahead = slo("brix-slo:capacity=2;pod_start=60")
    loop = parse("brix-loop")[0].make()
    replicas_slo = replicas_loop = 2
    for i in range(1, 21):  # 5 minutes; the rate climbs 0.5/s every 15 s, nothing waits
        now = 15.0 * i
        view = StaticMetrics(now, {REQUESTS: 0.5 * i, WAITING: 0.0, RUNNING: 0.5 * i})
        replicas_slo = ahead.decide(now=now, metrics=view, replicas=replicas_slo,
                                    ready=replicas_slo)
        replicas_loop = loop.decide(now=now, metrics=view, replicas=replicas_loop,
                                    ready=replicas_loop)
    assert replicas_loop <= 2  # no queue: the queue policy sees nothing to do
    per_replica = 2 * 0.8
    rate_now, rate_then = 0.5 * 20, 0.5 * (300 + 60) / 15  # the line at t=300 and t=360
    assert replicas_slo == math.ceil(rate_then / per_replica)
    assert replicas_slo > math.ceil(rate_now / per_replica)


def test_without_a_capacity_it_holds_and_says_why_then_learns() -> None:
    policy = slo("brix-slo")
    missed = StaticMetrics(15.0, {REQUESTS: 3.0}, quantiles={TTFT: 9.0})
    assert policy.decide(now=15.0, metrics=missed, replicas=3, ready=3) == 3
    assert "initialCapacity" in policy.last_reason
    met = StaticMetrics(30.0, {REQUESTS: 3.0}, quantiles={TTFT: 0.5})
    answer = policy.decide(now=30.0, metrics=met, replicas=3, ready=3)
    assert answer == math.ceil(3.0 / (1.0 * 0.8))  # capacity: at least the 1/s met
    assert "initialCapacity" not in policy.last_reason


@pytest.mark.parametrize(("spec", "key"), [
    ("brix-slo:ttft=0", "ttft"),
    ("brix-slo:attainment=0", "attainment"),
    ("brix-slo:attainment=1.5", "attainment"),
    ("brix-slo:capacity=-1", "capacity"),
    ("brix-slo:pod_start=-5", "pod_start"),
    ("brix-slo:min=4;max=2", "min"),
    ("brix-slo:tolerance=1", "tolerance"),
    ("brix-slo:tolerance=-0.1", "tolerance"),
])
def test_bad_settings_name_the_key(spec: str, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        parse(spec)


def test_the_scale_down_tolerance_is_a_setting() -> None:
    assert slo("brix-slo:capacity=2").policy.down_tolerance == 0.35
    assert slo("brix-slo:capacity=2;tolerance=0.995").policy.down_tolerance == 0.995
    assert not slo("brix-slo:capacity=2").policy.down_while_rising
    assert slo("brix-slo:capacity=2;hold_rising=false").policy.down_while_rising
    # 20 replicas, a demand 16 serve (a fifth fewer), no window: 0.25 holds, 0.1 steps down.
    view = StaticMetrics(15.0, {REQUESTS: 16 * 2 * 0.8})
    held = slo("brix-slo:capacity=2;window=0;tolerance=0.25")
    assert held.decide(now=15.0, metrics=view, replicas=20, ready=20) == 20
    moved = slo("brix-slo:capacity=2;window=0;tolerance=0.1")
    assert moved.decide(now=15.0, metrics=view, replicas=20, ready=20) == 16


GPU = {"name": "test-gpu", "prefill_tokens_per_s": 20000.0, "decode_ms_per_token": 8.0,
       "decode_ms_per_token_per_seq": 0.08, "max_num_seqs": 256}


def test_a_profile_sizes_for_the_measured_lengths(tmp_path: Path) -> None:
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps(GPU), encoding="utf-8")
    policy = slo(f"brix-slo:profile={path}")
    assert policy.policy.profile is not None
    done = 10.0  # completions/s: 1200 prompt and 300 output tokens each
    view = StaticMetrics(15.0, {REQUESTS: 30.0, SUCCESS: done, PROMPT: 1200.0 * done,
                                OUTPUT: 300.0 * done})
    answer = policy.decide(now=15.0, metrics=view, replicas=1, ready=1)
    per_replica = policy.policy.profile.requests_per_s(1200.0, 300.0) * 0.8
    assert answer == math.ceil(30.0 / per_replica)


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", json.dumps({"name": "x"})])
def test_a_bad_profile_is_refused_at_parse_time(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match="brix-slo") as info:
        parse(f"brix-slo:profile={path}")
    assert "\n" not in str(info.value)


def test_a_missing_profile_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nowhere"):
        parse(f"brix-slo:profile={tmp_path / 'nowhere.json'}")


def test_the_runs_profile_is_taken_only_when_the_settings_give_none() -> None:
    bare = slo("brix-slo")
    assert bare.use_profile(GPU)
    assert bare.policy.profile is not None
    done = 10.0
    view = StaticMetrics(15.0, {REQUESTS: 30.0, SUCCESS: done, PROMPT: 1200.0 * done,
                                OUTPUT: 300.0 * done})
    answer = bare.decide(now=15.0, metrics=view, replicas=1, ready=1)
    assert answer == math.ceil(30.0 / (bare.policy.profile.requests_per_s(1200, 300) * 0.8))
    fixed = slo("brix-slo:capacity=3")
    assert not fixed.use_profile(GPU)
    assert fixed.policy.profile is None
    with pytest.raises(ValueError, match="max_num_seqs"):
        slo("brix-slo").use_profile({k: v for k, v in GPU.items() if k != "max_num_seqs"})


def test_an_absent_request_series_is_not_zero_demand() -> None:
    policy = slo("brix-slo:capacity=2;utilization=0.8;tolerance=0;window=0")
    engines_only = StaticMetrics(15.0, {WAITING: 0.0, RUNNING: 20.0})
    assert policy.decide(now=15.0, metrics=engines_only, replicas=6, ready=6) == 6
    assert "absent data is not zero demand" in policy.last_reason
    # The engines' own count of answered requests stands in for the gateway's.
    served = StaticMetrics(30.0, {SUCCESS: 8.0, WAITING: 0.0, RUNNING: 20.0})
    assert policy.decide(now=30.0, metrics=served, replicas=6, ready=6) == math.ceil(
        8.0 / (2 * 0.8))
