"""The report's PNG plots (matplotlib, no display): replicas, TTFT p99, cost over time."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from lab.engine import Result
from lab.traces import Trace

__all__ = ["plot_all"]

def _style() -> AbstractContextManager[None]:
    return plt.rc_context({"figure.figsize": (13, 6), "figure.dpi": 100, "font.size": 11,
                           "axes.grid": True, "grid.alpha": 0.3, "legend.fontsize": 9})


# Outside the axes, on the right: many policies' lines stay visible.
_LEGEND: dict[str, Any] = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0),
                           "borderaxespad": 0.0}


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
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)


def plot_ttft(trace: Trace, results: Mapping[str, Result], slo_ttft: float, path: Path) -> None:
    arrivals = np.array([r.arrival for r in trace.requests])
    minute = (arrivals // 60).astype(int)
    with _style():
        fig, ax = plt.subplots()
        for name, result in results.items():
            xs, ys = [], []
            for m in range(int(minute.max()) + 1):
                # Failed requests have no TTFT: they count as infinitely late here.
                ttft = np.nan_to_num(result.ttft[minute == m], nan=np.inf)
                if ttft.size:
                    xs.append(m + 0.5)
                    ys.append(float(np.percentile(ttft, 99)))
            ax.step(xs, np.minimum(ys, 1e4), where="mid", linewidth=1.4, label=name)
        ax.axhline(slo_ttft, color="red", linestyle="--", linewidth=1.2,
                   label=f"SLO {slo_ttft:g} s")
        ax.set_yscale("log")
        ax.set_xlabel("arrival time (minutes)")
        ax.set_ylabel("TTFT p99 of the minute's arrivals (s, log)")
        ax.set_title(f"Time to first token, p99 per minute: {trace.name}")
        ax.legend(**_LEGEND)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)


def plot_cost(results: Mapping[str, Result], path: Path) -> None:
    with _style():
        fig, ax = plt.subplots()
        for name, result in results.items():
            times, alive = _alive_steps(result)
            spent = np.concatenate(([0.0], np.cumsum(alive[:-1] * np.diff(times))))
            ax.plot(_minutes(times), spent / 3600.0, linewidth=1.6, label=name)
        ax.set_xlabel("time (minutes)")
        ax.set_ylabel("cumulative replica-hours")
        ax.set_title("Cost: cumulative replica-hours")
        ax.set_ylim(bottom=0)
        ax.legend(**_LEGEND)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)


def plot_all(trace: Trace, results: Mapping[str, Result], slo_ttft: float,
             out: Path) -> list[Path]:
    paths = [out / "replicas.png", out / "ttft_p99.png", out / "cost.png"]
    plot_replicas(trace, results, paths[0])
    plot_ttft(trace, results, slo_ttft, paths[1])
    plot_cost(results, paths[2])
    return paths
