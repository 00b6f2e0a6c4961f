"""Leader election with a ``coordination.k8s.io/v1`` Lease, as client-go does it.

Of several scaler replicas only the Lease's holder runs the fallback loop. The
holder renews the Lease every 2 s (``retry_period``); the others watch it and
take it over once it has not changed for ``duration`` seconds *by their own
clock* (so clocks need not agree). Writes replace an exact resourceVersion: of
two replicas racing for an expired Lease, one gets a conflict and stays a
follower. A holder that cannot renew for ``2/3 * duration`` stops acting before
anyone else may start.

``plan`` is the pure decision; ``LeaderElector`` does the calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from scaler.kube import Kube, KubeError, LeaseRecord

log = logging.getLogger(__name__)

Step = Literal["create", "renew", "take", "follow"]


def plan(record: LeaseRecord | None, *, me: str, unchanged_for: float) -> Step:
    """What to do about the Lease ``record``, unchanged for ``unchanged_for`` seconds."""
    if record is None:
        return "create"
    if record.holder == me:
        return "renew"
    if not record.holder or unchanged_for >= max(record.duration, 1.0):
        return "take"
    return "follow"


@dataclass
class _Observed:
    key: tuple[str, str, str] | None = None
    since: float = 0.0


class LeaderElector:
    """Keeps trying to hold the Lease; ``is_leader()`` says whether to act now."""

    def __init__(self, kube: Kube, *, namespace: str, name: str, identity: str,
                 duration: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._kube = kube
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration = duration
        self._clock = clock
        self._observed = _Observed()
        self._renewed_at: float | None = None
        self.last_error: str | None = None
        self.term = 0
        """Counts the times this replica became the leader: a new value is a new term,
        begun after a gap in which another replica may have acted."""

    @property
    def retry_period(self) -> float:
        """Seconds between rounds: client-go's 2 s, or a third of a shorter Lease."""
        return min(2.0, self.duration / 3)

    def is_leader(self) -> bool:
        return (self._renewed_at is not None
                and self._clock() - self._renewed_at < self.duration * 2 / 3)

    def try_once(self) -> bool:
        """One round (blocking calls): read the Lease, then create, renew or take it."""
        started = self._clock()
        try:
            record = self._kube.read_lease(self.namespace, self.name)
            key = None if record is None else (record.holder, record.renew_time,
                                               record.resource_version)
            if key != self._observed.key:
                self._observed = _Observed(key, started)
            step = plan(record, me=self.identity, unchanged_for=started - self._observed.since)
            if step == "follow":
                self._lose(f"following {record.holder if record else '?'}")
                return False
            assert step == "create" or record is not None
            taking = step in ("create", "take")
            self._kube.write_lease(
                self.namespace, self.name, holder=self.identity, duration=self.duration,
                acquire_time="" if taking or record is None else record.acquire_time,
                transitions=(0 if record is None else
                             record.transitions + (1 if step == "take" else 0)),
                resource_version=None if record is None else record.resource_version)
        except KubeError as exc:
            self.last_error = str(exc)
            if not exc.conflict:
                log.warning("leader election: %s", exc)
            return self.is_leader()
        if self._renewed_at is None or not self.is_leader():
            self.term += 1
            log.info("leader election: %s now holds Lease %s/%s", self.identity,
                     self.namespace, self.name)
        self._renewed_at = started
        self.last_error = None
        return True

    def _lose(self, why: str) -> None:
        if self._renewed_at is not None:
            log.info("leader election: %s lost the Lease (%s)", self.identity, why)
        self._renewed_at = None

    def release(self) -> None:
        """Hand the Lease back at shutdown so another replica takes it at once."""
        if not self.is_leader():
            return
        with contextlib.suppress(KubeError):
            record = self._kube.read_lease(self.namespace, self.name)
            if record is not None and record.holder == self.identity:
                self._kube.write_lease(
                    self.namespace, self.name, holder="", duration=self.duration,
                    acquire_time=record.acquire_time, transitions=record.transitions,
                    resource_version=record.resource_version)
        self._renewed_at = None

    async def run(self, stop: asyncio.Event) -> None:
        """Try every ``retry_period`` until ``stop``; then release the Lease."""
        try:
            while not stop.is_set():
                await asyncio.to_thread(self.try_once)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.retry_period)
        finally:
            await asyncio.to_thread(self.release)
