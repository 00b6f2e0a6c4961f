"""What hit ratio a workload allows per placement: counted as vLLM counts its prefix cache."""

from __future__ import annotations

import pytest

from bench.routing import workloads as wl
from bench.routing.__main__ import main, sim_args, sim_profile
from bench.routing.ceiling import Prompt, hit_ratio, placements, ttft_floors
from brix.config import load_settings
from inference.sim.settings import SimSettings

pytestmark = pytest.mark.unit

BS = 4


def _conv(conversation: int, *turns: int) -> list[Prompt]:
    """A conversation whose turn k re-sends the first ``turns[k]`` tokens of its text."""
    text = [conversation * 10_000 + i for i in range(max(turns))]
    return [Prompt(conversation, tuple(text[:n])) for n in turns]


def test_a_second_turn_hits_its_first_turns_whole_blocks_on_the_same_replica_only() -> None:
    first, second = _conv(1, 10, 21)
    # 10 tokens: 2 full blocks cached; the second turn hits them (8 of its 21 tokens).
    assert hit_ratio([first, second], [0, 0], block_size=BS) == pytest.approx(8 / 31)
    assert hit_ratio([first, second], [0, 1], block_size=BS) == 0.0


def test_the_last_token_is_always_computed() -> None:
    prompt = _conv(1, 8)[0]
    # The same 8 tokens twice: at most 7 can hit, so 1 whole block of 4.
    assert hit_ratio([prompt, prompt], [0, 0], block_size=BS) == pytest.approx(4 / 16)


def test_keeping_conversations_together_reaches_one_caches_figure_and_two_replicas_halve_it(
) -> None:
    # Two-turn conversations that share nothing with each other: at random a second
    # turn finds its first half the time, so keeping them together gets about twice.
    prompts = [p for c in range(200) for p in _conv(c, 40, 44)]
    figures = placements(prompts, replicas=2, block_size=BS)
    assert figures["sticky"] == pytest.approx(figures["one cache"])
    assert figures["sticky"] / figures["random"] == pytest.approx(2.0, rel=0.1)
    # In order, round-robin puts every second turn on the other replica.
    assert figures["round-robin"] == 0.0


def test_a_cache_too_small_for_both_conversations_keeps_the_recent_one_and_evicts_the_other(
) -> None:
    a1, a2 = _conv(1, 9, 13)  # 2 full blocks, then 3
    b1 = _conv(2, 9)[0]  # 2 blocks of another conversation
    prompts, together = [a1, b1, a2], [0, 0, 0]
    # Room for 4 blocks: b's 2 and a's 2 fit, so a's second turn finds both.
    assert hit_ratio(prompts, together, block_size=BS, cache_blocks=4) == pytest.approx(8 / 31)
    # Room for 3: b's blocks pushed out a's last block; a's first block is left (its
    # tail goes first, as in vLLM), so a's second turn hits one block.
    assert hit_ratio(prompts, together, block_size=BS, cache_blocks=3) == pytest.approx(4 / 31)
    # Room for 2: a's blocks are gone.
    assert hit_ratio(prompts, together, block_size=BS, cache_blocks=2) == 0.0
    # On a replica of its own, a's first turn stays in a cache of 2.
    assert hit_ratio(prompts, [0, 1, 0], block_size=BS, cache_blocks=2) == pytest.approx(8 / 31)
    # A hit makes its blocks the most recent: when c arrives, b's older blocks go and
    # a's, hit since, stay for its repeat.
    c1 = _conv(3, 9)[0]
    assert hit_ratio([a1, b1, a2, c1, a2], [0] * 5, block_size=BS,
                     cache_blocks=5) == pytest.approx((8 + 12) / (9 + 9 + 13 + 9 + 13))


def test_caches_holding_half_the_workload_widen_the_gap_between_together_and_random(
) -> None:
    # 16 five-turn conversations, nothing shared, 11 blocks each at the end; each
    # replica holds half of them. Kept together, two replicas hold them all; spread at
    # random, each replica sees every conversation and evicts.
    prompts = [p for c in range(16) for p in _conv(c, 12, 20, 28, 36, 44)]
    prompts.sort(key=lambda p: (len(p.token_ids), p.conversation))  # turn by turn, interleaved
    unbounded = placements(prompts, replicas=2, block_size=BS, seeds=50)
    bounded = placements(prompts, replicas=2, block_size=BS, seeds=50, cache_blocks=16 * 11 // 2)
    assert bounded["sticky"] == pytest.approx(unbounded["sticky"])
    assert bounded["random"] < 0.8 * unbounded["random"]
    assert bounded["sticky"] / bounded["random"] > 1.3 * unbounded["sticky"] / unbounded["random"]
    # One replica alone cannot hold them.
    assert bounded["one cache"] < 0.5 * bounded["sticky"]


def test_the_benchmarks_chat_sessions_are_numbered() -> None:
    requests = wl.chat(sessions=3, turns=2, rate=1.0, system_prompts=1, system_words=2,
                       turn_words=2, answer_words=2, max_tokens=1, salt="")
    assert sorted(r.conversation for r in requests) == [0, 0, 1, 1, 2, 2]
    for r in requests:
        assert f"s{r.conversation}u0w0" in r.messages[1]["content"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"replicas": 0}, "replicas must be at least 1"),
    ({"replicas": 1, "cache_blocks": 0}, "cache_blocks must be at least 1"),
])
def test_bad_placements_are_refused(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        placements(_conv(1, 4), block_size=BS, **kwargs)
    with pytest.raises(ValueError, match="one replica per prompt"):
        hit_ratio(_conv(1, 4), [0, 1], block_size=BS)


def test_ttft_floor_is_each_prompt_alone_with_every_earlier_prompt_cached() -> None:
    profile = sim_profile(chunked=True, budget=256)  # 1,000 prompt tokens/s, 10 ms a pass
    first, second = _conv(1, 600, 900)
    other = _conv(2, 600)[0]
    floors = ttft_floors([first, second, other], profile, block_size=16)
    # 600 tokens: 3 chunks of at most 256, each with one decode pass.
    assert floors[0] == pytest.approx(0.600 + 3 * 0.010)
    # The second turn finds the first's 37 full blocks (592 tokens) cached: 308 to prefill.
    assert floors[1] == pytest.approx(0.308 + 2 * 0.010)
    # Another conversation shares nothing: its floor is the first's.
    assert floors[2] == floors[0]


@pytest.mark.parametrize(("chunked", "budget"), [(True, 256), (True, None), (False, None)])
def test_the_sims_are_started_as_the_floors_model_them(chunked: bool, budget: int | None) -> None:
    profile = sim_profile(chunked=chunked, budget=budget)
    started = load_settings(SimSettings, sim_args(profile, cache=True), prog="sim", environ={})
    assert (started.prefill_tokens_per_s, started.decode_ms_per_token,
            started.decode_ms_per_token_per_seq, started.max_model_len, started.kv_cache_tokens,
            started.max_num_seqs, started.enable_chunked_prefill, started.batched_tokens) == (
        profile.prefill_tokens_per_s, profile.decode_ms_per_token,
        profile.decode_ms_per_token_per_seq, profile.max_model_len, profile.kv_cache_tokens,
        profile.max_num_seqs, profile.enable_chunked_prefill, profile.batched_tokens)
    assert started.enable_prefix_caching


def test_settings_the_sims_would_refuse_are_one_line_before_anything_starts(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--floor-only", "--no-chunked-prefill", "--max-num-batched-tokens", "256"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "max_num_batched_tokens (256) must be at least max_model_len (16384)" in err
