"""Many concurrent streaming completions through a gateway, with a fault injected mid-way.

``run_streams(url, n, kill, body=..., kill_after=1.5)`` opens ``n`` streams at
once, runs ``kill()`` (in a thread: it may block, e.g. to restart an engine)
once ``kill_after`` seconds have passed, at least ``min_started`` streams
have had a token and ``kill_when()`` (if given) says so, and returns every
stream's ``Outcome`` with the time of the kill. An ``Outcome`` says whether
its stream had a token before the kill (``started``), how it ended
(``done``: ``[DONE]``; ``error``: an SSE error event), and when.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
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
                     killed: asyncio.Event, out: Outcome) -> Outcome:
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
    url: str, n: int, kill: Callable[[], Any], *, body: Mapping[str, Any],
    kill_after: float, min_started: int = 0,
    kill_when: Callable[[], Awaitable[bool]] | None = None, read_timeout: float = 60.0,
    start_timeout: float = 120.0,
) -> tuple[list[Outcome], float]:
    """n concurrent streams; ``kill()`` runs after ``kill_after`` s once ``min_started``
    streams have had a token and ``kill_when()`` is true (failing if that was not so
    within ``start_timeout`` s); returns (outcomes, the time of the kill)."""
    killed = asyncio.Event()
    limits = httpx.Limits(max_connections=n + 10)
    outcomes = [Outcome() for _ in range(n)]
    # The read timeout is the hang detector: a stream silent this long fails the test.
    async with httpx.AsyncClient(timeout=httpx.Timeout(read_timeout), limits=limits) as client:
        tasks = [asyncio.create_task(stream_one(client, url, body, killed, out))
                 for out in outcomes]
        began = time.monotonic()
        await asyncio.sleep(kill_after)
        while (sum(o.started for o in outcomes) < min_started
               or (kill_when is not None and not await kill_when())):
            if time.monotonic() - began > start_timeout or all(t.done() for t in tasks):
                why = ("every stream had ended" if all(t.done() for t in tasks)
                       else f"{start_timeout:g} s had passed")
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise AssertionError(f"the moment to kill (at least {min_started} streams "
                                     f"with a token, and kill_when) had not come when "
                                     f"{why}")
            await asyncio.sleep(0.05)
        killed.set()
        at = time.monotonic()
        try:
            await asyncio.to_thread(kill)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return list(await asyncio.gather(*tasks)), at
