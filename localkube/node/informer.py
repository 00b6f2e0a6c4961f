"""List + watch caches (informers) and a deduplicating work queue.

An ``Informer`` lists a resource, then watches it from the list's
resourceVersion, keeping a local cache of every object and calling its
handlers with each change. A watch that ends is resumed from the last seen
resourceVersion (bookmarks move it along); a 410 Gone relists and reports the
difference as events, so handlers see every object's latest state either way.

Handlers only enqueue keys (``WorkQueue``); workers re-read the cache and
converge (the sample-controller shape).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Final

import aiohttp

from localkube.node.client import ApiClient, ApiError, JsonObj, Resource, WatchExpired

log = logging.getLogger(__name__)

Handler = Callable[[str, JsonObj], None]
"""Called with ("ADDED" | "MODIFIED" | "DELETED", object) for every change."""

RETRY_SECONDS: Final = 1.0


def key_of(obj: JsonObj) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or ""
    return f"{ns}/{meta.get('name', '')}" if ns else str(meta.get("name", ""))


class Informer:
    """A cache of every object of one resource (all namespaces), kept current by a watch."""

    def __init__(self, api: ApiClient, resource: Resource) -> None:
        self._api = api
        self.resource = resource
        self._cache: dict[str, JsonObj] = {}
        self._handlers: list[Handler] = []
        self._rv: str | None = None
        self.synced = asyncio.Event()

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def get(self, key: str) -> JsonObj | None:
        return self._cache.get(key)

    def items(self) -> Iterator[JsonObj]:
        return iter(list(self._cache.values()))

    def _emit(self, kind: str, obj: JsonObj) -> None:
        for handler in self._handlers:
            try:
                handler(kind, obj)
            except Exception:
                log.exception("handler of %s failed", self.resource.plural)

    async def _relist(self) -> None:
        body = await self._api.list(self.resource)
        fresh = {key_of(o): o for o in body.get("items") or []}
        self._rv = (body.get("metadata") or {}).get("resourceVersion")
        old = self._cache
        self._cache = fresh
        for key, obj in old.items():
            if key not in fresh:
                self._emit("DELETED", obj)
        for key, obj in fresh.items():
            before = old.get(key)
            if before is None:
                self._emit("ADDED", obj)
            elif _rv_of(before) != _rv_of(obj):
                self._emit("MODIFIED", obj)

    async def run(self, stop: asyncio.Event) -> None:
        """List, then watch until ``stop`` is set; survives server restarts and 410s."""
        need_list = True
        while not stop.is_set():
            try:
                if need_list:
                    await self._relist()
                    self.synced.set()
                    need_list = False
                async for kind, obj in self._api.watch(self.resource, resource_version=self._rv):
                    rv = _rv_of(obj)
                    if rv:
                        self._rv = rv
                    if kind == "BOOKMARK":
                        continue
                    key = key_of(obj)
                    if kind == "DELETED":
                        self._cache.pop(key, None)
                    else:
                        self._cache[key] = obj
                    self._emit(kind, obj)
            except WatchExpired:
                need_list = True
            except (aiohttp.ClientError, TimeoutError, ApiError, ValueError) as exc:
                log.debug("watch of %s interrupted: %s", self.resource.plural, exc)
                await _sleep_or_stop(stop, RETRY_SECONDS)


def _rv_of(obj: JsonObj) -> str | None:
    rv = (obj.get("metadata") or {}).get("resourceVersion")
    return str(rv) if rv else None


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()


class WorkQueue:
    """Keys to reconcile: each key is queued once however often it is added.

    A key being processed and added again is processed once more afterwards.
    ``add_after`` re-queues a key later (retries, timed re-checks).
    """

    def __init__(self) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def add(self, key: str) -> None:
        if key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: str, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        timer = self._timers.get(key)
        if timer is not None:
            if timer.when() <= loop.time() + seconds:
                return
            timer.cancel()
        self._timers[key] = loop.call_later(seconds, self._fire, key)

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def run(self, stop: asyncio.Event, sync: Callable[[str], Awaitable[None]],
                  *, name: str) -> None:
        """Call ``sync(key)`` for each queued key until ``stop``; errors retry with backoff."""
        failures: dict[str, int] = {}
        try:
            while not stop.is_set():
                getter = asyncio.ensure_future(self._queue.get())
                stopper = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait({getter, stopper},
                                             return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if getter not in done:
                    getter.cancel()
                    break
                key = getter.result()
                self._queued.discard(key)
                try:
                    await sync(key)
                    failures.pop(key, None)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    n = failures.get(key, 0) + 1
                    failures[key] = n
                    delay = min(0.1 * 2 ** n, 30.0)
                    log.warning("%s: sync of %s failed (retry in %.1fs): %s", name, key,
                                delay, exc)
                    self.add_after(key, delay)
        finally:
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
