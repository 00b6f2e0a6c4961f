"""Drives the scheduler in real time: one asyncio task for every sequence.

Each iteration plans a step, sleeps for its duration, commits it and wakes the
requests that got tokens (one ``asyncio.Event`` each, set once per step, so a
slow reader simply receives several tokens at once). Requests never do work
per token on their own: 500 concurrent streams cost one loop, not 500 timers.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from inference.sim.metrics import SimMetrics
from inference.sim.scheduler import Scheduler, Sequence, State

log = logging.getLogger(__name__)

# How much lateness of one step the next one absorbs (seconds). Waking 500
# readers, or losing the CPU to another process for a time slice, makes a step
# end 10-20 ms late on a 2-CPU machine; at 5 ms that lateness added up (500
# streams of 200 tokens at 30 ms a step took 10.9 s for 8.0), at 50 ms the pace
# holds (8.1 s). A longer stall is still not caught up in a burst.
MAX_CATCH_UP_S = 0.05


@dataclass(eq=False, slots=True)
class Handle:
    """A request's view of its sequence: read ``seq.generated`` after each wake-up."""

    seq: Sequence
    finish_reason: str
    stream: bool = True  # False: woken only when the sequence ends
    event: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def done(self) -> bool:
        return self.seq.done

    async def wait(self) -> None:
        """Wait for the next step that gave this sequence tokens (or its end)."""
        await self.event.wait()
        self.event.clear()


class Runner:
    def __init__(
        self, *, scheduler: Scheduler, metrics: SimMetrics,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,  # fakes for tests
    ) -> None:
        self.scheduler = scheduler
        self.metrics = metrics
        self._clock = clock
        self._sleep = sleep
        self._ids = itertools.count(1)
        self._handles: dict[int, Handle] = {}
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def dead(self) -> bool:
        """The scheduler loop stopped on an error: the engine can serve nothing."""
        return self._task is not None and self._task.done()

    def submit(
        self, *, prompt_tokens: int, output_len: int, adapter: str | None, finish_reason: str,
        stream: bool = True, block_hashes: tuple[int, ...] = (),
    ) -> Handle:
        seq = Sequence(id=next(self._ids), prompt_tokens=prompt_tokens, output_len=output_len,
                       adapter=adapter, arrival=self._clock(), block_hashes=block_hashes)
        self.scheduler.add(seq)
        handle = Handle(seq, finish_reason, stream)
        self._handles[seq.id] = handle
        self._wakeup.set()
        return handle

    def abort(self, handle: Handle) -> None:
        """The client is gone: free the sequence's slot and KV at once."""
        self._handles.pop(handle.seq.id, None)
        if self.scheduler.abort(handle.seq):
            self.metrics.observe_abort()
            self._wakeup.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sim-scheduler")
        self._task.add_done_callback(self._on_exit)

    def _on_exit(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        log.critical("the sim's scheduler loop stopped: %r", exc, exc_info=exc)
        for handle in self._handles.values():  # wake every waiter; none will get tokens
            handle.event.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})  # an error it died of was logged by _on_exit
            self._task = None

    async def _run(self) -> None:
        last_end: float | None = None  # when the previous step was due to end
        while True:
            running_before = {s.id for s in self.scheduler.running}
            step = self.scheduler.plan()
            if step is None:
                self.metrics.update_lora_info()
                self._wakeup.clear()
                last_end = None
                await self._wakeup.wait()
                continue
            now = self._clock()
            # Steps follow each other on the model's schedule: a wake-up that came a
            # little late (timer granularity, a busy loop) is taken off the next step,
            # so lateness does not add up over a long answer; a longer stall is not
            # caught up in a burst.
            started = now if last_end is None else max(last_end, now - MAX_CATCH_UP_S)
            admitted = [s for s in self.scheduler.running if s.id not in running_before]
            if admitted:
                self.metrics.observe_admitted(admitted, now)
            last_end = started + step.seconds
            # Sleep until the step's end, so the time the loop spends waking readers
            # overlaps the step instead of adding to it.
            await self._sleep(max(0.0, last_end - self._clock()))
            result = self.scheduler.commit(step, self._clock())
            reasons: dict[int, str] = {}
            for seq in result.advanced:
                handle = self._handles.get(seq.id)
                if handle is None:
                    continue
                if seq.state is State.FINISHED:
                    reasons[seq.id] = handle.finish_reason
                    del self._handles[seq.id]
                    handle.event.set()
                elif handle.stream:
                    handle.event.set()
            self.metrics.observe_step(result, reasons=reasons)
