"""Replica counts over time as step functions: their integral and their time-aligned distance.

A series is ``[(time, value), ...]`` in time order; each value holds from its
time until the next one's (the last one holds to the end of any window asked
about), and before the first time the first value holds. Pure arithmetic, for
comparing the fleet the live stack ran with the one the lab simulated.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence

__all__ = ["Series", "integral", "mean_abs_diff", "time_mean", "value_at"]

Series = Sequence[tuple[float, float]]


def _check(series: Series, start: float, end: float) -> None:
    if not series:
        raise ValueError("an empty series has no value")
    if not end > start:
        raise ValueError(f"need end > start, got [{start:g}, {end:g}]")
    if any(b[0] < a[0] for a, b in itertools.pairwise(series)):
        raise ValueError("a series must be in time order")


def value_at(series: Series, t: float) -> float:
    """The value that holds at ``t``."""
    i = bisect.bisect_right([row[0] for row in series], t) - 1
    return float(series[max(i, 0)][1])


def _pieces(series: Series, start: float, end: float) -> list[tuple[float, float, float]]:
    """``(from, to, value)`` covering [start, end]."""
    _check(series, start, end)
    cuts = sorted({start, end, *(t for t, _ in series if start < t < end)})
    return [(a, b, value_at(series, a)) for a, b in itertools.pairwise(cuts)]


def integral(series: Series, start: float, end: float) -> float:
    """The area under the steps over [start, end] (replica-seconds for a replica count)."""
    return sum((b - a) * v for a, b, v in _pieces(series, start, end))


def time_mean(series: Series, start: float, end: float) -> float:
    """The time-weighted mean over [start, end]."""
    return integral(series, start, end) / (end - start)


def mean_abs_diff(a: Series, b: Series, start: float, end: float) -> float:
    """The time-weighted mean of ``|a(t) - b(t)|`` over [start, end]."""
    _check(a, start, end)
    _check(b, start, end)
    cuts = sorted({start, end, *(t for t, _ in (*a, *b) if start < t < end)})
    total = sum((y - x) * abs(value_at(a, x) - value_at(b, x))
                for x, y in itertools.pairwise(cuts))
    return total / (end - start)
