"""Shared periodic evaluations for ``StreamIsActive``.

Many streams watch one model (one per ScaledObject, and KEDA reconnects): a
``Feed`` per source measures it once every ``interval`` seconds while at least
one stream listens, and every listener reads the same outcome. The feed task
stops when its last listener leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from scaler.signals import SignalError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """One evaluation: a value, or the error that stopped it."""

    value: T | None = None
    error: SignalError | None = None


class Feed(Generic[T]):
    """One source measured periodically for its listeners."""

    def __init__(self, fetch: Callable[[], Awaitable[T]], interval: float) -> None:
        self._fetch = fetch
        self._interval = interval
        self._cond = asyncio.Condition()
        self._version = 0
        self._outcome: Outcome[T] | None = None
        self.listeners = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="scaler feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                outcome: Outcome[T] = Outcome(value=await self._fetch())
            except SignalError as exc:
                outcome = Outcome(error=exc)
            async with self._cond:
                self._outcome = outcome
                self._version += 1
                self._cond.notify_all()
            await asyncio.sleep(self._interval)

    async def updates(self) -> AsyncIterator[Outcome[T]]:
        """Every evaluation from now on, the latest one first if there is one."""
        seen = 0
        while True:
            async with self._cond:
                while self._version <= seen:
                    await self._cond.wait()
                seen = self._version
                outcome = self._outcome
            assert outcome is not None
            yield outcome


class Feeds(Generic[T]):
    """The feeds by source; a feed lives while it has listeners."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._feeds: dict[Hashable, Feed[T]] = {}

    def __len__(self) -> int:
        return len(self._feeds)

    @contextlib.asynccontextmanager
    async def listen(self, key: Hashable,
                     fetch: Callable[[], Awaitable[T]]) -> AsyncIterator[Feed[T]]:
        feed = self._feeds.get(key)
        if feed is None:
            feed = self._feeds[key] = Feed(fetch, self._interval)
            feed.start()
        feed.listeners += 1
        try:
            yield feed
        finally:
            feed.listeners -= 1
            if feed.listeners == 0 and self._feeds.get(key) is feed:
                del self._feeds[key]
                await feed.stop()

    async def close(self) -> None:
        feeds, self._feeds = list(self._feeds.values()), {}
        for feed in feeds:
            await feed.stop()
