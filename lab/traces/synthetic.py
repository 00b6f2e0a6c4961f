"""Seeded synthetic traces: ``synthetic:KIND?key=value&key=value``.

Kinds and the arrival rate ``r(t)`` (requests/s) they follow:

- ``steady``: ``rate``.
- ``diurnal``: ``rate * (1 + amplitude * sin(2 pi t / period - pi / 2))``: low at
  the start, a peak at ``period / 2``.
- ``spike``: ``rate``, times ``factor`` from ``at`` for ``width`` seconds.
- ``ramp``: from ``rate`` to ``peak`` linearly over the duration.
- ``bursty``: ``rate`` with inter-arrivals of coefficient of variation ``cv`` (3).

Inter-arrivals are Gamma-distributed with coefficient of variation ``cv``
(1: Poisson) in the time that the rate warps, so a kind's rate shape holds
whatever its burstiness. Prompt and output lengths are lognormal with the
given means and log-space sigmas, at least 1 token and at most ``max_tokens``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from lab.traces.model import Request, Trace, TraceError

__all__ = ["KINDS", "synthetic"]

KINDS = ("steady", "diurnal", "spike", "ramp", "bursty")

_COMMON = {
    "rate": 5.0, "duration": 600.0, "seed": 0.0, "cv": 1.0,
    "prompt_mean": 1000.0, "prompt_sigma": 1.0, "output_mean": 250.0, "output_sigma": 0.8,
    "max_tokens": 32768.0,
}
_EXTRA: dict[str, dict[str, float]] = {
    "steady": {},
    "diurnal": {"amplitude": 0.8, "period": -1.0},  # -1: the duration
    "spike": {"factor": 4.0, "at": -1.0, "width": 60.0},  # at -1: a third of the duration
    "ramp": {"peak": -1.0},  # -1: four times the rate
    "bursty": {"cv": 3.0},
}


@dataclass(frozen=True, slots=True)
class _Params:
    values: Mapping[str, float]

    def __getitem__(self, key: str) -> float:
        return self.values[key]


def _params(kind: str, given: Mapping[str, str]) -> _Params:
    allowed = {**_COMMON, **_EXTRA[kind]}
    values = dict(allowed)
    for key, text in given.items():
        if key not in allowed:
            raise TraceError(f"synthetic:{kind}: unknown parameter {key!r} "
                             f"(known: {', '.join(sorted(allowed))})")
        try:
            values[key] = float(text)
        except ValueError:
            raise TraceError(f"synthetic:{kind}: {key}={text!r} is not a number") from None
    for key in ("rate", "duration", "cv", "prompt_mean", "output_mean", "max_tokens"):
        if not values[key] > 0:
            raise TraceError(f"synthetic:{kind}: {key} must be > 0, got {values[key]:g}")
    for key in ("prompt_sigma", "output_sigma"):
        if values[key] < 0:
            raise TraceError(f"synthetic:{kind}: {key} must be >= 0, got {values[key]:g}")
    return _Params(values)


def _rate_function(kind: str, p: _Params) -> Callable[[np.ndarray], np.ndarray]:
    rate, duration = p["rate"], p["duration"]
    if kind == "diurnal":
        period = p["period"] if p["period"] > 0 else duration
        amp = p["amplitude"]
        if not 0 <= amp <= 1:
            raise TraceError(f"synthetic:diurnal: amplitude must be in [0, 1], got {amp:g}")
        return lambda t: rate * (1 + amp * np.sin(2 * math.pi * t / period - math.pi / 2))
    if kind == "spike":
        at = p["at"] if p["at"] >= 0 else duration / 3
        width, factor = p["width"], p["factor"]
        if factor <= 0 or width <= 0:
            raise TraceError("synthetic:spike: factor and width must be > 0")
        return lambda t: np.where((t >= at) & (t < at + width), rate * factor, rate)
    if kind == "ramp":
        peak = p["peak"] if p["peak"] > 0 else 4 * rate
        return lambda t: rate + (peak - rate) * t / duration
    return lambda t: np.full_like(t, rate)


def _lognormal(rng: np.random.Generator, mean: float, sigma: float, n: int,
               top: float) -> np.ndarray:
    mu = math.log(mean) - sigma * sigma / 2
    return np.clip(np.rint(rng.lognormal(mu, sigma, n)), 1, top).astype(np.int64)


def synthetic(kind: str, given: Mapping[str, str]) -> Trace:
    """The trace of ``synthetic:kind`` with parameters ``given`` (text values)."""
    if kind not in KINDS:
        raise TraceError(f"unknown synthetic trace kind {kind!r} (known: {', '.join(KINDS)})")
    p = _params(kind, given)
    rng = np.random.default_rng(int(p["seed"]))
    duration = p["duration"]
    # Cumulative expected arrivals on a fine grid; arrivals are where it crosses
    # the running sum of unit-mean Gamma intervals.
    grid = np.linspace(0.0, duration, max(2, int(duration * 10) + 1))
    rates = np.maximum(_rate_function(kind, p)(grid), 0.0)
    cumulative = np.concatenate(([0.0], np.cumsum((rates[1:] + rates[:-1]) / 2 * np.diff(grid))))
    total = float(cumulative[-1])
    shape = 1.0 / (p["cv"] ** 2)
    expected = int(total * 1.5 + 10 * math.sqrt(total + 1) + 10)
    steps = rng.gamma(shape, 1.0 / shape, expected)
    marks = np.cumsum(steps)
    while marks[-1] < total:  # rare: draw more
        more = np.cumsum(rng.gamma(shape, 1.0 / shape, expected)) + marks[-1]
        marks = np.concatenate((marks, more))
    marks = marks[marks < total]
    arrivals = np.interp(marks, cumulative, grid)
    n = len(arrivals)
    if n == 0:
        raise TraceError(f"synthetic:{kind}: no request arrives in {duration:g} s at this rate")
    top = p["max_tokens"]
    prompts = _lognormal(rng, p["prompt_mean"], p["prompt_sigma"], n, top)
    outputs = _lognormal(rng, p["output_mean"], p["output_sigma"], n, top)
    requests = [Request(arrival=float(a), prompt_tokens=int(i), output_tokens=int(o))
                for a, i, o in zip(arrivals, prompts, outputs, strict=True)]
    query = "&".join(f"{k}={v}" for k, v in sorted(given.items()))
    return Trace.of(f"synthetic:{kind}" + (f"?{query}" if query else ""), requests, duration)
