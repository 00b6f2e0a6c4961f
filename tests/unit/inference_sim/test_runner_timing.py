"""The runner drives the scheduler in time: here a fake clock that sleeping advances.

(Not looptime: a fake clock handed to the runner is all it takes, and keeps
these tests independent of how event-loop plugins interact.)
"""

from __future__ import annotations

import asyncio

import pytest

from inference.sim.metrics import SimMetrics
from inference.sim.runner import Runner
from inference.sim.scheduler import Scheduler
from inference.sim.timing import TimingModel

TIMING = TimingModel(prefill_tokens_per_s=1000.0, decode_ms_per_token=20.0,
                     decode_ms_per_token_per_seq=5.0)


class FakeClock:
    """Time that passes only when the runner sleeps."""

    def __init__(self, overshoot: float = 0.0) -> None:
        self.now = 0.0
        self.overshoot = overshoot  # each sleep wakes this much late, as real timers do

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds + self.overshoot
        await asyncio.sleep(0)


def _runner(max_num_seqs: int = 8, overshoot: float = 0.0) -> Runner:
    clock = FakeClock(overshoot)
    scheduler = Scheduler(max_num_seqs=max_num_seqs, kv_cache_tokens=10_000, max_loras=2,
                          timing=TIMING)
    metrics = SimMetrics(scheduler=scheduler, model_name="m", max_loras=2, clock=clock)
    return Runner(scheduler=scheduler, metrics=metrics, clock=clock, sleep=clock.sleep)


async def _finish(runner: Runner, *handles: object) -> None:
    from inference.sim.runner import Handle

    for h in handles:
        assert isinstance(h, Handle)
        while not h.done:
            await h.wait()


async def test_one_request_takes_prefill_then_a_decode_step_per_token() -> None:
    runner = _runner()
    runner.start()
    try:
        h = runner.submit(prompt_tokens=200, output_len=10, adapter=None, finish_reason="length")
        await _finish(runner, h)
    finally:
        await runner.stop()
    seq = h.seq
    assert seq.first_token_at is not None
    assert seq.finished_at is not None
    assert seq.first_token_at - seq.arrival == pytest.approx(0.2 + 0.020, abs=1e-3)
    assert seq.finished_at - seq.first_token_at == pytest.approx(9 * 0.020, abs=1e-3)


async def test_a_bigger_batch_decodes_each_token_more_slowly() -> None:
    runner = _runner()
    runner.start()
    try:
        hs = [runner.submit(prompt_tokens=10, output_len=11, adapter=None,
                            finish_reason="length") for _ in range(4)]
        await _finish(runner, *hs)
    finally:
        await runner.stop()
    for h in hs:
        assert h.seq.finished_at is not None
        assert h.seq.first_token_at is not None
        # Four sequences per step: 20 ms + 3 * 5 ms for each of the 10 decode steps.
        assert h.seq.finished_at - h.seq.first_token_at == pytest.approx(10 * 0.035, abs=1e-3)


async def test_waiting_requests_start_when_a_slot_frees() -> None:
    runner = _runner(max_num_seqs=1)
    runner.start()
    try:
        first = runner.submit(prompt_tokens=10, output_len=5, adapter=None, finish_reason="stop")
        second = runner.submit(prompt_tokens=10, output_len=5, adapter=None, finish_reason="stop")
        await _finish(runner, first, second)
    finally:
        await runner.stop()
    assert first.seq.finished_at is not None
    assert second.seq.first_token_at is not None
    assert second.seq.first_token_at > first.seq.finished_at


async def test_an_aborted_request_stops_and_frees_its_slot() -> None:
    runner = _runner(max_num_seqs=1)
    runner.start()
    try:
        long = runner.submit(prompt_tokens=10, output_len=1000, adapter=None,
                             finish_reason="length")
        after = runner.submit(prompt_tokens=10, output_len=2, adapter=None, finish_reason="stop")
        await long.wait()
        runner.abort(long)
        await _finish(runner, after)
        generated = long.seq.generated
        for _ in range(20):
            await asyncio.sleep(0)
    finally:
        await runner.stop()
    assert long.seq.generated == generated < 1000
    assert after.seq.finished_at is not None
    assert after.seq.finished_at < 1.0
    assert runner.metrics.success["abort"]._value.get() == 1


async def test_late_wake_ups_do_not_add_up_over_a_long_answer() -> None:
    runner = _runner(overshoot=0.001)  # 1 ms late on every 20 ms step
    runner.start()
    try:
        h = runner.submit(prompt_tokens=10, output_len=200, adapter=None, finish_reason="length")
        await _finish(runner, h)
    finally:
        await runner.stop()
    assert h.seq.finished_at is not None
    # 200 steps of 20 ms (+ 10 ms prefill): late by one overshoot, not by 200 of them.
    assert h.seq.finished_at - h.seq.arrival == pytest.approx(0.01 + 200 * 0.020, abs=0.0015)
