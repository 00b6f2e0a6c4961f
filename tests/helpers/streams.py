"""Many concurrent streaming completions through a gateway, with a fault injected mid-way.

``run_streams(url, n, kill, body=..., kill_after=1.5)`` opens ``n`` streams at
once (``body`` is one request body for all, or a list of ``n``), runs ``kill()``
(in a thread: it may block, e.g. to restart an engine) once ``kill_after``
seconds have passed, at least ``min_started`` streams have had a token and
``kill_when()`` (if given) says so, and returns every stream's ``Outcome`` with
the time of the kill. ``watch()`` (blocking, instead of ``kill_when``) is
asked in a thread of its own every 50 ms and ``kill()`` runs there as soon as
it is true: this client's event loop, busy parsing many fast streams, can look
seconds late, and a moment seen late may be gone. An ``Outcome`` says whether
its stream had a token before the kill (``started``), how it ended (``done``:
``[DONE]``; ``error``: an SSE error event), and when.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Outcome:
    status: int = 0
    pod: str = ""
    started: bool = False  # a token event came before the kill
    events: list[Any] = field(default_factory=list)
    ended_at: float = 0.0

    @property
    def done(self) -> bool:
        return bool(self.events) and self.events[-1] == "[DONE]"

    @property
    def error(self) -> dict[str, Any] | None:
        last = self.events[-1] if self.events else None
        return last["error"] if isinstance(last, dict) and "error" in last else None


async def stream_one(client: httpx.AsyncClient, url: str, body: Mapping[str, Any],
                     killed: threading.Event, out: Outcome) -> Outcome:
    async with client.stream("POST", f"{url}/v1/completions", json=body) as r:
        out.status = r.status_code
        out.pod = r.headers.get("x-brix-pod", "")
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line.removeprefix("data: ")
            event = data if data == "[DONE]" else json.loads(data)
            if isinstance(event, dict) and "choices" in event and not killed.is_set():
                out.started = True
            out.events.append(event)
    out.ended_at = time.monotonic()
    return out


async def run_streams(
    url: str, n: int, kill: Callable[[], Any], *,
    body: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    kill_after: float, min_started: int = 0,
    kill_when: Callable[[], Awaitable[bool]] | None = None,
    watch: Callable[[], bool] | None = None, read_timeout: float = 60.0,
    start_timeout: float = 120.0,
) -> tuple[list[Outcome], float]:
    """n concurrent streams; ``kill()`` runs after ``kill_after`` s once ``min_started``
    streams have had a token and ``kill_when()`` (or, asked in a thread, ``watch()``) is
    true (failing if that was not so within ``start_timeout`` s); returns (outcomes, the
    time of the kill)."""
    bodies = [body] * n if isinstance(body, Mapping) else list(body)
    if len(bodies) != n:
        raise ValueError(f"{len(bodies)} bodies for {n} streams")
    if kill_when is not None and watch is not None:
        raise ValueError("kill_when or watch, not both")
    killed = threading.Event()
    limits = httpx.Limits(max_connections=n + 10)
    outcomes = [Outcome() for _ in range(n)]
    ended = [0]  # streams over (counted on the event loop, read by the watching thread)

    def count(_: object) -> None:
        ended[0] += 1

    def cancelled(why: str) -> AssertionError:
        return AssertionError(f"the moment to kill (at least {min_started} streams with a "
                              f"token, and {'watch' if watch else 'kill_when'}) had not come "
                              f"when {why}")

    # The read timeout is the hang detector: a stream silent this long fails the test.
    async with httpx.AsyncClient(timeout=httpx.Timeout(read_timeout), limits=limits) as client:
        tasks = [asyncio.create_task(stream_one(client, url, b, killed, out))
                 for b, out in zip(bodies, outcomes, strict=True)]
        for t in tasks:
            t.add_done_callback(count)
        began = time.monotonic()
        await asyncio.sleep(kill_after)
        at = 0.0

        def moment() -> None:
            """In a thread: wait for the moment, then kill."""
            nonlocal at
            assert watch is not None
            while sum(o.started for o in outcomes) < min_started or not watch():
                if ended[0] == n:
                    raise cancelled("every stream had ended")
                if time.monotonic() - began > start_timeout:
                    raise cancelled(f"{start_timeout:g} s had passed")
                time.sleep(0.05)
            killed.set()
            at = time.monotonic()
            kill()

        try:
            if watch is not None:
                await asyncio.to_thread(moment)
            else:
                while (sum(o.started for o in outcomes) < min_started
                       or (kill_when is not None and not await kill_when())):
                    if all(t.done() for t in tasks):
                        raise cancelled("every stream had ended")
                    if time.monotonic() - began > start_timeout:
                        raise cancelled(f"{start_timeout:g} s had passed")
                    await asyncio.sleep(0.05)
                killed.set()
                at = time.monotonic()
                await asyncio.to_thread(kill)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return list(await asyncio.gather(*tasks)), at
