"""The event simulator: conservation, the engine's own timing, cold start, drain, hold, seeds."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from inference.sim.scheduler import Scheduler, Sequence
from lab.engine import TPOT_BUCKETS, Outcome, Result, SimSettings, simulate
from lab.policies.base import MetricsView
from lab.profiles import Profile, load_profile
from lab.traces import Request, Trace, load

pytestmark = pytest.mark.unit

PROFILE = Profile(name="test", prefill_tokens_per_s=10000.0, decode_ms_per_token=10.0,
                  decode_ms_per_token_per_seq=0.5, max_num_seqs=8, kv_cache_tokens=20000,
                  max_model_len=4096)


class Steps:
    """A test policy: the replica count of a schedule ``[(from time, replicas), ...]``."""

    def __init__(self, schedule: list[tuple[float, int]], interval: float = 15.0) -> None:
        self.schedule = schedule
        self.interval = interval
        self.seen: list[tuple[float, float | None]] = []

    def decide(self, *, now: float, metrics: MetricsView, replicas: int, ready: int) -> int:
        self.seen.append((now, metrics.sum("vllm:num_requests_running")))
        answer = replicas
        for at, n in self.schedule:
            if now >= at:
                answer = n
        return answer


def run(trace: Trace, policy: Steps, *, cold: float = 30.0, initial: int | None = 1,
        profile: Profile = PROFILE, **kw: object) -> Result:
    settings = SimSettings(cold_start=lambda _rng: cold, initial_replicas=initial, **kw)  # type: ignore[arg-type]
    return simulate(trace, profile, policy, settings)


def trace_of(*rows: tuple[float, int, int]) -> Trace:
    return Trace.of("t", [Request(arrival=a, prompt_tokens=p, output_tokens=o) for a, p, o in rows])


def test_every_request_ends_exactly_once() -> None:
    trace = load("synthetic:spike?rate=3&duration=300&seed=7&prompt_mean=800&output_mean=100")
    too_long = Request(arrival=trace.duration, prompt_tokens=5000, output_tokens=10)
    trace = Trace.of("t", [*trace.requests, too_long])
    result = run(trace, Steps([(15.0, 3), (150.0, 1), (200.0, 0), (260.0, 2)]), hold_timeout=20.0)
    outcome = result.outcome
    n = len(trace.requests)
    assert (outcome != Outcome.PENDING).all()
    completed = int((outcome == Outcome.COMPLETED).sum())
    failed = int((outcome != Outcome.COMPLETED).sum())
    assert completed + failed == n
    assert completed > 0
    assert (outcome == Outcome.TIMED_OUT).sum() > 0
    assert outcome[-1] == Outcome.TOO_LONG
    done = outcome == Outcome.COMPLETED
    assert not np.isnan(result.ttft[done]).any()
    assert not np.isnan(result.e2e[done]).any()
    assert np.isnan(result.e2e[~done]).all()
    assert (result.e2e[done] >= result.ttft[done]).all()


def reference(arrivals: list[tuple[float, int, int]],
              profile: Profile = PROFILE) -> list[tuple[float, float]]:
    """TTFT and e2e of one engine, run step by step with the scheduler (no batching of steps)."""
    sched = Scheduler(max_num_seqs=profile.max_num_seqs, kv_cache_tokens=profile.kv_cache_tokens,
                      max_loras=1, timing=profile.timing,
                      max_num_batched_tokens=profile.batched_tokens,
                      enable_chunked_prefill=profile.enable_chunked_prefill,
                      long_prefill_token_threshold=profile.long_prefill_token_threshold)
    now, i = 0.0, 0
    seqs: list[Sequence] = []
    while i < len(arrivals) or sched.num_running or sched.num_waiting:
        while i < len(arrivals) and arrivals[i][0] <= now:
            seq = Sequence(id=i, prompt_tokens=arrivals[i][1], output_len=arrivals[i][2],
                           arrival=arrivals[i][0])
            sched.add(seq)
            seqs.append(seq)
            i += 1
        step = sched.plan()
        if step is None:
            now = arrivals[i][0]
            continue
        now += step.seconds
        sched.commit(step, now)
    return [(s.first_token_at - s.arrival, s.finished_at - s.arrival)  # type: ignore[operator]
            for s in seqs]


@pytest.mark.parametrize(("chunked", "threshold"), [(True, 0), (False, 0), (True, 256)],
                         ids=["chunked-prefill", "whole-prefill", "capped-chunks"])
def test_engine_timing_matches_the_scheduler_run_step_by_step(chunked: bool,
                                                              threshold: int) -> None:
    # The 3000-token prompt is more than the default budget of 2048 tokens a step.
    profile = dataclasses.replace(PROFILE, enable_chunked_prefill=chunked,
                                  long_prefill_token_threshold=threshold)
    rows = [(0.0, 500, 40), (0.1337, 1000, 5), (0.1371, 200, 90), (1.7013, 3000, 12),
            (5.0029, 10, 3), (5.0101, 40, 30)]
    expected = reference(rows, profile)
    result = run(trace_of(*rows), Steps([]), profile=profile)
    for k, (ttft, e2e) in enumerate(expected):
        assert result.ttft[k] == pytest.approx(ttft, abs=1e-9)
        assert result.e2e[k] == pytest.approx(e2e, abs=1e-9)
    # One request alone: prefill + one decode pass, then a decode pass per token.
    alone = run(trace_of((0.0, 2000, 11)), Steps([]))
    assert alone.ttft[0] == pytest.approx(2000 / 10000 + 0.010)
    assert alone.e2e[0] == pytest.approx(2000 / 10000 + 0.010 * 11)


def test_a_new_pod_takes_requests_only_after_its_cold_start() -> None:
    # No pod at first; the policy asks for one at 15 s; it starts in 40 s.
    trace = trace_of((1.0, 100, 2), (20.0, 100, 2), (56.0, 100, 2))
    result = run(trace, Steps([(15.0, 1)]), cold=40.0, initial=0)
    assert (result.outcome == Outcome.COMPLETED).all()
    assert result.ttft[0] >= 55.0 - 1.0
    assert result.ttft[1] >= 55.0 - 20.0
    assert result.ttft[2] < 1.0
    ready_at = next(t for t, _, _, ready in result.timeline if ready == 1)
    assert ready_at == pytest.approx(55.0)


def test_held_requests_fail_after_the_gateway_timeout() -> None:
    trace = trace_of((0.0, 100, 2), (30.0, 100, 2), (70.0, 100, 2))
    # The pod is ready at 15 + 45 = 60 s: the first request has waited 60 s by then.
    result = run(trace, Steps([(15.0, 1)]), cold=45.0, initial=0, hold_timeout=50.0)
    assert list(result.outcome) == [Outcome.TIMED_OUT, Outcome.COMPLETED, Outcome.COMPLETED]
    assert result.peak_queue >= 2


def test_scale_down_drains_the_newest_pod_and_loses_nothing() -> None:
    # 2 ready pods; long requests on both; scale to 1 at 15 s while they run.
    trace = trace_of(*[(0.1 * k, 100, 3000) for k in range(6)])
    result = run(trace, Steps([(15.0, 1)]), initial=2)
    assert (result.outcome == Outcome.COMPLETED).all()
    after = [row for row in result.timeline if row[0] >= 15.0]
    # Right after the decision: 2 pods alive (one draining), spec 1, ready 1.
    assert after[0][1:] == (2, 1, 1)
    gone_at = next(t for t, alive, _, _ in after if alive == 1)
    assert gone_at > 15.0
    assert result.scale_events == 1
    assert result.oscillations == 0
    # Cost counts the draining pod until it is gone.
    assert result.replica_seconds == pytest.approx(gone_at + result.end_time, rel=1e-6)


def test_oscillations_count_direction_reversals() -> None:
    trace = trace_of(*[(10.0 * k, 100, 2) for k in range(20)])
    policy = Steps([(15.0, 2), (45.0, 3), (75.0, 1), (105.0, 2), (135.0, 1)])
    result = run(trace, policy)
    assert result.scale_events == 5
    assert result.oscillations == 3  # up up down up down


def test_a_policy_sees_only_what_was_scraped() -> None:
    trace = load("synthetic:steady?rate=5&duration=200&seed=1&output_mean=400")
    policy = Steps([], interval=10.0)
    run(trace, policy, scrape_interval=30.0)
    values = dict(policy.seen)
    # Between two scrapes (at 30 and 60) the decisions at 40 and 50 see the same sample.
    assert values[40.0] == values[50.0] == values[30.0 + 10.0]
    assert values[10.0] is not None  # the scrape at 0 s


def test_same_seed_same_run_and_routing_uses_the_picker() -> None:
    trace = load("synthetic:bursty?rate=8&duration=120&seed=3")

    def once(seed: int, routing: str) -> Result:
        return run(trace, Steps([]), initial=3, seed=seed, routing=routing)

    a, b = once(1, "random"), once(1, "random")
    assert np.array_equal(a.ttft, b.ttft, equal_nan=True)
    c = once(2, "random")
    assert not np.array_equal(a.ttft, c.ttft, equal_nan=True)
    with pytest.raises(ValueError, match="unknown routing strategy"):
        once(1, "fastest")


def test_bad_settings_and_answers_are_refused() -> None:
    with pytest.raises(ValueError, match="scrape_interval"):
        SimSettings(cold_start=lambda _r: 0.0, scrape_interval=0)

    class Bad(Steps):
        def decide(self, **kw: object) -> int:
            return -1

    with pytest.raises(ValueError, match="not a replica count"):
        run(trace_of((0.0, 10, 2), (100.0, 10, 2)), Bad([]))


def test_the_bundled_gpu_profile_fits_every_bundled_request() -> None:
    profile = load_profile("gpu-8b")
    for name in ("azure-conv", "mooncake-conv"):
        longest = max(r.prompt_tokens + r.output_tokens for r in load(name).requests)
        assert longest <= profile.max_model_len, name
    small = dataclasses.replace(PROFILE, max_model_len=600)
    result = run(trace_of((0.0, 500, 50), (1.0, 600, 1)), Steps([]), profile=small)
    assert list(result.outcome) == [Outcome.COMPLETED, Outcome.TOO_LONG]




class Recorder(Steps):
    """A test policy that records, at each decision, what the metrics say."""

    def __init__(self) -> None:
        super().__init__([], interval=15.0)
        self.rows: list[dict[str, float | None]] = []

    def decide(self, *, now: float, metrics: MetricsView, replicas: int, ready: int) -> int:
        self.rows.append({
            "now": now,
            "requests": metrics.sum_rate("brix_gateway_requests_total", 120.0),
            "generation": metrics.sum_rate("vllm:generation_tokens_total", 120.0),
            "prompt": metrics.sum_rate("vllm:prompt_tokens_total", 120.0),
            "ttft_p50": metrics.histogram_quantile(0.5, "vllm:time_to_first_token_seconds",
                                                   120.0),
            "tpot_p50": metrics.histogram_quantile(
                0.5, "vllm:request_time_per_output_token_seconds", 120.0),
            "engines": float(metrics.count("vllm:num_requests_running")),
        })
        return replicas


def test_what_policies_read_follows_the_traffic() -> None:
    trace = load("synthetic:steady?rate=4&duration=900&seed=5&prompt_mean=600&output_mean=80"
                 "&prompt_sigma=0.3&output_sigma=0.3")
    policy = Recorder()
    result = run(trace, policy, initial=2)
    rate = len(trace.requests) / trace.duration
    tokens_out = sum(r.output_tokens for r in trace.requests) / trace.duration
    tokens_in = sum(r.prompt_tokens for r in trace.requests) / trace.duration
    steady = [row for row in policy.rows if 300 <= (row["now"] or 0.0) <= 840]
    assert steady
    for key, expected in (("requests", rate), ("generation", tokens_out), ("prompt", tokens_in)):
        mean = sum(row[key] or 0.0 for row in steady) / len(steady)
        assert mean == pytest.approx(expected, rel=0.1), key
    assert all(row["engines"] == 2 for row in steady)
    # The histogram's median is within a bucket's width (0.02 s here: vLLM's bounds
    # 0.06, 0.08, 0.1) of the true median TTFT.
    true_p50 = float(np.nanmedian(result.ttft))
    seen = [row["ttft_p50"] for row in steady if row["ttft_p50"] is not None]
    assert len(seen) == len(steady)
    assert all(abs(q - true_p50) <= 0.02 for q in seen), (true_p50, seen)
    # Likewise the per-request TPOT histogram, within its bucket around the true median.
    tpot_p50 = float(np.nanmedian(result.tpot))
    low, high = next((a, b) for a, b in itertools.pairwise((0.0, *TPOT_BUCKETS))
                     if a < tpot_p50 <= b)
    tpot_seen = [row["tpot_p50"] for row in steady]
    assert all(q is not None and low <= q <= high for q in tpot_seen), (tpot_p50, tpot_seen)


def test_a_policy_that_asks_for_the_profile_gets_it_before_deciding() -> None:
    class Wants(Steps):
        def __init__(self) -> None:
            super().__init__([])
            self.profile: dict[str, object] | None = None

        def use_profile(self, profile: dict[str, object]) -> bool:
            assert not self.seen  # before the first decision
            self.profile = profile
            return True

    policy = Wants()
    run(trace_of((0.0, 10, 2), (40.0, 10, 2)), policy)
    assert policy.profile is not None
    assert policy.profile["prefill_tokens_per_s"] == PROFILE.prefill_tokens_per_s
    assert policy.seen


def test_a_draining_pod_is_killed_after_its_grace_period() -> None:
    # 2 ready pods, a request of about 45 s on each; scale to 1 at 15 s.
    trace = trace_of((0.0, 100, 3900), (0.1, 100, 3900))
    short = run(trace, Steps([(15.0, 1)]), initial=2, grace_period=5.0)
    assert sorted(short.outcome.tolist()) == [Outcome.COMPLETED, Outcome.KILLED]
    killed_at = next(t for t, alive, _, _ in short.timeline if t >= 15.0 and alive == 1)
    assert killed_at == pytest.approx(20.0)
    long = run(trace, Steps([(15.0, 1)]), initial=2, grace_period=60.0)
    assert (long.outcome == Outcome.COMPLETED).all()


class Floor(Steps):
    """A schedule with a floor: the run may settle there after the trace."""

    min_replicas = 1


def test_scale_down_after_the_trace_is_simulated_until_the_fleet_settles() -> None:
    trace = trace_of((0.0, 100, 10), (20.0, 100, 10))
    schedule = [(15.0, 3), (120.0, 2), (200.0, 1)]
    settled = run(trace, Floor(schedule), cold=5.0)
    spec = [(t, s) for t, _, s, _ in settled.timeline]
    assert spec[-1][1] == 1
    assert any(t >= 200.0 and s == 1 for t, s in spec)
    # It ends when the fleet is at its floor (decided at 210 s, the first decision
    # after 200 s), not at the horizon; the cost counts the tail.
    assert settled.end_time == pytest.approx(210.0)
    assert settled.replica_seconds == pytest.approx(1 * 15 + 3 * 105 + 2 * 90, rel=1e-6)
    # A policy with no floor runs to the stated horizon after the trace.
    horizon = run(trace, Steps(schedule), cold=5.0, tail=300.0)
    assert horizon.end_time == pytest.approx(trace.duration + 300.0, abs=1.0)
    # With no tail, nothing after the last request: still 3 replicas.
    cut = run(trace, Floor(schedule), cold=5.0, tail=0.0)
    assert cut.timeline[-1][2] == 3


def test_decisions_and_scrapes_can_keep_a_live_stacks_clock() -> None:
    trace = load("synthetic:steady?rate=5&duration=60&seed=1&output_mean=100")
    policy = Steps([], interval=5.0)
    result = run(trace, policy, scrape_interval=2.0, decision_times=(0.7, 5.9, 11.2),
                 first_scrape=1.3, tail=0.0)
    times = [t for t, _ in result.decisions]
    # The given passes first (each 5 s plus a little, as a loop that sleeps after its
    # pass), then every interval after the last.
    assert times[:5] == pytest.approx([0.7, 5.9, 11.2, 16.2, 21.2])
    assert [t for t, _ in result.queue][:3] == pytest.approx([1.3, 3.3, 5.3])
    # The decision at 0.7 s came before the first scrape: it saw nothing yet.
    assert policy.seen[0] == (0.7, None)
    assert policy.seen[1][1] is not None


class Rates(Steps):
    """A test policy that records the request rate each decision can read."""

    def __init__(self) -> None:
        super().__init__([], interval=15.0)
        self.rates: list[float | None] = []

    def decide(self, *, now: float, metrics: MetricsView, replicas: int, ready: int) -> int:
        self.rates.append(metrics.sum_rate("vllm:request_success_total", 60.0))
        return super().decide(now=now, metrics=metrics, replicas=replicas, ready=ready)


def test_a_scrape_before_the_trace_gives_the_first_decision_a_rate() -> None:
    trace = load("synthetic:steady?rate=5&duration=60&seed=1&output_mean=10")
    at_start = Rates()
    run(trace, at_start, tail=0.0)
    before = Rates()
    result = run(trace, before, tail=0.0, first_scrape=-1.0)
    # Scrapes at the decisions' instants, the decision first: at 15 s only the scrape
    # at 0 is there, and a rate needs two samples.
    assert at_start.rates[0] is None
    # The fleet scraped 1 s before the trace (up and idle): at 15 s the samples at -1
    # and 14 give the rate of what was answered by 14 s.
    assert before.rates[0] is not None
    assert before.rates[0] > 0
    assert [t for t, _ in result.queue][:3] == pytest.approx([-1.0, 14.0, 29.0])
    # Nothing else about the run starts before 0.
    assert result.timeline[0][0] == 0.0
    assert result.decisions[0][0] == 15.0


def test_a_loops_phase_moves_the_ttft_tail_of_a_short_burst() -> None:
    # One pod, a burst it cannot serve; the policy scales to 3 at its first decision.
    trace = trace_of(*[(0.25 * i, 400, 200) for i in range(24)])
    early = run(trace, Steps([(0.0, 3)], interval=5.0), cold=2.0, decision_times=(1.0,))
    late = run(trace, Steps([(0.0, 3)], interval=5.0), cold=2.0, decision_times=(4.5,))
    assert early.decisions[0][0] == 1.0
    assert late.decisions[0][0] == 4.5
    # Requests that arrive before the new pods are ready queue on the first pod.
    assert np.nanmax(late.ttft) > np.nanmax(early.ttft)
    assert int((late.pod == 0).sum()) > int((early.pod == 0).sum())


def test_bad_clock_settings_are_refused() -> None:
    for bad in ({"decision_times": (5.0, 5.0)}, {"decision_times": (3.0, 1.0)},
                {"decision_times": (-1.0,)}, {"first_scrape": -15.5},
                {"first_scrape": -15.0}):
        with pytest.raises(ValueError, match="decision_times"):
            SimSettings(cold_start=lambda _r: 0.0, **bad)  # type: ignore[arg-type]
