"""A ``MetricsView`` over fixed answers: Prometheus frozen at one instant, given as numbers.

For driving a policy by hand (tests, examples, a what-if at the REPL): each
metric's ``sum`` is given; a metric not given has no series. ``count`` is the
number of series given per metric; windowed queries answer the given value
(a constant history).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["StaticMetrics"]


@dataclass(frozen=True)
class StaticMetrics:
    """``sums[metric]`` is ``sum(metric)``; ``series[metric]`` how many series (default 1)."""

    now: float = 0.0
    sums: Mapping[str, float] = field(default_factory=dict)
    series: Mapping[str, int] = field(default_factory=dict)
    quantiles: Mapping[str, float] = field(default_factory=dict)
    """``histogram_quantile`` answers per histogram name (any q)."""

    def sum(self, metric: str) -> float | None:
        return self.sums.get(metric)

    def count(self, metric: str) -> int:
        return self.series.get(metric, 1) if metric in self.sums else 0

    def avg(self, metric: str) -> float | None:
        total = self.sum(metric)
        return None if total is None else total / max(1, self.count(metric))

    def sum_rate(self, metric: str, window: float) -> float | None:
        return self.sum(metric)

    def avg_over_time(self, metric: str, window: float) -> float | None:
        return self.sum(metric)

    def histogram_quantile(self, q: float, metric: str, window: float) -> float | None:
        return self.quantiles.get(metric)
