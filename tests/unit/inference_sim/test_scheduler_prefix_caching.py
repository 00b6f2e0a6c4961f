"""The sim's scheduler with prefix caching: cached prefixes skip prefill, KV counted once."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.sim.prefix_cache import block_hashes
from inference.sim.scheduler import Scheduler, Sequence, State, Step
from inference.sim.timing import TimingModel

pytestmark = pytest.mark.unit

TIMING = TimingModel(prefill_tokens_per_s=1000.0, decode_ms_per_token=10.0,
                     decode_ms_per_token_per_seq=0.0)
BS = 4
_ids = itertools.count(1)


def _sched(*, seqs: int = 8, kv: int = 400) -> Scheduler:
    return Scheduler(max_num_seqs=seqs, kv_cache_tokens=kv, max_loras=2, timing=TIMING,
                     enable_prefix_caching=True, block_size=BS)


def _seq(tokens: list[int], out: int = 2, adapter: str | None = None) -> Sequence:
    return Sequence(id=next(_ids), prompt_tokens=len(tokens), output_len=out, adapter=adapter,
                    block_hashes=block_hashes(tokens, block_size=BS, extra=adapter))


def _run(s: Scheduler, now: float = 0.0) -> float:
    while (step := s.plan()) is not None:
        now += step.seconds
        s.commit(step, now)
    return now


def _first_step(s: Scheduler, seq: Sequence) -> Step:
    s.add(seq)
    step = s.plan()
    assert step is not None
    return step


def test_a_repeated_prefix_is_not_prefilled_again() -> None:
    s = _sched()
    shared = list(range(100))  # 25 full blocks
    first = _seq([*shared, 1000, 1001])
    step = _first_step(s, first)
    assert step.prefill_tokens == 102
    assert step.seconds == pytest.approx(0.102 + 0.010)
    _run(s)
    second = _seq([*shared, 2000, 2001, 2002])
    step = _first_step(s, second)
    assert second.cached_tokens == 100
    assert step.prefill_tokens == 3
    assert step.seconds == pytest.approx(0.003 + 0.010)
    result = s.commit(step, 1.0)
    assert result.prompt_tokens == 103  # vllm:prompt_tokens counts cached tokens too
    cache = s.prefix_cache
    assert cache is not None
    assert (cache.queries, cache.hits) == (102 + 103, 100)


def test_the_last_prompt_token_is_always_computed() -> None:
    s = _sched()
    tokens = list(range(16))  # exactly 4 blocks
    _first_step(s, _seq(tokens))
    _run(s)
    again = _seq(tokens)
    step = _first_step(s, again)
    assert again.cached_tokens == 12  # the last block is computed again for its logits
    assert step.prefill_tokens == 4


def test_an_adapter_does_not_hit_the_base_models_blocks() -> None:
    s = _sched()
    tokens = list(range(40))
    _first_step(s, _seq(tokens))
    _run(s)
    lora = _seq(tokens, adapter="a")
    _first_step(s, lora)
    assert lora.cached_tokens == 0


def test_running_sequences_share_their_prefix_blocks_once() -> None:
    s = _sched(kv=400)  # 100 blocks
    shared = list(range(80))  # 20 blocks
    a = _seq([*shared, 1, 2, 3, 4], out=4)  # 22 blocks in all
    b = _seq([*shared, 5, 6, 7, 8], out=4)  # 2 of its own
    s.add(a)
    s.add(b)
    step = s.plan()
    assert step is not None
    assert step.prefill == (a, b)
    assert b.cached_tokens == 80  # cached as soon as a was admitted, as in vLLM
    assert s.kv_usage == pytest.approx((22 + 2) / 100)
    assert step.prefill_tokens == 84 + 4
    _run(s)
    assert s.kv_usage == 0
    assert s.kv_used == 0


def test_sharing_lets_more_sequences_fit_than_without_it() -> None:
    shared = list(range(60))
    without = Scheduler(max_num_seqs=8, kv_cache_tokens=120, max_loras=2, timing=TIMING)
    with_cache = _sched(kv=120)
    for s in (without, with_cache):
        for i in range(2):
            s.add(_seq([*shared, 100 + i, 200 + i, 300 + i, 400 + i], out=12))
        s.plan()
    assert without.num_running == 1  # 76 tokens each, 120 in all
    assert with_cache.num_running == 2  # 19 + 4 blocks held of 30


def test_a_multi_turn_follow_up_hits_the_previous_answer_when_its_tokens_are_known() -> None:
    s = _sched()
    turn1 = list(range(20))
    answer = list(range(500, 512))
    first = Sequence(id=next(_ids), prompt_tokens=len(turn1), output_len=len(answer) + 1,
                     block_hashes=block_hashes([*turn1, *answer], block_size=BS))
    s.add(first)
    _run(s)
    assert first.state is State.FINISHED
    turn2 = [*turn1, *answer, 900, 901, 902, 903, 904]
    second = _seq(turn2)
    _first_step(s, second)
    assert second.cached_tokens == 32  # the prompt and the answer, in whole blocks


def test_held_prefixes_survive_pressure_and_free_ones_are_evicted() -> None:
    s = _sched(seqs=8, kv=40)  # 10 blocks
    held = _seq(list(range(12)), out=8)  # 3 prompt blocks, 5 in all
    step = _first_step(s, held)
    s.commit(step, 1.0)
    gone = _seq(list(range(100, 112)), out=1)  # 4 blocks, ends in its first step
    step = _first_step(s, gone)
    s.commit(step, 2.0)
    assert gone.state is State.FINISHED
    cache = s.prefix_cache
    assert cache is not None
    assert cache.hit_length(gone.block_hashes) == 3  # kept while there is room
    newcomer = _seq(list(range(200, 212)), out=8)  # 5 blocks: 2 empty, 3 evicted
    _first_step(s, newcomer)
    assert newcomer.state is State.RUNNING
    assert cache.hit_length(gone.block_hashes) == 0
    assert all(cache.held(h) for h in held.block_hashes)
    _run(s, 3.0)
    repeat = _seq(list(range(12)))
    _first_step(s, repeat)
    assert repeat.cached_tokens == 8  # 3 blocks cached, the last computed again


def test_with_prefix_caching_off_nothing_is_shared() -> None:
    s = Scheduler(max_num_seqs=8, kv_cache_tokens=400, max_loras=2, timing=TIMING)
    tokens = list(range(40))
    _first_step(s, _seq(tokens))
    _run(s)
    again = _seq(tokens)
    step = _first_step(s, again)
    assert again.cached_tokens == 0
    assert step.prefill_tokens == 40
    assert s.prefix_cache is None


def test_a_sequence_larger_than_the_cache_in_whole_blocks_is_refused() -> None:
    s = _sched(kv=42)  # 10 blocks of 4: 40 tokens
    with pytest.raises(ValueError, match="needs 44 KV tokens, the cache holds 40"):
        s.add(_seq(list(range(40)), out=1))


_prompts = st.lists(
    st.tuples(st.integers(0, 3), st.integers(1, 30), st.integers(1, 8),
              st.sampled_from([None, "a"]), st.booleans()),
    min_size=1, max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(_prompts, st.integers(1, 6))
def test_invariants_hold_with_prefix_caching(
    requests: list[tuple[int, int, int, str | None, bool]], max_seqs: int,
) -> None:
    s = _sched(seqs=max_seqs, kv=160)
    # Four shared system prompts of 20 tokens, each followed by a request's own tokens.
    seqs = [_seq([*range(1000 * p, 1000 * p + 20), *range(7 * i, 7 * i + n)], out=o, adapter=a)
            for i, (p, n, o, a, _) in enumerate(requests)]
    aborts = {seq.id for seq, r in zip(seqs, requests, strict=True) if r[4]}
    for seq in seqs:
        s.add(seq)
    cache = s.prefix_cache
    assert cache is not None
    now = 0.0
    while (step := s.plan()) is not None:
        assert cache.used_blocks <= cache.num_blocks
        # Every running sequence's prompt blocks are held; the prefill skips its hit.
        for seq in s.running:
            assert all(cache.held(h) for h in seq.block_hashes[:seq.prompt_tokens // BS])
            assert 0 <= seq.cached_tokens < seq.prompt_tokens
            assert seq.cached_tokens % BS == 0
        assert step.prefill_tokens == sum(x.prompt_tokens - x.cached_tokens for x in step.prefill)
        now += step.seconds
        result = s.commit(step, now)
        for seq in result.first_tokens:
            if seq.id in aborts and not seq.done:
                s.abort(seq)
    assert s.num_waiting == 0
    assert s.num_running == 0
    assert cache.used_blocks == 0
    assert s.kv_usage == 0
    assert cache.queries == sum(x.prompt_tokens for x in seqs)
    assert cache.hits == sum(x.cached_tokens for x in seqs)
