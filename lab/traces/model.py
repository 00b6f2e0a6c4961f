"""A trace: requests with arrival times and token lengths, and the error its readers raise."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Request", "Trace", "TraceError"]


class TraceError(ValueError):
    """A trace that cannot be read; the message is one line that names what is wrong."""


@dataclass(frozen=True, slots=True)
class Request:
    """One request of a trace: when it arrives (seconds from the trace's start) and its size."""

    arrival: float
    prompt_tokens: int
    output_tokens: int
    prefix: str = ""
    """What prefix-affinity routing hashes (the first prompt block's id where the trace has one)."""
    blocks: tuple[int, ...] = ()
    """Ids of the prompt's blocks of ``Trace.block_tokens`` tokens (Mooncake's ``hash_ids``):
    requests with equal leading ids share that prefix exactly. Empty: it shares nothing."""


@dataclass(frozen=True, slots=True)
class Trace:
    """Requests sorted by arrival, the first at or after 0."""

    name: str
    requests: tuple[Request, ...]
    duration: float
    """Seconds the trace spans (at least the last arrival)."""
    block_tokens: int = 0
    """Tokens per block of the requests' ``blocks`` (Mooncake: 512); 0 when they have none."""

    @classmethod
    def of(cls, name: str, requests: Sequence[Request], duration: float | None = None, *,
           block_tokens: int = 0) -> Trace:
        """A trace from sorted requests; ``duration`` defaults to the last arrival."""
        if not requests:
            raise TraceError(f"trace {name}: no requests")
        if block_tokens < 0:
            raise TraceError(f"trace {name}: block_tokens must be >= 0, got {block_tokens}")
        last = requests[-1].arrival
        return cls(name=name, requests=tuple(requests),
                   duration=max(last, duration if duration is not None else last),
                   block_tokens=block_tokens)

    def describe(self) -> dict[str, float | int | str]:
        """Counts and means for the report's header."""
        n = len(self.requests)
        return {
            "name": self.name,
            "requests": n,
            "duration_s": round(self.duration, 3),
            "mean_rate_per_s": round(n / self.duration, 4) if self.duration > 0 else float(n),
            "mean_prompt_tokens": round(sum(r.prompt_tokens for r in self.requests) / n, 1),
            "mean_output_tokens": round(sum(r.output_tokens for r in self.requests) / n, 1),
        }
