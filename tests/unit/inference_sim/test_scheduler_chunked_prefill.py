"""The sim's scheduler with a token budget per step and chunked prefill (vLLM V1's)."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.sim.prefix_cache import block_hashes
from inference.sim.scheduler import Scheduler, Sequence, State, Step
from inference.sim.timing import TimingModel

pytestmark = pytest.mark.unit

TIMING = TimingModel(prefill_tokens_per_s=1000.0, decode_ms_per_token=10.0,
                     decode_ms_per_token_per_seq=1.0)
_ids = itertools.count(1)


def _sched(*, budget: int | None = 100, chunked: bool = True, seqs: int = 8,
           kv: int = 100_000, caching: bool = False, block: int = 16,
           threshold: int = 0) -> Scheduler:
    return Scheduler(max_num_seqs=seqs, kv_cache_tokens=kv, max_loras=2, timing=TIMING,
                     max_num_batched_tokens=budget, enable_chunked_prefill=chunked,
                     enable_prefix_caching=caching, block_size=block,
                     long_prefill_token_threshold=threshold)


def _seq(prompt: int = 10, out: int = 3, tokens: list[int] | None = None,
         block: int = 16) -> Sequence:
    hashes = block_hashes(tokens, block_size=block) if tokens is not None else ()
    return Sequence(id=next(_ids), prompt_tokens=len(tokens) if tokens else prompt,
                    output_len=out, block_hashes=hashes)


def _step(s: Scheduler) -> Step:
    step = s.plan()
    assert step is not None
    return step


def test_a_long_prompt_is_prefilled_in_chunks_and_gives_its_first_token_at_the_last() -> None:
    s = _sched(budget=100)
    seq = _seq(prompt=250, out=2)
    s.add(seq)
    now = 0.0
    for chunk, expect_first in ((100, False), (100, False), (50, True)):
        step = _step(s)
        assert step.prefill == (seq,)
        assert step.chunks == (chunk,)
        assert step.decode == ()
        assert step.seconds == pytest.approx(chunk / 1000 + 0.010)
        now += step.seconds
        result = s.commit(step, now)
        assert (result.first_tokens == (seq,)) is expect_first
        assert result.prompt_tokens == (250 if expect_first else 0)
        assert result.generation_tokens == (1 if expect_first else 0)
    assert seq.computed_tokens == 250
    assert seq.first_token_at == pytest.approx(0.250 + 3 * 0.010)
    step = _step(s)
    assert (step.prefill, step.decode) == ((), (seq,))
    s.commit(step, now + step.seconds)
    assert seq.state is State.FINISHED


def test_decoding_sequences_take_the_budget_first_and_a_new_prompt_the_rest() -> None:
    s = _sched(budget=100)
    decoders = [_seq(prompt=10, out=50) for _ in range(3)]
    for d in decoders:
        s.add(d)
    s.commit(_step(s), 1.0)  # the three prompts, 30 tokens in one step
    s.add(late := _seq(prompt=500, out=2))
    step = _step(s)
    assert step.decode == tuple(decoders)
    assert step.prefill == (late,)
    assert step.chunks == (97,)  # 100 - one token for each decoding sequence
    assert step.tokens == 100
    # The three decode while the long prompt goes on in chunks of what is left.
    result = s.commit(step, 2.0)
    assert set(result.advanced) == set(decoders)
    assert _step(s).chunks == (97,)


def test_a_prompt_in_progress_is_served_before_a_newer_one_is_admitted() -> None:
    s = _sched(budget=100)
    first, second = _seq(prompt=150), _seq(prompt=30)
    s.add(first)
    s.add(second)
    step = _step(s)
    assert (step.prefill, step.chunks) == ((first,), (100,))
    assert second.state is State.WAITING  # no budget left to admit it
    s.commit(step, 1.0)
    step = _step(s)
    assert (step.prefill, step.chunks) == ((first, second), (50, 30))


def test_without_chunked_prefill_a_prompt_waits_for_a_step_it_fits_whole() -> None:
    s = _sched(budget=100, chunked=False)
    big = _seq(prompt=80, out=10)
    s.add(small := _seq(prompt=30, out=10))
    s.add(big)
    s.add(behind := _seq(prompt=5, out=10))
    step = _step(s)
    # 30 + 80 > 100: the big prompt waits whole, and the one behind it with it.
    assert (step.prefill, step.chunks) == ((small,), (30,))
    assert big.state is behind.state is State.WAITING
    s.commit(step, 1.0)
    step = _step(s)  # one decode token, then 80 + 5 fit in the 99 left
    assert (step.prefill, step.chunks, step.decode) == ((big, behind), (80, 5), (small,))


def test_without_chunked_prefill_a_prompt_beyond_the_budget_is_refused() -> None:
    s = _sched(budget=100, chunked=False)
    with pytest.raises(ValueError, match="a prompt of 101 tokens does not fit "
                       "max_num_batched_tokens \\(100\\) without chunked prefill"):
        s.add(_seq(prompt=101))


def test_prefix_cached_blocks_take_no_budget() -> None:
    s = _sched(budget=40, caching=True, block=16)
    tokens = list(range(64))  # 4 full blocks
    first = _seq(tokens=tokens, out=2)
    s.add(first)
    chunks = []
    now = 0.0
    while first.state is not State.FINISHED:
        step = _step(s)
        chunks.append(step.chunks)
        now += step.seconds
        s.commit(step, now)
    assert chunks == [(40,), (24,), ()]
    again = _seq(tokens=tokens, out=2)
    s.add(again)
    step = _step(s)
    # Three blocks are cached; the last is computed again for its logits: one step.
    assert again.cached_tokens == 48
    assert (step.prefill, step.chunks) == ((again,), (16,))
    assert s.commit(step, now + step.seconds).first_tokens == (again,)


def test_an_aborted_sequence_in_the_middle_of_its_prefill_frees_its_kv() -> None:
    s = _sched(budget=100, kv=1000)
    seq = _seq(prompt=400, out=10)
    s.add(seq)
    step = _step(s)
    assert s.kv_used == 410
    assert s.abort(seq)
    result = s.commit(step, 1.0)
    assert result.advanced == ()
    assert result.prompt_tokens == 0
    assert s.kv_used == 0
    assert s.plan() is None


def test_without_a_budget_every_admitted_prompt_is_prefilled_whole() -> None:
    s = _sched(budget=None, chunked=False)
    seqs = [_seq(prompt=5000) for _ in range(3)]
    for seq in seqs:
        s.add(seq)
    step = _step(s)
    assert (step.prefill, step.chunks) == (tuple(seqs), (5000, 5000, 5000))


def test_a_long_prefill_threshold_admits_a_short_prompt_beside_a_long_one() -> None:
    s = _sched(budget=100, threshold=40)
    long, short = _seq(prompt=500), _seq(prompt=30)
    s.add(long)
    s.add(short)
    step = _step(s)
    # The long prompt takes 40, the short one is admitted with the rest and done at once.
    assert (step.prefill, step.chunks) == ((long, short), (40, 30))
    assert s.commit(step, 1.0).first_tokens == (short,)


def test_a_long_prefill_threshold_does_not_cap_a_prompt_that_is_alone() -> None:
    s = _sched(budget=100, threshold=40)
    s.add(alone := _seq(prompt=500))
    assert _step(s).chunks == (100,)
    assert alone.state is State.RUNNING


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 16, "chunked": False, "budget": 1000},
         "long_prefill_token_threshold must be >= 0, and needs chunked prefill when > 0"),
        ({"budget": 4, "seqs": 8}, "max_num_batched_tokens (4) must be at least max_num_seqs (8)"),
        ({"budget": None, "chunked": True}, "chunked prefill needs max_num_batched_tokens"),
    ],
)
def test_a_budget_vllm_would_refuse_is_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        _sched(**kwargs)  # type: ignore[arg-type]


@settings(max_examples=60)
@given(
    budget=st.integers(8, 300),
    threshold=st.sampled_from([0, 0, 1, 7, 50]),
    chunked=st.booleans(),
    caching=st.booleans(),
    work=st.lists(st.tuples(st.integers(1, 400), st.integers(1, 6), st.integers(0, 3)),
                  min_size=1, max_size=12),
)
def test_every_step_keeps_to_the_budget_and_every_sequence_gets_its_tokens(
    budget: int, threshold: int, chunked: bool, caching: bool, work: list[tuple[int, int, int]],
) -> None:
    if not chunked:
        budget, threshold = max(budget, 400), 0
    s = _sched(budget=budget, chunked=chunked, caching=caching, seqs=8, kv=20_000, block=8,
               threshold=threshold)
    seqs = []
    for prompt, out, family in work:
        # Prompts of one family share their leading tokens (prefix-cache hits).
        tokens = [family * 1000 + i for i in range(prompt)]
        seq = _seq(tokens=tokens, out=out, block=8) if caching else _seq(prompt=prompt, out=out)
        s.add(seq)
        seqs.append(seq)
    computed = {seq.id: 0 for seq in seqs}
    now = 0.0
    while (step := s.plan()) is not None:
        assert step.tokens <= budget
        assert len(step.prefill) == len(step.chunks)
        assert all(c > 0 for c in step.chunks)
        assert all(seq.prefilled for seq in step.decode)
        if threshold and len(step.prefill) + len(step.decode) > 1:
            assert all(c <= threshold for c in step.chunks)
        for seq, c in zip(step.prefill, step.chunks, strict=True):
            computed[seq.id] += c
        now += step.seconds
        s.commit(step, now)
    for seq in seqs:
        assert seq.state is State.FINISHED
        assert seq.generated == seq.output_len
        # Each prompt token not found in the cache was computed exactly once.
        assert computed[seq.id] == seq.prompt_tokens - seq.cached_tokens
    assert s.kv_usage == 0
