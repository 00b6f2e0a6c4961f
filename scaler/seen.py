"""Which ScaledObjects KEDA still asks about: the others' state is forgotten.

KEDA's external-scaler protocol (``externalscaler.proto``) has no call for a
deleted ScaledObject: KEDA just stops calling. A live one is heard from
regularly: ``IsActive`` every ``pollingInterval`` (default 30 s), ``GetMetrics``
every HPA sync (15 s) while it has replicas, or an open ``StreamIsActive``
(an ``external-push`` trigger) for as long as it exists. So a ScaledObject
neither called about for ``forget_after`` seconds nor holding a stream open is
gone (or renamed, or moved to another scaler), and what was kept for it can go.

The age is the only signal there is; the default of 600 s is 20 default
polling intervals, long enough that a live ScaledObject is never forgotten
unless its ``pollingInterval`` is set above it (it then decides afresh after
each quiet spell, as after a scaler restart), short enough that a cluster
that churns ScaledObjects keeps at most ten minutes of them.

Pure bookkeeping with the time passed in; ``scaler.keda`` does the calls.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["DEFAULT_FORGET_AFTER", "LastSeen"]

DEFAULT_FORGET_AFTER = 600.0

K = TypeVar("K", bound=Hashable)


class LastSeen(Generic[K]):
    """When each key was last asked about, and which have open streams."""

    def __init__(self, forget_after: float = DEFAULT_FORGET_AFTER) -> None:
        if not forget_after > 0:
            raise ValueError(f"forget_after must be > 0, got {forget_after!r}")
        self.forget_after = forget_after
        self._last: dict[K, float] = {}
        self._streams: Counter[K] = Counter()

    def __contains__(self, key: object) -> bool:
        return key in self._last

    def __len__(self) -> int:
        return len(self._last)

    def touch(self, key: K, now: float) -> None:
        """``key`` was asked about at ``now``."""
        self._last[key] = max(now, self._last.get(key, now))

    def opened(self, key: K, now: float) -> None:
        """A stream for ``key`` opened: it is live until ``closed``."""
        self._streams[key] += 1
        self.touch(key, now)

    def closed(self, key: K, now: float) -> None:
        """A stream for ``key`` closed: its age counts from now."""
        self._streams[key] -= 1
        if self._streams[key] <= 0:
            del self._streams[key]
        self.touch(key, now)

    def expire(self, now: float) -> list[K]:
        """Remove and return the keys not asked about for more than ``forget_after``
        seconds and without an open stream."""
        gone = [k for k, t in self._last.items()
                if now - t > self.forget_after and k not in self._streams]
        for k in gone:
            del self._last[k]
        return gone
