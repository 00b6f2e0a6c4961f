"""The SLO ceiling: each request's best case, and that no fleet the lab runs does better."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.ceiling import best_ttft, slo_ceiling
from lab.engine import SimSettings, simulate
from lab.policies.fixed import Fixed
from lab.profiles import Profile, load_profile
from lab.summary import Slo, policy_figures
from lab.traces import Request, Trace

pytestmark = pytest.mark.unit

GPU = load_profile("gpu-8b")  # 20k prompt tokens/s, 8 ms a decode pass, 8192 tokens a step
SMALL = Profile(name="small", prefill_tokens_per_s=10000.0, decode_ms_per_token=10.0,
                decode_ms_per_token_per_seq=0.5, max_num_seqs=8, kv_cache_tokens=20000,
                max_model_len=8192, max_num_batched_tokens=2048, enable_chunked_prefill=True)


def test_an_uncached_prompt_takes_its_chunks_prefill_and_one_decode_pass_each() -> None:
    # 20,000 tokens in steps of 8,192: three steps, each also a decode pass of one sequence.
    assert best_ttft(GPU, 512, prompt_tokens=20000, cached_blocks=0) == pytest.approx(
        20000 / 20000 + 3 * 0.008)


def test_a_cached_prefix_is_not_prefilled_again() -> None:
    # 30 blocks of 512 cached: 4,640 tokens left, one step.
    assert best_ttft(GPU, 512, prompt_tokens=20000, cached_blocks=30) == pytest.approx(
        4640 / 20000 + 0.008)


def test_a_cached_prefix_longer_than_the_prompt_is_refused() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        best_ttft(GPU, 512, prompt_tokens=1000, cached_blocks=2)


def blocks(n: int, start: int = 0) -> tuple[int, ...]:
    return tuple(range(start, start + n))


def test_counts_who_can_meet_the_target_and_why_the_rest_cannot() -> None:
    trace = Trace.of("t", [
        Request(arrival=0.0, prompt_tokens=1000, output_tokens=10),  # 0.058 s
        Request(arrival=1.0, prompt_tokens=51200, output_tokens=10,  # alone 2.6 s: misses
                blocks=blocks(100)),
        Request(arrival=2.0, prompt_tokens=51200, output_tokens=10,  # 90 blocks cached: 0.26 s
                blocks=(*blocks(90), *blocks(10, start=1000))),
        Request(arrival=3.0, prompt_tokens=131000, output_tokens=500),  # over 131,072 in all
    ], block_tokens=512)
    ceiling = slo_ceiling(trace, GPU, Slo(ttft=2.0))
    assert (ceiling.attainable, ceiling.slow_alone, ceiling.too_long) == (2, 1, 1)
    assert ceiling.attainment == 0.5
    # Within 3 s the long one makes it too; a TPOT target under the 8 ms decode pass fails all
    # but one-token answers.
    assert slo_ceiling(trace, GPU, Slo(ttft=3.0)).attainable == 3
    assert slo_ceiling(trace, GPU, Slo(ttft=3.0, tpot=0.005)).attainable == 0


def test_a_request_too_long_for_a_pod_fills_no_cache() -> None:
    # It fails at once in every run, so the one after it, which shares its first 100
    # blocks, still has to prefill all of them: 2.6 s alone.
    trace = Trace.of("t", [
        Request(arrival=0.0, prompt_tokens=131000, output_tokens=500, blocks=blocks(255)),
        Request(arrival=1.0, prompt_tokens=51200, output_tokens=10, blocks=blocks(100)),
    ], block_tokens=512)
    ceiling = slo_ceiling(trace, GPU, Slo(ttft=2.0))
    assert (ceiling.attainable, ceiling.slow_alone, ceiling.too_long) == (0, 1, 1)


def test_an_empty_share_of_blocks_caches_nothing() -> None:
    # Two requests without block ids (Azure's, synthetic ones) share nothing: both miss alone.
    trace = Trace.of("t", [Request(arrival=0.0, prompt_tokens=51200, output_tokens=10),
                           Request(arrival=1.0, prompt_tokens=51200, output_tokens=10)])
    assert slo_ceiling(trace, GPU, Slo(ttft=2.0)).slow_alone == 2


requests = st.lists(
    st.tuples(st.floats(0, 20), st.integers(1, 12), st.integers(0, 400), st.integers(1, 40),
              st.integers(0, 3)),
    min_size=1, max_size=40)


@settings(max_examples=30, deadline=None)
@given(requests, st.integers(1, 6), st.floats(0.05, 1.5))
def test_no_fleet_meets_the_slo_for_more_than_the_ceiling(
        rows: list[tuple[float, int, int, int, int]], replicas: int, ttft: float) -> None:
    """Whatever the arrivals, prompts (with shared leading blocks), fleet size and target,
    a run of the lab reaches at most the ceiling's attainment."""
    reqs = []
    for arrival, n_blocks, extra, output, family in sorted(rows):
        # Requests of one family share their leading blocks; each adds blocks of its own.
        own = blocks(n_blocks, start=10_000 * (family + 1) + len(reqs) * 100)
        shared = blocks(min(n_blocks, 6), start=family * 100)
        ids = (*shared, *own)[:n_blocks]
        reqs.append(Request(arrival=arrival, prompt_tokens=n_blocks * 256 + extra,
                            output_tokens=output, blocks=ids))
    trace = Trace.of("t", reqs, block_tokens=256)
    slo = Slo(ttft=ttft)
    ceiling = slo_ceiling(trace, SMALL, slo)
    result = simulate(trace, SMALL, Fixed(replicas=replicas),
                      SimSettings(cold_start=lambda _rng: 0.0, initial_replicas=replicas))
    assert policy_figures(result, slo)["slo_attainment"] <= ceiling.attainment + 1e-12
