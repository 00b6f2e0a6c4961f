"""What the gateway knows of each endpoint's load.

Two sources: its own in-flight count per endpoint (exact, and only this
gateway's share) with the prompt those requests still have to prefill (an
estimate: a request's uncached prompt characters count from when it is sent
until its answer's first body byte arrives, which for a stream is its first
token and for a whole answer its end), and each pod's engine queue as its sidecar exports it
(``brix_engine_requests_waiting`` / ``_running`` on the sidecar's /metrics),
polled in the background for ``least-queue``.

Polling costs every sidecar (and its engine, whose /metrics it reads) a request
per interval, so it runs only while ``least-queue`` is in use: the first
request that asks for it wakes the poller (and is routed on in-flight counts
until the first poll lands), and the poller sleeps again once no request has
asked for ``idle_after`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence

import aiohttp

from gateway.picker import Candidate
from gateway.table import Endpoint

log = logging.getLogger(__name__)

_WAITING = "brix_engine_requests_waiting"
_RUNNING = "brix_engine_requests_running"
_KV = "brix_engine_kv_cache_usage_ratio"


class LoadTracker:
    """In-flight counts per endpoint URL and the last queue seen at each sidecar."""

    def __init__(self) -> None:
        self.in_flight: dict[str, int] = {}
        self.prefill: dict[str, int] = {}
        """Prompt characters still to prefill per endpoint URL (sent, no first byte yet)."""
        self.queues: dict[str, tuple[int, int]] = {}
        self.kv_cache: dict[str, float] = {}
        """KV-cache usage ratio per endpoint URL, as its sidecar last reported it."""
        self.queues_wanted_at = -float("inf")
        """When a request last asked for the sidecars' queues (monotonic seconds)."""
        self.queues_wanted = asyncio.Event()
        """Set by a request that wants queues; the poller waits on it while idle."""

    def want_queues(self) -> None:
        """A request routes on the sidecars' queues: keep (or start) polling them."""
        self.queues_wanted_at = time.monotonic()
        self.queues_wanted.set()

    def started(self, endpoint: Endpoint, prefill: int = 0) -> None:
        """A request went to ``endpoint`` with ``prefill`` prompt characters to prefill there."""
        self.in_flight[endpoint.url] = self.in_flight.get(endpoint.url, 0) + 1
        if prefill:
            self.prefill[endpoint.url] = self.prefill.get(endpoint.url, 0) + prefill

    def prefilled(self, endpoint: Endpoint, prefill: int) -> None:
        """A request's first byte came back: its ``prefill`` characters are done."""
        if prefill:
            left = self.prefill.get(endpoint.url, 0) - prefill
            if left > 0:
                self.prefill[endpoint.url] = left
            else:
                self.prefill.pop(endpoint.url, None)

    def finished(self, endpoint: Endpoint, prefill: int = 0) -> None:
        """A request at ``endpoint`` ended, ``prefill`` characters of it still counted."""
        self.prefilled(endpoint, prefill)
        left = self.in_flight.get(endpoint.url, 0) - 1
        if left > 0:
            self.in_flight[endpoint.url] = left
        else:
            self.in_flight.pop(endpoint.url, None)

    def candidates(self, endpoints: Sequence[Endpoint]) -> list[Candidate]:
        out = []
        for e in endpoints:
            queue = self.queues.get(e.url)
            out.append(Candidate(
                key=e.url, in_flight=self.in_flight.get(e.url, 0),
                waiting=queue[0] if queue else None, running=queue[1] if queue else None,
                prefill=self.prefill.get(e.url, 0),
            ))
        return out


def parse_queue(text: str) -> tuple[int, int] | None:
    """(waiting, running) from a sidecar's Prometheus text; None if it has neither."""
    waiting = running = 0.0
    seen = False
    for line in text.splitlines():
        if not line.startswith("brix_engine_requests_"):
            continue
        name, _, rest = line.partition("{") if "{" in line else line.partition(" ")
        value_text = rest.rsplit("}", 1)[-1] if "{" in line else rest
        try:
            value = float(value_text.split()[0])
        except (ValueError, IndexError):
            continue
        if name == _WAITING:
            waiting += value
            seen = True
        elif name == _RUNNING:
            running += value
            seen = True
    return (int(waiting), int(running)) if seen else None


def parse_kv_cache(text: str) -> float | None:
    """The largest ``brix_engine_kv_cache_usage_ratio`` in a sidecar's text; None if absent.

    A NaN sample (an engine with nothing to report yet) is no sample.
    """
    found: float | None = None
    for line in text.splitlines():
        if not line.startswith(_KV):
            continue
        try:
            value = float(line.rsplit(None, 1)[-1])
        except ValueError:
            continue
        if math.isnan(value):
            continue
        found = value if found is None else max(found, value)
    return found


class SidecarPoller:
    """Polls the sidecars of the table's endpoints into ``LoadTracker.queues``."""

    def __init__(
        self,
        tracker: LoadTracker,
        endpoints: Callable[[], Iterable[Endpoint]],
        *,
        interval: float,
        client: aiohttp.ClientSession,
        idle_after: float | None = None,
    ) -> None:
        self._tracker = tracker
        self._endpoints = endpoints
        self._interval = interval
        self._client = client
        self._idle_after = idle_after

    async def run(self) -> None:
        """Poll every ``interval`` while queues are wanted (always if ``idle_after`` is None)."""
        tracker = self._tracker
        while True:
            if (self._idle_after is not None
                    and time.monotonic() - tracker.queues_wanted_at > self._idle_after):
                tracker.kv_cache = {}
                tracker.queues = {}  # stale numbers would mislead the next least-queue pick
                tracker.queues_wanted.clear()
                log.debug("no least-queue request for %.0fs: polling paused", self._idle_after)
                await tracker.queues_wanted.wait()
            await self.poll_once()
            await asyncio.sleep(self._interval)

    async def poll_once(self) -> None:
        targets = [e for e in self._endpoints() if e.sidecar_url]
        texts = await asyncio.gather(*(self._poll(e) for e in targets))
        queues, kv = {}, {}
        for e, text in zip(targets, texts, strict=True):
            if text is None:
                continue
            if (q := parse_queue(text)) is not None:
                queues[e.url] = q
            if (k := parse_kv_cache(text)) is not None:
                kv[e.url] = k
        self._tracker.queues = queues
        self._tracker.kv_cache = kv

    async def _poll(self, endpoint: Endpoint) -> str | None:
        timeout = aiohttp.ClientTimeout(total=min(self._interval, 2.0))
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with self._client.get(f"{endpoint.sidecar_url}/metrics",
                                        timeout=timeout) as r:
                if r.status == 200:
                    return await r.text()
                log.debug("sidecar of %s answered %s", endpoint.name, r.status)
        return None
