"""The lab's Prometheus: scraped samples in memory, and the queries policies may ask.

``TSDB`` holds what scrapes appended: one series per metric and label set
(``pod``, and ``le`` for histogram buckets). ``TSDB.view(now)`` is a
``lab.policies.base.MetricsView`` that answers as Prometheus 2.x would at
``now``:

- an instant vector takes each series' latest sample at or before ``now``,
  no older than the 5-minute lookback, and none from a series that ended
  (its target went away: Prometheus writes a staleness marker);
- a range ``[w]`` holds the samples in ``[now - w, now]``;
- ``rate`` is PromQL's ``extrapolatedRate`` (counter resets, extrapolation to
  the window's edges by at most half a sample interval, and not below zero);
- ``histogram_quantile`` is PromQL's ``bucketQuantile`` (linear inside the
  bucket, the last finite bound when the rank falls in ``+Inf``).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["LOOKBACK", "TSDB", "Series", "View", "bucket_quantile", "extrapolated_rate"]

LOOKBACK = 300.0  # Prometheus' default --query.lookback-delta


@dataclass(slots=True)
class Series:
    """One series' samples, appended in time order."""

    times: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    ended: float = math.inf
    """When its target went away (a staleness marker); inf while it lives."""

    def latest(self, now: float) -> float | None:
        if now >= self.ended:
            return None
        i = bisect_right(self.times, now)
        if i == 0 or now - self.times[i - 1] > LOOKBACK:
            return None
        return self.values[i - 1]

    def window(self, now: float, width: float) -> tuple[list[float], list[float]]:
        lo = bisect_left(self.times, now - width)
        hi = bisect_right(self.times, now)
        return self.times[lo:hi], self.values[lo:hi]


def extrapolated_rate(times: list[float], values: list[float], start: float, end: float,
                      *, counter: bool = True) -> float | None:
    """PromQL's ``rate`` of one series over ``[start, end]`` (None below two samples)."""
    if len(times) < 2:
        return None
    result = values[-1] - values[0]
    if counter:
        prev = values[0]
        for v in values[1:]:
            if v < prev:
                result += prev  # a reset: the counter went on from zero
            prev = v
    sampled = times[-1] - times[0]
    if sampled <= 0:
        return None
    to_start = times[0] - start
    to_end = end - times[-1]
    average = sampled / (len(times) - 1)
    if counter and result > 0 and values[0] >= 0:
        to_start = min(to_start, sampled * (values[0] / result))  # not before zero
    threshold = average * 1.1
    extrapolate_to = sampled
    if to_start < threshold:
        extrapolate_to += to_start
    else:
        extrapolate_to += average / 2
    extrapolate_to += to_end if to_end < threshold else average / 2
    return result * (extrapolate_to / sampled) / (end - start)


def bucket_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """PromQL's ``bucketQuantile`` over ``(upper bound, cumulative count)`` pairs."""
    if math.isnan(q) or q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(buckets)
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return None
    counts = [c for _, c in ordered]
    for i in range(1, len(counts)):  # PromQL makes the counts monotonic
        counts[i] = max(counts[i], counts[i - 1])
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    b = bisect_left(counts, rank)
    if b == len(ordered) - 1:
        return ordered[-2][0]
    if b == 0 and ordered[0][0] <= 0:
        return ordered[0][0]
    start = 0.0
    end = ordered[b][0]
    count = counts[b]
    if b > 0:
        start = ordered[b - 1][0]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    return start + (end - start) * (rank / count if count else 0.0)


class TSDB:
    """Series by metric name and label set (``(pod, le)``; ``le`` is "" outside buckets)."""

    def __init__(self) -> None:
        self._metrics: dict[str, dict[tuple[str, str], Series]] = {}

    def append(self, metric: str, t: float, value: float, *, pod: str = "", le: str = "") -> None:
        series = self._metrics.setdefault(metric, {}).get((pod, le))
        if series is None:
            series = self._metrics[metric][(pod, le)] = Series()
        series.times.append(t)
        series.values.append(value)

    def end(self, pod: str, t: float) -> None:
        """The pod's target went away at ``t``: every series of it goes stale."""
        for by_labels in self._metrics.values():
            for (p, _), series in by_labels.items():
                if p == pod and series.ended > t:
                    series.ended = t

    def series(self, metric: str) -> dict[tuple[str, str], Series]:
        return self._metrics.get(metric, {})

    def view(self, now: float) -> View:
        return View(self, now)


class View:
    """``MetricsView`` over a ``TSDB`` at one instant."""

    def __init__(self, db: TSDB, now: float) -> None:
        self._db = db
        self._now = now

    @property
    def now(self) -> float:
        return self._now

    def _latest(self, metric: str) -> list[float]:
        out = []
        for series in self._db.series(metric).values():
            v = series.latest(self._now)
            if v is not None:
                out.append(v)
        return out

    def sum(self, metric: str) -> float | None:
        values = self._latest(metric)
        return float(sum(values)) if values else None

    def avg(self, metric: str) -> float | None:
        values = self._latest(metric)
        return float(sum(values)) / len(values) if values else None

    def count(self, metric: str) -> int:
        return len(self._latest(metric))

    def _rates(self, metric: str, window: float) -> dict[str, float]:
        """``rate(metric[window])`` by ``le`` label, summed over pods."""
        out: dict[str, float] = {}
        start = self._now - window
        for (_, le), series in self._db.series(metric).items():
            times, values = series.window(self._now, window)
            r = extrapolated_rate(times, values, start, self._now)
            if r is not None:
                out[le] = out.get(le, 0.0) + r
        return out

    def sum_rate(self, metric: str, window: float) -> float | None:
        rates = self._rates(metric, window)
        return rates.get("") if rates else None

    def avg_over_time(self, metric: str, window: float) -> float | None:
        total, found = 0.0, False
        for series in self._db.series(metric).values():
            _, values = series.window(self._now, window)
            if values:
                total += sum(values) / len(values)
                found = True
        return total if found else None

    def histogram_quantile(self, q: float, metric: str, window: float) -> float | None:
        name = metric if metric.endswith("_bucket") else f"{metric}_bucket"
        rates = self._rates(name, window)
        if not rates:
            return None
        value = bucket_quantile(q, ((float(le), r) for le, r in rates.items()))
        return None if value is None or math.isnan(value) else value
