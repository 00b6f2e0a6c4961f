"""The SLO policy core: arithmetic, forecast, backlog, windows, zero, capacity, bad input."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaler.slo import (
    Load,
    ProfileCapacity,
    Slo,
    SloDecision,
    SloError,
    SloPolicy,
    SloState,
    decide,
    forecast,
)

pytestmark = pytest.mark.unit

SLO = Slo(ttft=2.0)
GPU = {"prefill_tokens_per_s": 20000.0, "decode_ms_per_token": 8.0,
       "decode_ms_per_token_per_seq": 0.08, "max_num_seqs": 256}


def policy(**kwargs: object) -> SloPolicy:
    base: dict[str, object] = {"slo": SLO, "pod_start": 60.0, "capacity": 2.0,
                               "min_replicas": 1, "max_replicas": 50}
    base.update(kwargs)
    return SloPolicy(**base)  # type: ignore[arg-type]


def load(rate: float, replicas: int, *, queue: float = 0.0, running: float = 0.0,
         ttft: float | None = None, tpot: float | None = None) -> Load:
    """A measured load with every replica ready."""
    return Load(rate=rate, replicas=replicas, ready=replicas, queue=queue, running=running,
                ttft=ttft, tpot=tpot)


def run(p: SloPolicy, steps: list[tuple[float, Load]]) -> list[int]:
    state = SloState()
    out = []
    for now, observed in steps:
        decision, state = decide(p, state, observed, now)
        out.append(decision.desired)
    return out


# --- the arithmetic -------------------------------------------------------------------

def test_steady_demand_over_capacity_times_utilisation() -> None:
    p = policy()
    decision, _ = decide(p, SloState(), load(10.0, 1), now=15.0)
    assert decision.desired == math.ceil(10.0 / (p.capacity * p.utilization))  # type: ignore[operator]
    assert "\n" not in decision.reason
    assert "capacity" in decision.reason
    assert "forecast" in decision.reason
    assert decision.reason.endswith("; observed at 0.99: ttft none (target 2s)")


def test_the_reason_names_the_observed_quantiles_against_their_targets() -> None:
    p = policy(slo=Slo(ttft=2.0, tpot=0.05, attainment=0.95))
    d, _ = decide(p, SloState(), load(4.0, 4, ttft=0.5, tpot=0.2), now=15.0)
    assert d.reason.endswith("; observed at 0.95: ttft 0.5s (target 2s), tpot 0.2s (target 0.05s)")


def test_the_backlog_must_drain_by_the_time_a_new_pod_serves() -> None:
    # Over the pod start (60 s here), not the TTFT target: pods sized to drain the queue
    # within 2 s would come 60 s later, after that queue was due.
    p = policy()
    without, _ = decide(p, SloState(), load(4.0, 3), now=15.0)
    with_queue, _ = decide(p, SloState(), load(4.0, 3, queue=160.0), now=15.0)
    per_replica = p.capacity * p.utilization  # type: ignore[operator]
    assert without.desired == math.ceil(4.0 / per_replica)
    assert with_queue.desired == math.ceil((4.0 + 160.0 / 60.0) / per_replica)
    assert "backlog 160/60s" in with_queue.reason
    # A pod that serves at once (pod start 0): drained within the TTFT target.
    warm = policy(pod_start=0.0)
    fast, _ = decide(warm, SloState(), load(4.0, 3, queue=16.0), now=15.0)
    assert fast.desired == math.ceil((4.0 + 16.0 / SLO.ttft) / per_replica)


def test_only_a_queue_that_persists_counts_as_backlog() -> None:
    p = policy()
    per_replica = p.capacity * p.utilization  # type: ignore[operator]
    _, state = decide(p, SloState(), load(4.0, 3), now=15.0)
    blip, state = decide(p, state, load(4.0, 3, queue=160.0), now=30.0)
    assert blip.desired == math.ceil(4.0 / per_replica)  # drained by itself or not yet seen twice
    kept, _ = decide(p, state, load(4.0, 3, queue=200.0), now=45.0)
    assert kept.desired == math.ceil((4.0 + 160.0 / p.pod_start) / per_replica)


def test_a_ramp_is_provisioned_for_a_pod_start_ahead() -> None:
    # The rate climbs 0.01/s per second; a pod started now serves 60 s later.
    p = policy(max_replicas=100)
    steps = [(t, load(0.01 * t, 1)) for t in range(15, 301, 15)]
    state = SloState()
    for now, observed in steps:
        decision, state = decide(p, state, observed, float(now))
    assert decision.forecast == pytest.approx(0.01 * (300 + 60))
    per_replica = p.capacity * p.utilization  # type: ignore[operator]
    assert decision.desired == math.ceil(0.01 * 360 / per_replica - 1e-9)
    assert decision.desired > math.ceil(0.01 * 300 / per_replica)


def test_never_below_what_the_running_work_needs() -> None:
    p = policy(concurrency=8.0, down_tolerance=0.0, scale_down_window=0.0)
    decision, _ = decide(p, SloState(), load(0.0, 6, running=30.0), now=15.0)
    assert decision.desired == math.ceil(30.0 / 8.0)


def test_the_profiles_batch_is_the_concurrency_and_busy_work_keeps_one() -> None:
    profile = ProfileCapacity.from_mapping({**GPU, "max_num_seqs": 8})
    p = policy(capacity=2.0, profile=profile, down_tolerance=0.0, scale_down_window=0.0)
    decision, _ = decide(p, SloState(), load(0.0, 6, running=30.0), now=15.0)
    assert decision.desired == math.ceil(30.0 / 8)
    # A brief queue beside a little running work is no sign of a full replica.
    bare = policy(capacity=2.0, min_replicas=0)
    decision, _ = decide(bare, SloState(), load(0.0, 3, running=2.0, queue=1.0), now=15.0)
    assert decision.desired >= 1


# --- windows and zero -----------------------------------------------------------------

def test_scale_down_waits_until_demand_has_stayed_lower_for_the_window() -> None:
    p = policy(scale_down_window=120.0)
    high = math.ceil(20.0 / (p.capacity * p.utilization))  # type: ignore[operator]
    got = run(p, [(15.0, load(20.0, 1))] + [(15.0 * i, load(1.0, high))
                                            for i in range(2, 12)])
    assert got[0] == high
    times = [15.0 * i for i in range(2, 12)]
    held = [g for t, g in zip(times, got[1:], strict=True) if t - 15.0 < 120.0]
    after = [g for t, g in zip(times, got[1:], strict=True) if t - 15.0 >= 120.0]
    assert set(held) == {high}
    assert after[0] < high


def test_a_fresh_state_scales_down_only_after_a_window_of_its_own() -> None:
    # A restarted scaler (or a new term, or a forgotten ScaledObject) finds 20 replicas
    # and a demand that 2 serve: it has not seen the demand of the window before it.
    p = policy(scale_down_window=120.0, down_tolerance=0.0)
    low = math.ceil(3.0 / (p.capacity * p.utilization))  # type: ignore[operator]
    state = SloState()
    answers = []
    for now in range(1000, 1136, 15):  # its first decision at t=1000
        decision, state = decide(p, state, load(3.0, 20), now=float(now))
        answers.append((now, decision.desired))
        if now == 1000:
            assert "fresh state" in decision.reason, decision.reason
    assert [d for t, d in answers if t - 1000 < 120] == [20] * 8
    assert [d for t, d in answers if t - 1000 >= 120] == [low, low]


def test_a_fresh_state_scales_up_at_once_and_without_a_window_down_at_once() -> None:
    p = policy(scale_down_window=120.0)
    up, _ = decide(p, SloState(), load(20.0, 2), now=500.0)
    assert up.desired == math.ceil(20.0 / (p.capacity * p.utilization))  # type: ignore[operator]
    none = policy(scale_down_window=0.0, down_tolerance=0.0)
    down, _ = decide(none, SloState(), load(3.0, 20), now=500.0)
    assert down.desired == math.ceil(3.0 / (none.capacity * none.utilization))  # type: ignore[operator]


def test_a_fresh_state_holds_above_the_maximum_only_down_to_it() -> None:
    p = policy(scale_down_window=120.0, max_replicas=10)
    decision, _ = decide(p, SloState(), load(3.0, 20), now=15.0)
    assert decision.desired == 10


def test_a_scale_down_smaller_than_the_tolerance_holds() -> None:
    # 20 replicas; the demand falls to what 18 (a tenth fewer) or 10 (half) serve.
    per_replica = 2.0 * 0.8
    for wanted, tolerance, expected in ((18, 0.25, 20), (18, 0.0, 18), (10, 0.25, 10)):
        p = policy(scale_down_window=0.0, down_tolerance=tolerance)
        got = run(p, [(15.0, load(per_replica * wanted, 20))])
        assert got == [expected], (wanted, tolerance)
    # Holding never goes above the maximum.
    capped = policy(scale_down_window=0.0, down_tolerance=0.25, max_replicas=19)
    assert run(capped, [(15.0, load(per_replica * 18, 20))]) == [19]


def _rising(p: SloPolicy) -> list[tuple[float, SloDecision]]:
    """20 replicas while the demand steps from 2/s to 6/s at t=120."""
    state, out = SloState(), []
    for now in range(0, 181, 15):
        decision, state = decide(p, state, load(2.0 if now < 120 else 6.0, 20), float(now))
        out.append((now, decision))
    return out


def test_no_scale_down_while_the_demand_is_above_its_mean_over_the_window() -> None:
    # max_growth 1: the trend never asks above the rate now, only the hold is seen.
    p = policy(scale_down_window=60.0, down_tolerance=0.0, max_growth=1.0)
    low = math.ceil(6.0 / (p.capacity * p.utilization))  # type: ignore[operator]
    got = _rising(p)
    # From 60 s (the fresh state's own window) down to what 2/s needs; 6/s at t=120 is
    # above the mean of the last 60 s until that holds only 6/s (t=165).
    assert [d.desired for t, d in got if 60 <= t < 120] == [math.ceil(2.0 / 1.6)] * 4
    assert [d.desired for t, d in got if 120 <= t < 165] == [20] * 3
    assert "above its mean" in got[8][1].reason, got[8][1].reason
    assert [d.desired for t, d in got if t >= 165] == [low] * 2
    # Turned off, the step down comes at once.
    free = _rising(policy(scale_down_window=60.0, down_tolerance=0.0, max_growth=1.0,
                          down_while_rising=True))
    assert [d.desired for t, d in free if t >= 120] == [low] * 5


def test_to_zero_after_the_cooldown_and_back_on_the_first_queued_request() -> None:
    p = policy(min_replicas=0, zero_cooldown=60.0)
    state = SloState()
    d, state = decide(p, state, load(1.0, 1), now=15.0)
    assert d.desired == 1
    answers = []
    for now in (30.0, 45.0, 60.0, 75.0):
        d, state = decide(p, state, load(0.0, 1), now=now)
        answers.append(d.desired)
    assert answers == [1, 1, 1, 0]  # idle since t=15: 60 s at t=75
    assert "cooldown" in d.reason
    d, state = decide(p, state, load(0.0, 0), now=90.0)
    assert d.desired == 0
    d, state = decide(p, state, load(0.0, 0, queue=1.0), now=105.0)
    assert d.desired >= 1


# --- capacity ---------------------------------------------------------------------------

def test_met_targets_at_a_higher_load_raise_the_capacity_a_fraction_of_the_gap() -> None:
    p = policy(capacity=2.0, capacity_gain=0.2)
    d, _ = decide(p, SloState(), load(12.0, 4, ttft=0.5), now=15.0)  # 3/s per replica, met
    assert d.capacity == pytest.approx(2.0 + 0.2 * (3.0 - 2.0))


def test_missed_targets_at_a_lower_load_lower_it() -> None:
    p = policy(capacity=2.0, capacity_gain=0.2)
    # 1/s per replica, missed, with a queue:
    d, _ = decide(p, SloState(), load(4.0, 4, ttft=5.0, queue=2.0), now=15.0)
    assert d.capacity == pytest.approx(2.0 - 0.2 * (2.0 - 1.0))


def test_a_miss_without_a_persisting_queue_is_not_the_load() -> None:
    # A slow quantile with nothing queued is the requests' own work (a prompt whose
    # prefill outlasts the target misses at any scale): the capacity stays.
    p = policy(capacity=2.0, capacity_gain=0.2)
    d, state = decide(p, SloState(), load(4.0, 4, ttft=5.0), now=15.0)
    assert d.capacity == 2.0
    # A queue seen once is not yet persisting (the window holds the empty one before).
    d, _ = decide(p, state, load(4.0, 4, ttft=5.0, queue=3.0), now=30.0)
    assert d.capacity == 2.0


def test_agreeing_observations_leave_it_alone() -> None:
    p = policy(capacity=2.0)
    met_below, _ = decide(p, SloState(), load(4.0, 4, ttft=0.5), now=15.0)
    missed_above, _ = decide(p, SloState(), load(12.0, 4, ttft=5.0), now=15.0)
    assert met_below.capacity == missed_above.capacity == 2.0


def test_it_stays_within_the_range_of_the_prior() -> None:
    p = policy(capacity=2.0, capacity_gain=1.0, capacity_range=4.0)
    d, _ = decide(p, SloState(), load(100.0, 1, ttft=0.1), now=15.0)
    assert d.capacity == 8.0


def test_tpot_misses_count_as_misses() -> None:
    p = policy(slo=Slo(ttft=2.0, tpot=0.05), capacity=2.0)
    d, _ = decide(p, SloState(), load(4.0, 4, ttft=0.5, tpot=0.2, queue=1.0), now=15.0)
    assert d.capacity < 2.0


def test_without_a_queue_neither_a_ttft_nor_a_tpot_miss_lowers_the_capacity() -> None:
    # A long prompt's prefill misses the TTFT at any scale, and stretches the decode
    # steps of the requests beside it at any load: no queue, so not the fleet's load.
    p = policy(slo=Slo(ttft=2.0, tpot=0.05), capacity=2.0)
    tpot_missed, _ = decide(p, SloState(), load(4.0, 4, ttft=0.5, tpot=0.2), now=15.0)
    ttft_missed, _ = decide(p, SloState(), load(4.0, 4, ttft=5.0, tpot=0.01), now=15.0)
    assert tpot_missed.capacity == ttft_missed.capacity == 2.0


def test_without_a_profile_it_refuses_until_targets_are_met_under_load() -> None:
    p = policy(capacity=None)
    with pytest.raises(SloError, match="initialCapacity") as info:
        decide(p, SloState(), load(3.0, 2, ttft=9.0), now=15.0)
    assert info.value.key == "initialCapacity"
    d, _ = decide(p, SloState(), load(3.0, 2, ttft=1.0), now=15.0)
    assert d.capacity == 1.5  # at least the load it was seen to meet


def test_without_a_capacity_an_idle_fleet_holds_without_an_error() -> None:
    d, _ = decide(policy(capacity=None), SloState(), load(0.0, 2), now=15.0)
    assert (d.desired, d.direction) == (2, "none")
    assert "idle" in d.reason


def test_from_zero_needs_no_capacity() -> None:
    p = policy(capacity=None, min_replicas=0)
    d, _ = decide(p, SloState(), load(0.0, 0, queue=2.0), now=15.0)
    assert d.desired == 1


# --- the forecast ---------------------------------------------------------------------

def test_forecast_is_the_fitted_line_bounded() -> None:
    line = tuple((t, 1.0 + 0.02 * t) for t in (0.0, 15.0, 30.0, 45.0))
    assert forecast(line, 105.0, max_growth=10.0) == pytest.approx(1.0 + 0.02 * 105.0)
    assert forecast(line, 105.0, max_growth=1.5) == pytest.approx(1.5 * line[-1][1])
    falling = tuple((t, 10.0 - 0.1 * t) for t in (0.0, 15.0, 30.0))
    assert forecast(falling, 500.0, max_growth=2.0) == 0.0
    assert forecast((), 10.0, max_growth=2.0) == 0.0


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.floats(0, 1e4), min_size=1, max_size=30), st.floats(0, 600),
       st.floats(1, 5))
def test_forecast_never_leaves_its_bounds(rates: list[float], ahead: float,
                                          growth: float) -> None:
    samples = tuple((15.0 * i, r) for i, r in enumerate(rates))
    value = forecast(samples, samples[-1][0] + ahead, max_growth=growth)
    assert 0.0 <= value <= growth * rates[-1] + 1e-9


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.floats(0, 200), st.floats(0, 100), st.floats(0, 100),
                          st.integers(0, 30)), min_size=1, max_size=25),
       st.integers(0, 3), st.integers(4, 40))
def test_decisions_stay_within_bounds_and_explain_themselves(
        steps: list[tuple[float, float, float, int]], low: int, high: int) -> None:
    p = policy(min_replicas=low, max_replicas=high)
    state = SloState()
    for i, (rate, queue, running, replicas) in enumerate(steps):
        d, state = decide(p, state, Load(rate=rate, queue=queue, running=running,
                                         replicas=replicas, ready=replicas), 15.0 * (i + 1))
        assert d.desired == 0 or low <= d.desired <= high
        if d.desired == 0:
            assert low == 0
        assert d.reason.startswith(f"{replicas} -> {d.desired}: ")
        assert "\n" not in d.reason


# --- bad input --------------------------------------------------------------------------

@pytest.mark.parametrize(("make", "key"), [
    (lambda: Slo(ttft=0.0), "ttft"),
    (lambda: policy(down_tolerance=1.0), "down_tolerance"),
    (lambda: Slo(ttft=-1.0), "ttft"),
    (lambda: Slo(ttft=math.nan), "ttft"),
    (lambda: Slo(ttft=1.0, tpot=0.0), "tpot"),
    (lambda: Slo(ttft=1.0, attainment=0.0), "attainment"),
    (lambda: Slo(ttft=1.0, attainment=1.01), "attainment"),
    (lambda: SloPolicy(slo=SLO, pod_start=-1.0), "podStartSeconds"),
    (lambda: SloPolicy(slo=SLO, pod_start=60.0, capacity=0.0), "initialCapacity"),
    (lambda: SloPolicy(slo=SLO, pod_start=60.0, utilization=1.5), "utilization"),
    (lambda: SloPolicy(slo=SLO, pod_start=60.0, min_replicas=3, max_replicas=2),
     "maxReplicas"),
    (lambda: Load(rate=-1.0, replicas=1, ready=1), "rate"),
    (lambda: Load(rate=1.0, queue=math.inf, replicas=1, ready=1), "queue"),
])
def test_bad_input_raises_naming_the_key(make: object, key: str) -> None:
    with pytest.raises(SloError) as info:
        make()  # type: ignore[operator]
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ")


def test_attainment_of_one_is_allowed() -> None:
    assert Slo(ttft=1.0, attainment=1.0).attainment == 1.0


# --- a profile as the prior -------------------------------------------------------------


def test_profile_capacity_falls_with_longer_requests_and_rises_with_a_bigger_batch() -> None:
    profile = ProfileCapacity.from_mapping(GPU)
    base = profile.requests_per_s(1000, 250)
    assert profile.requests_per_s(4000, 250) < base
    assert profile.requests_per_s(1000, 1000) < base
    bigger = ProfileCapacity.from_mapping({**GPU, "max_num_seqs": 512})
    assert bigger.requests_per_s(1000, 250) > base
    # Prefill-only work runs at the prefill speed.
    assert profile.requests_per_s(2000, 0) == pytest.approx(GPU["prefill_tokens_per_s"] / 2000)


def test_a_tpot_target_that_the_full_batch_meets_changes_nothing() -> None:
    profile = ProfileCapacity.from_mapping(GPU)
    # At saturation a sequence's time per token is batch / (rate x output) = 0.08 s here.
    assert profile.requests_per_s(1000, 250, tpot=0.1) == pytest.approx(
        profile.requests_per_s(1000, 250))
    # One-token answers have no time per output token.
    assert profile.requests_per_s(1000, 1, tpot=0.01) == profile.requests_per_s(1000, 1)


def _meets(profile: ProfileCapacity, rate: float, prompt: float, output: float,
           tpot: float) -> bool:
    """Whether some batch serves ``rate`` with a mean time per token within ``tpot``."""
    prefill_share = rate * prompt / profile.prefill_tokens_per_s
    for batch in range(1, profile.max_num_seqs + 1):
        step = profile.step_seconds(batch)
        decodes = (1 - prefill_share) * batch / step  # tokens/s the batch decodes
        if prefill_share < 1 and step / (1 - prefill_share) <= tpot * (1 + 1e-9) \
                and rate * output <= decodes * (1 + 1e-9):
            return True
    return False


@pytest.mark.parametrize("tpot", [0.009, 0.012, 0.02, 0.03, 0.05, 0.07])
@pytest.mark.parametrize(("prompt", "output"), [(1000, 250), (12000, 340), (100, 800)])
def test_a_tpot_target_bounds_the_capacity_to_the_most_a_batch_serves_within_it(
        tpot: float, prompt: float, output: float) -> None:
    profile = ProfileCapacity.from_mapping(GPU)
    rate = profile.requests_per_s(prompt, output, tpot=tpot)
    assert 0 < rate <= profile.requests_per_s(prompt, output)
    assert _meets(profile, rate, prompt, output, tpot)
    assert not _meets(profile, rate * 1.01, prompt, output, tpot)
    # A tighter target never serves more.
    assert profile.requests_per_s(prompt, output, tpot=tpot * 0.8) <= rate


def test_decode_only_work_under_a_tpot_target_runs_the_biggest_batch_within_it() -> None:
    profile = ProfileCapacity.from_mapping(GPU)
    # 8 ms + 0.08 ms per further sequence <= 16 ms: 101 sequences, 16 ms a step.
    assert profile.requests_per_s(0, 250, tpot=0.016) == pytest.approx(101 / (250 * 0.016))


def test_a_tpot_target_below_one_decode_step_is_refused_naming_tpot() -> None:
    profile = ProfileCapacity.from_mapping(GPU)
    with pytest.raises(SloError) as info:
        policy(capacity=None, profile=profile, slo=Slo(ttft=2.0, tpot=0.008))
    assert info.value.key == "tpot"
    assert "0.008" in str(info.value)
    # A stated capacity is what one replica serves within the targets: no profile to ask.
    assert policy(capacity=2.0, profile=profile, slo=Slo(ttft=2.0, tpot=0.008)).capacity == 2.0


def test_the_profile_prior_prices_the_tpot_target() -> None:
    profile = ProfileCapacity.from_mapping(GPU)
    p = policy(capacity=None, profile=profile, slo=Slo(ttft=2.0, tpot=0.02))
    measured = Load(rate=1.0, replicas=2, ready=2, prompt_tokens=1000.0, output_tokens=250.0)
    d, _ = decide(p, SloState(), measured, now=15.0)
    assert d.capacity == pytest.approx(profile.requests_per_s(1000, 250, tpot=0.02))
    assert d.capacity < profile.requests_per_s(1000, 250)


def test_profile_mapping_errors_name_the_key() -> None:
    with pytest.raises(SloError) as info:
        ProfileCapacity.from_mapping({k: v for k, v in GPU.items() if k != "max_num_seqs"})
    assert info.value.key == "max_num_seqs"
    with pytest.raises(SloError) as info:
        ProfileCapacity.from_mapping({**GPU, "prefill_tokens_per_s": 0})
    assert info.value.key == "prefill_tokens_per_s"


def test_the_profile_prior_follows_the_measured_lengths() -> None:
    profile = ProfileCapacity.from_mapping(GPU)
    p = policy(capacity=None, profile=profile, max_replicas=100)
    short = Load(rate=40.0, replicas=1, ready=1, prompt_tokens=500, output_tokens=100)
    long_ = Load(rate=40.0, replicas=1, ready=1, prompt_tokens=4000, output_tokens=800)
    d_short, _ = decide(p, SloState(), short, now=15.0)
    d_long, _ = decide(p, SloState(), long_, now=15.0)
    assert d_short.capacity == pytest.approx(profile.requests_per_s(500, 100))
    assert d_short.desired == math.ceil(40.0 / (d_short.capacity * p.utilization))
    assert d_long.desired > d_short.desired


def test_a_correction_learnt_at_one_mix_carries_to_the_next() -> None:
    profile = ProfileCapacity.from_mapping(GPU)
    p = policy(capacity=None, profile=profile, capacity_gain=0.5, max_replicas=100)
    prior = profile.requests_per_s(1000, 200)
    # Missed at half the prior's load per replica: the estimate drops halfway to it.
    missed = Load(rate=prior / 2 * 4, replicas=4, ready=4, prompt_tokens=1000,
                  output_tokens=200, ttft=10.0, queue=2.0)
    d, state = decide(p, SloState(), missed, now=15.0)
    assert d.capacity == pytest.approx(prior * 0.75)
    other = Load(rate=1.0, replicas=4, ready=4, prompt_tokens=3000, output_tokens=100)
    d, _ = decide(p, state, other, now=30.0)
    assert d.capacity == pytest.approx(profile.requests_per_s(3000, 100) * 0.75)


def test_a_burst_at_an_idle_fleet_is_priced_at_the_prior_lengths_not_held() -> None:
    # A profile but nothing answered yet, so no lengths measured: the capacity is the
    # profile's at the stated prior lengths, and the burst scales up at once.
    profile = ProfileCapacity.from_mapping(GPU)
    p = policy(capacity=None, profile=profile, max_replicas=100)
    burst = Load(rate=0.0, replicas=1, ready=1, queue=1500.0, running=40.0)
    d, state = decide(p, SloState(), burst, now=15.0)
    assert d.capacity == pytest.approx(profile.requests_per_s(p.prompt_tokens, p.output_tokens))
    assert d.desired > 1
    d, _ = decide(p, state, burst, now=30.0)  # the queue persisted: its backlog counts
    assert d.desired == math.ceil(1500.0 / max(p.slo.ttft, p.pod_start)
                                  / (d.capacity * p.utilization))


def test_the_stated_prior_lengths_set_the_capacity_before_any_are_measured() -> None:
    profile = ProfileCapacity.from_mapping(GPU)
    short = policy(capacity=None, profile=profile, prompt_tokens=500.0, output_tokens=100.0)
    long_ = policy(capacity=None, profile=profile, prompt_tokens=8000.0, output_tokens=800.0)
    unmeasured = Load(rate=20.0, replicas=2, ready=2)
    d_short, _ = decide(short, SloState(), unmeasured, now=15.0)
    d_long, _ = decide(long_, SloState(), unmeasured, now=15.0)
    assert d_short.capacity == pytest.approx(profile.requests_per_s(500.0, 100.0))
    assert d_long.capacity == pytest.approx(profile.requests_per_s(8000.0, 800.0))
    assert d_long.desired > d_short.desired


@pytest.mark.parametrize(("field", "value", "key"), [
    ("prompt_tokens", 0.0, "promptTokens"), ("prompt_tokens", math.nan, "promptTokens"),
    ("output_tokens", -1.0, "outputTokens"),
])
def test_bad_prior_lengths_name_the_key(field: str, value: float, key: str) -> None:
    with pytest.raises(SloError) as info:
        policy(**{field: value})
    assert info.value.key == key


def test_idle_with_a_profile_and_no_lengths_yet_holds_at_its_minimum_then_zero() -> None:
    p = policy(capacity=None, profile=ProfileCapacity.from_mapping(GPU))
    d, _ = decide(p, SloState(), load(0.0, 1), now=15.0)
    assert (d.desired, d.direction) == (1, "none")
    # ... and with a minimum of 0 still reaches zero after the cooldown.
    p0 = policy(capacity=None, profile=ProfileCapacity.from_mapping(GPU), min_replicas=0,
                zero_cooldown=30.0)
    _, state = decide(p0, SloState(), load(0.0, 1), now=15.0)
    d, _ = decide(p0, state, load(0.0, 1), now=45.0)
    assert d.desired == 0


# --- the capacity learns per second, not per call ------------------------------------------

def learn(p: SloPolicy, times: list[float]) -> float:
    """The capacity after met targets at 3/s per replica (above the prior) at ``times``."""
    state = SloState()
    capacity = math.nan
    for now in times:
        d, state = decide(p, state, load(12.0, 4, ttft=0.5), now=now)
        capacity = d.capacity
    return capacity


def test_twice_the_calls_learn_no_faster() -> None:
    p = policy(capacity=2.0, capacity_gain=0.2)
    every_15 = learn(p, [15.0 * i for i in range(1, 7)])
    every_7_5 = learn(p, [15.0] + [15.0 + 7.5 * i for i in range(1, 11)])
    assert every_7_5 == pytest.approx(every_15)
    assert 2.0 < every_15 < 3.0


def test_the_gain_is_per_period_and_a_long_gap_counts_as_one_rate_window() -> None:
    p = policy(capacity=2.0, capacity_gain=0.2, capacity_gain_period=15.0, learn_window=60.0)
    first = learn(p, [15.0])
    assert first == pytest.approx(2.0 + 0.2 * 1.0)  # the first observation: one period
    after_30 = learn(p, [15.0, 45.0])
    assert after_30 == pytest.approx(first + (1 - 0.8 ** 2) * (3.0 - first))
    after_gap = learn(p, [15.0, 1015.0])
    assert after_gap == pytest.approx(first + (1 - 0.8 ** 4) * (3.0 - first))
    same_instant = learn(p, [15.0, 15.0])
    assert same_instant == pytest.approx(first)


def test_requests_with_no_tokens_counted_price_nothing_rather_than_infinity() -> None:
    # Requests answered while the engines counted no tokens (all refused, say): the
    # profile cannot price a zero-length request, so it prices the prior lengths,
    # never infinity or NaN arithmetic.
    profile = ProfileCapacity.from_mapping(GPU)
    p = policy(capacity=None, profile=profile)
    empty = Load(rate=2.0, replicas=2, ready=2, queue=1.0, running=1.0,
                 prompt_tokens=0.0, output_tokens=0.0)
    d, _ = decide(p, SloState(), empty, now=15.0)
    assert d.capacity == pytest.approx(profile.requests_per_s(p.prompt_tokens, p.output_tokens))
    # A capacity priced earlier carries on through such a minute.
    priced = Load(rate=2.0, replicas=2, ready=2, prompt_tokens=500.0, output_tokens=100.0)
    before, state = decide(p, SloState(), priced, now=15.0)
    after, _ = decide(p, state, empty, now=30.0)
    assert after.capacity == pytest.approx(before.capacity)
    assert math.isfinite(after.capacity)
