"""How many requests the gateway takes on at once: a pure counter, no I/O.

Two bounds (DESIGN.md, "Gateway"):

- **in flight**: completion requests the gateway holds in any state, from
  their headers until their answer ends (reading the body, held, proxied,
  streaming). Beyond ``max_in_flight`` a new one is answered 429
  ``too_many_requests`` with ``Retry-After`` at once, before its body is read,
  so the gateway's memory stays within ``max_in_flight`` bodies of at most
  ``max_body_bytes`` each.
- **pending**: those of them held for a model with no ready pod (scale from
  zero, or every pod of the model refusing connections while it restarts).
  Beyond ``max_pending`` a request that would be held is answered 503
  ``overloaded`` with ``Retry-After`` instead.

Both are counts in one event loop: no lock is needed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Admission:
    """The two counters and their bounds."""

    max_in_flight: int
    max_pending: int
    in_flight: int = 0
    pending: int = 0

    def enter(self) -> bool:
        """Take one request on; False (and nothing counted) when at the bound."""
        if self.in_flight >= self.max_in_flight:
            return False
        self.in_flight += 1
        return True

    def leave(self) -> None:
        self.in_flight -= 1

    def hold(self) -> bool:
        """Count one request as held; False (and nothing counted) when at the bound."""
        if self.pending >= self.max_pending:
            return False
        self.pending += 1
        return True

    def release(self) -> None:
        self.pending -= 1
