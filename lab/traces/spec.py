"""Resolve a trace SPEC to a trace, and cut or stretch it."""

from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path
from urllib.parse import parse_qsl

from lab.traces.files import read_file
from lab.traces.history import from_prometheus
from lab.traces.model import Request, Trace, TraceError
from lab.traces.synthetic import synthetic

__all__ = ["BUNDLED", "load", "transform"]

DATA = Path(__file__).parent / "data"
BUNDLED = {
    "azure-conv": DATA / "azure_conv_2023.csv",
    "mooncake-conv": DATA / "mooncake_conversation.jsonl.gz",
    "validate-5min": DATA / "validate_5min.csv",
}


def _query(text: str, where: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except ValueError:
        raise TraceError(f"{where}: parameters must be key=value joined by '&': {text!r}") \
            from None
    return dict(pairs)


def load(spec: str) -> Trace:
    """The trace a SPEC names; a ``TraceError`` with one line when it cannot be had."""
    if spec in BUNDLED:
        trace = read_file(BUNDLED[spec])
        return dataclasses.replace(trace, name=spec)
    if spec.startswith("synthetic:"):
        kind, _, query = spec.removeprefix("synthetic:").partition("?")
        return synthetic(kind, _query(query, f"synthetic:{kind}"))
    if spec.startswith("prometheus:"):
        url, _, query = spec.removeprefix("prometheus:").partition("?")
        return from_prometheus(url, _query(query, "prometheus"))
    path = Path(spec)
    if path.suffix in (".csv", ".jsonl", ".gz"):
        return read_file(path)
    raise TraceError(
        f"unknown trace {spec!r}: expected a bundled name ({', '.join(BUNDLED)}), a .csv or "
        ".jsonl[.gz] file, synthetic:KIND?... or prometheus:URL?model=..."
    )


def transform(trace: Trace, *, start: float = 0.0, duration: float | None = None,
              time_scale: float = 1.0, rate_scale: float = 1.0, seed: int = 0) -> Trace:
    """Cut ``[start, start + duration)`` (trace seconds), then stretch and thin or replicate.

    ``time_scale`` multiplies every time (2: half the rate over twice the time);
    ``rate_scale`` keeps the times and scales the request count: below 1 each
    request is kept with that probability, above 1 each is repeated (the copies
    a uniform 0-1 s later), seeded.
    """
    if start < 0 or (duration is not None and duration <= 0):
        raise TraceError("--start must be >= 0 and --duration > 0")
    if time_scale <= 0 or rate_scale <= 0:
        raise TraceError("--time-scale and --rate-scale must be > 0")
    end = math.inf if duration is None else start + duration
    cut = [r for r in trace.requests if start <= r.arrival < end]
    if not cut:
        raise TraceError(f"{trace.name}: no request between {start:g} s and {end:g} s "
                         f"(the trace spans {trace.duration:g} s)")
    span = (min(trace.duration, end) - start) * time_scale
    rng = random.Random(seed)  # noqa: S311 - seeded thinning
    out: list[Request] = []
    for r in cut:
        t = (r.arrival - start) * time_scale
        copies = int(rate_scale) + (1 if rng.random() < rate_scale - int(rate_scale) else 0)
        for k in range(copies):
            at = t if k == 0 else t + rng.random()
            out.append(Request(arrival=at, prompt_tokens=r.prompt_tokens,
                               output_tokens=r.output_tokens, prefix=r.prefix,
                               blocks=r.blocks))
    if not out:
        raise TraceError(f"{trace.name}: --rate-scale {rate_scale:g} left no request")
    out.sort(key=lambda r: r.arrival)
    unchanged = start == 0 and duration is None and time_scale == 1 and rate_scale == 1
    name = trace.name if unchanged else (
        f"{trace.name}[start={start:g},duration={'all' if duration is None else f'{duration:g}'},"
        f"time_scale={time_scale:g},rate_scale={rate_scale:g}]")
    return Trace.of(name, out, span, block_tokens=trace.block_tokens)
