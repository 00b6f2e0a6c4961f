"""The sim's scheduler: admission limits, FCFS, KV accounting, aborts."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.sim.scheduler import Scheduler, Sequence, State
from inference.sim.timing import TimingModel

TIMING = TimingModel(prefill_tokens_per_s=1000.0, decode_ms_per_token=10.0,
                     decode_ms_per_token_per_seq=1.0)
_ids = itertools.count(1)


def _seq(prompt: int = 10, out: int = 5, adapter: str | None = None) -> Sequence:
    return Sequence(id=next(_ids), prompt_tokens=prompt, output_len=out, adapter=adapter)


def _sched(*, seqs: int = 4, kv: int = 1000, loras: int = 2) -> Scheduler:
    return Scheduler(max_num_seqs=seqs, kv_cache_tokens=kv, max_loras=loras, timing=TIMING)


def test_nothing_to_run_plans_nothing() -> None:
    assert _sched().plan() is None


def test_a_sequence_prefills_then_decodes_to_its_length() -> None:
    s = _sched()
    seq = _seq(prompt=100, out=3)
    s.add(seq)
    first = s.plan()
    assert first is not None
    assert first.prefill == (seq,)
    assert first.seconds == pytest.approx(0.1 + 0.010)
    result = s.commit(first, now=1.0)
    assert result.first_tokens == (seq,)
    assert result.prompt_tokens == 100
    assert seq.first_token_at == 1.0
    for now in (2.0, 3.0):
        step = s.plan()
        assert step is not None
        assert step.prefill == ()
        assert step.decode == (seq,)
        result = s.commit(step, now=now)
    assert result.finished == (seq,)
    assert seq.state is State.FINISHED
    assert seq.generated == 3
    assert seq.finished_at == 3.0
    assert s.kv_used == 0
    assert s.plan() is None


def test_at_most_max_num_seqs_run_and_the_rest_wait() -> None:
    s = _sched(seqs=2)
    seqs = [_seq() for _ in range(5)]
    for seq in seqs:
        s.add(seq)
    step = s.plan()
    assert step is not None
    assert step.prefill == tuple(seqs[:2])
    assert (s.num_running, s.num_waiting) == (2, 3)


def test_the_head_of_the_queue_waits_for_kv_and_blocks_those_behind() -> None:
    s = _sched(kv=100)
    big, small = _seq(prompt=50, out=30), _seq(prompt=5, out=5)
    running = _seq(prompt=20, out=20)
    s.add(running)
    s.plan()
    s.add(big)
    s.add(small)
    s.plan()
    assert s.running == [running]
    assert list(s.waiting) == [big, small]
    assert s.kv_usage == pytest.approx(0.4)


def test_a_further_adapter_is_skipped_while_max_loras_are_running() -> None:
    s = _sched(loras=1)
    a1, b, a2 = _seq(adapter="a"), _seq(adapter="b"), _seq(adapter="a")
    base = _seq()
    for seq in (a1, b, a2, base):
        s.add(seq)
    s.plan()
    assert s.running == [a1, a2, base]
    assert list(s.waiting) == [b]
    assert s.running_adapters() == ["a"]
    assert s.waiting_adapters() == ["b"]


def test_aborting_frees_the_slot_and_kv_and_drops_the_pending_token() -> None:
    s = _sched(seqs=1)
    first, second = _seq(), _seq()
    s.add(first)
    s.add(second)
    step = s.plan()
    assert step is not None
    assert s.abort(first)
    assert s.kv_used == 0
    result = s.commit(step, now=1.0)
    assert result.advanced == ()
    assert first.state is State.ABORTED
    assert first.generated == 0
    step = s.plan()
    assert step is not None
    assert step.prefill == (second,)
    assert not s.abort(first)


def test_aborting_a_waiting_sequence_removes_it() -> None:
    s = _sched(seqs=1)
    first, second = _seq(), _seq()
    s.add(first)
    s.add(second)
    s.plan()
    assert s.abort(second)
    assert s.num_waiting == 0


def test_impossible_sequences_are_refused() -> None:
    s = _sched(kv=100)
    with pytest.raises(ValueError, match="KV"):
        s.add(_seq(prompt=90, out=20))
    with pytest.raises(ValueError, match="at least one token"):
        s.add(_seq(out=0))


_requests = st.lists(
    st.tuples(st.integers(1, 60), st.integers(1, 20), st.sampled_from([None, "a", "b", "c"]),
              st.booleans()),
    min_size=1, max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(_requests, st.integers(1, 5), st.integers(80, 300), st.integers(1, 3))
def test_invariants_hold_and_every_request_completes(
    requests: list[tuple[int, int, str | None, bool]], max_seqs: int, kv: int, loras: int,
) -> None:
    s = _sched(seqs=max_seqs, kv=kv, loras=loras)
    seqs = [_seq(prompt=p, out=o, adapter=a) for p, o, a, _ in requests]
    abort_after_first = {seq.id for seq, r in zip(seqs, requests, strict=True) if r[3]}
    for seq in seqs:
        s.add(seq)
    admitted: list[int] = []
    tokens = prompt_tokens = 0
    now = 0.0
    while (step := s.plan()) is not None:
        admitted += [seq.id for seq in step.prefill]
        assert s.num_running <= max_seqs
        assert s.kv_used == sum(x.kv_tokens for x in s.running) <= kv
        assert len(s.running_adapters()) <= loras
        now += step.seconds
        result = s.commit(step, now)
        tokens += result.generation_tokens
        prompt_tokens += result.prompt_tokens
        for seq in result.first_tokens:
            if seq.id in abort_after_first and not seq.done:
                s.abort(seq)
    assert s.num_waiting == 0
    assert s.kv_used == 0
    assert sorted(admitted) == sorted(seq.id for seq in seqs)
    for seq in seqs:
        if seq.id in abort_after_first and seq.output_len > 1:
            assert seq.state is State.ABORTED
            assert seq.generated == 1
        else:
            assert seq.state is State.FINISHED
            assert seq.generated == seq.output_len
    assert tokens == sum(seq.generated for seq in seqs)
    assert prompt_tokens == sum(seq.prompt_tokens for seq in seqs)
    if all(r[2] is None for r in requests):
        assert admitted == [seq.id for seq in seqs]  # first come, first served
