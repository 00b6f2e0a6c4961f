"""The report's PNG plots (matplotlib, no display): replicas, TTFT p99, cost over time,
and cost against attainment."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lab.engine import Result
from lab.summary import PLOTS, families, frontier
from lab.traces import Trace

__all__ = ["plot_all", "plot_frontier"]

def _style() -> AbstractContextManager[None]:
    return plt.rc_context({"figure.figsize": (13, 6), "figure.dpi": 100, "font.size": 11,
                           "axes.grid": True, "grid.alpha": 0.3, "legend.fontsize": 9})


# Outside the axes, on the right: many policies' lines stay visible.
_LEGEND: dict[str, Any] = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0),
                           "borderaxespad": 0.0}


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _labels(ax: Axes, x: str, y: str, title: str) -> None:
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title)
    ax.legend(**_LEGEND)


def _minutes(t: np.ndarray) -> np.ndarray:
    return t / 60.0


def _alive_steps(result: Result) -> tuple[np.ndarray, np.ndarray]:
    times = np.array([row[0] for row in result.timeline])
    alive = np.array([row[1] for row in result.timeline])
    return times, alive


def _arrival_rate(trace: Trace, end: float, bin_s: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
    arrivals = np.array([r.arrival for r in trace.requests])
    edges = np.arange(0.0, max(end, bin_s) + bin_s, bin_s)
    counts, _ = np.histogram(arrivals, bins=edges)
    return edges[:-1], counts / bin_s


def plot_replicas(trace: Trace, results: Mapping[str, Result], path: Path) -> None:
    end = max(r.end_time for r in results.values())
    with _style():
        fig, rate_ax = plt.subplots()
        starts, rate = _arrival_rate(trace, end)
        rate_ax.fill_between(_minutes(starts), rate, step="post", color="0.85",
                             label="arrival rate (per minute)")
        rate_ax.set_xlabel("time (minutes)")
        rate_ax.set_ylabel("arrival rate (requests/s)")
        rep_ax = rate_ax.twinx()
        legend_at = {**_LEGEND, "bbox_to_anchor": (1.08, 1.0)}
        for name, result in results.items():
            times, alive = _alive_steps(result)
            rep_ax.step(_minutes(times), alive, where="post", linewidth=1.6, label=name)
        rep_ax.set_ylabel("replicas (pods alive, starting and draining included)")
        rep_ax.set_ylim(bottom=0)
        rate_ax.set_ylim(bottom=0)
        handles = rate_ax.get_legend_handles_labels()
        more = rep_ax.get_legend_handles_labels()
        rep_ax.legend(handles[0] + more[0], handles[1] + more[1], **legend_at)
        rate_ax.set_title(f"Arrivals and replicas: {trace.name}")
        _save(fig, path)


def plot_ttft(trace: Trace, results: Mapping[str, Result], slo_ttft: float, path: Path) -> None:
    arrivals = np.array([r.arrival for r in trace.requests])
    minute = (arrivals // 60).astype(int)
    with _style():
        fig, ax = plt.subplots()
        for name, result in results.items():
            xs, ys = [], []
            for m in range(int(minute.max()) + 1):
                # Failed requests have no TTFT: they count as infinitely late here, and
                # the p99 is one of the minute's own values (no interpolation: between
                # two failures it would be inf - inf).
                ttft = np.nan_to_num(result.ttft[minute == m], nan=np.inf)
                if ttft.size:
                    xs.append(m + 0.5)
                    ys.append(float(np.percentile(ttft, 99, method="higher")))
            ax.step(xs, np.minimum(ys, 1e4), where="mid", linewidth=1.4, label=name)
        ax.axhline(slo_ttft, color="red", linestyle="--", linewidth=1.2,
                   label=f"SLO {slo_ttft:g} s")
        ax.set_yscale("log")
        _labels(ax, "arrival time (minutes)", "TTFT p99 of the minute's arrivals (s, log)",
                f"Time to first token, p99 per minute: {trace.name}")
        _save(fig, path)


def plot_cost(results: Mapping[str, Result], path: Path) -> None:
    with _style():
        fig, ax = plt.subplots()
        for name, result in results.items():
            times, alive = _alive_steps(result)
            spent = np.concatenate(([0.0], np.cumsum(alive[:-1] * np.diff(times))))
            ax.plot(_minutes(times), spent / 3600.0, linewidth=1.6, label=name)
        ax.set_ylim(bottom=0)
        _labels(ax, "time (minutes)", "cumulative replica-hours", "Cost: cumulative replica-hours")
        _save(fig, path)


def plot_frontier(policies: Mapping[str, Mapping[str, Any]], target: float, path: Path) -> None:
    """Each run's SLO attainment against its replica-hours, one colour a family, each
    family's frontier (no run of it both cheaper and better) joined and numbered from
    its cheapest (the report lists the numbers' settings): which family buys more
    attainment per replica-hour, in one glance."""
    with _style():
        fig, ax = plt.subplots()
        def at(names: list[str]) -> tuple[list[float], list[float]]:
            """Replica-hours and attainment (%) of ``names``."""
            return ([policies[n]["replica_seconds"] / 3600.0 for n in names],
                    [100.0 * policies[n]["slo_attainment"] for n in names])

        for index, (family, names) in enumerate(families(policies).items()):
            colour = f"C{index % 10}"
            ax.scatter(*at(names), s=28, alpha=0.55, color=colour, label=family)
            xs, ys = at(frontier(policies, names))
            ax.plot(xs, ys, color=colour, linewidth=1.4, marker="o")
            for i, point in enumerate(zip(xs, ys, strict=True)):
                # Alternately above and below: neighbours on a flat frontier stay legible.
                ax.annotate(str(i + 1), point, textcoords="offset points",
                            xytext=(3, 5 if i % 2 == 0 else -12), fontsize=8, color=colour,
                            fontweight="bold")
        ax.axhline(100.0 * target, color="0.3", linestyle="--", linewidth=1,
                   label=f"SLO target {target:.0%}")
        ax.set_xlim(left=0)
        _labels(ax, "cost (replica-hours)", "SLO attainment (% of requests)",
                "Cost against attainment: up and to the left is better")
        _save(fig, path)


def plot_all(trace: Trace, results: Mapping[str, Result], policies: Mapping[str, Mapping[str, Any]],
             *, slo_ttft: float, target: float, out: Path,
             which: Collection[str] = PLOTS) -> list[Path]:
    """Write the plots named in ``which`` under ``out``; their paths, in ``PLOTS`` order.
    ``policies`` are the runs' figures (``lab.summary.policy_figures``)."""
    paths = []
    for stem in PLOTS:
        if stem not in which or (stem == "frontier" and len(policies) < 2):
            continue
        path = out / f"{stem}.png"
        if stem == "replicas":
            plot_replicas(trace, results, path)
        elif stem == "ttft_p99":
            plot_ttft(trace, results, slo_ttft, path)
        elif stem == "cost":
            plot_cost(results, path)
        else:
            plot_frontier(policies, target, path)
        paths.append(path)
    return paths
