"""The routings in the lab across offered loads: ``python -m bench.routing.load_sweep``.

One ``python -m lab backtest --policies fixed:replicas=N --routing R --time-scale S``
per routing R and time scale S (a smaller S compresses the trace: more requests
per second), each into ``--out``/``S-R``; a run whose ``summary.json`` is
already there is not run again. Then one markdown table (``--write``) and one
plot (``--plot``) of what the runs say, read from their summaries.

The load of a point is the share of the fleet's prefill capacity with nothing
cached: mean rate x mean prompt tokens / (N x the profile's prefill tokens per
second), as the routing benchmark states its rates. The floor is the TTFT
percentile of every request alone on an idle pod whose cache holds every earlier
prompt (``lab.ceiling.trace_best_ttfts``): no routing's percentile is under it, at any
load, since it does not depend on when requests arrive.

Flags this command does not know go to every ``lab backtest`` (``--cold-start 0``);
a lab run that fails stops the sweep with one line naming it, after the lab's own.

Issue 14's goals are read at each load: ``--routing`` against round-robin
(at least 79 % lower P99 TTFT) and against least-request (at least 50 % lower).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from lab.ceiling import trace_best_ttfts
from lab.profiles import ProfileError, load_profile
from lab.routing import DEFAULT_ROUTING
from lab.traces import TraceError, load

matplotlib.use("Agg")
import matplotlib.pyplot as plt

BASELINES = {"round-robin": 0.79, "least-request": 0.50}
"""Issue 14's goals: the share by which the winner's P99 TTFT is under each baseline's."""

DEFAULT_SCALES = (1.0, 0.5, 0.3, 0.2, 0.18, 0.17, 0.16, 0.15, 0.14, 0.12, 0.1)
DEFAULT_ROUTINGS = ("round-robin", "least-request", "prefix-cache", "least-prefill",
                    "fleet-prefill")


@dataclass(frozen=True, slots=True)
class Point:
    """One lab run's figures."""

    scale: float
    routing: str
    load: float
    rate: float
    ttft_p50: float
    ttft_p90: float
    ttft_p99: float
    e2e_p99: float
    attainment: float
    hit_ratio: float
    completed: int
    requests: int


def point(scale: float, routing: str, summary: dict[str, Any], *, replicas: int) -> Point:
    """The figures of one run's ``summary.json`` (one fixed fleet of ``replicas``)."""
    trace = summary["trace"]
    profile = summary["settings"]["profile"]
    (run,) = summary["policies"].values()
    load = (trace["mean_rate_per_s"] * trace["mean_prompt_tokens"]
            / (replicas * profile["prefill_tokens_per_s"]))
    return Point(scale=scale, routing=routing, load=load, rate=trace["mean_rate_per_s"],
                 ttft_p50=run["ttft_p50_s"], ttft_p90=run["ttft_p90_s"],
                 ttft_p99=run["ttft_p99_s"], e2e_p99=run["e2e_p99_s"],
                 attainment=run["slo_attainment"], hit_ratio=run["prefix_hit_ratio"],
                 completed=run["completed"], requests=run["requests"])


def cut(value: float, baseline: float) -> float:
    """How much lower ``value`` is than ``baseline``: 0.8 is 80 % lower, -0.1 is 10 % higher."""
    return 1.0 - value / baseline


def by_load(points: Sequence[Point], *, winner: str) -> list[dict[str, Point]]:
    """Each load's runs by routing, lowest load first; only loads where the winner and
    every baseline ran."""
    out = []
    for scale in sorted({p.scale for p in points}, reverse=True):
        at = {p.routing: p for p in points if p.scale == scale}
        if {winner, *BASELINES} <= set(at):
            out.append(at)
    return out


def table(points: Sequence[Point], *, winner: str, floor_p99: float) -> str:
    """The runs by load, then the winner's cut against each baseline per load."""
    lines = ["| load | time scale | rate req/s | routing | TTFT p50 s | p90 s | p99 s "
             "| e2e p99 s | SLO 2 s | hit ratio | completed |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in sorted(points, key=lambda p: (-p.scale, p.routing != winner, p.routing)):
        name = f"**{p.routing}**" if p.routing == winner else p.routing
        lines.append(f"| {p.load:.0%} | {p.scale:g} | {p.rate:.1f} | {name} | {p.ttft_p50:.3f} "
                     f"| {p.ttft_p90:.3f} | {p.ttft_p99:.3f} | {p.e2e_p99:.2f} "
                     f"| {p.attainment:.2%} | {p.hit_ratio:.3f} | {p.completed}/{p.requests} |")
    head = " | ".join(f"vs {b} (goal {g:.0%})" for b, g in BASELINES.items())
    lines += ["", f"| load | {winner} p99 s | {head} "
              "| the most any routing cuts vs round-robin (the floor) |",
              "|---|---|" + "---|" * len(BASELINES) + "---|"]
    for at in by_load(points, winner=winner):
        won = at[winner]
        cells = []
        for b, goal in BASELINES.items():
            c = cut(won.ttft_p99, at[b].ttft_p99)
            cells.append(f"{c:.0%} lower: {'met' if c >= goal else 'missed'}" if c >= 0
                         else f"{-c:.0%} higher: missed")
        floor = cut(floor_p99, at["round-robin"].ttft_p99)
        lines.append(f"| {won.load:.0%} | {won.ttft_p99:.3f} | "
                     + " | ".join(cells) + f" | {floor:.0%} |")
    return "\n".join(lines) + "\n"


def plot(points: Sequence[Point], *, winner: str, floor_p99: float, out: Path,
         title: str) -> None:
    """Left: P99 TTFT per routing against load, with the floor. Right: the winner's cut
    against each baseline, with the goals."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    routings = list(dict.fromkeys(p.routing for p in points))
    for r in routings:
        mine = sorted((p for p in points if p.routing == r), key=lambda p: p.load)
        left.plot([100 * p.load for p in mine], [p.ttft_p99 for p in mine], marker="o",
                  ms=3, lw=2.4 if r == winner else 1.3, label=r)
    left.axhline(floor_p99, color="grey", ls=":", label=f"floor ({floor_p99:.2f} s)")
    left.set_yscale("log")
    left.set_xlabel("offered load, % of the fleet's prefill capacity without a cache")
    left.set_ylabel("TTFT p99, s (log)")
    left.set_title("P99 time to first token", fontsize=10)
    left.grid(alpha=0.3, which="both")
    left.legend(fontsize=8)
    loads = by_load(points, winner=winner)
    for (b, goal), colour in zip(BASELINES.items(), ("tab:blue", "tab:orange"), strict=True):
        right.plot([100 * at[winner].load for at in loads],
                   [100 * cut(at[winner].ttft_p99, at[b].ttft_p99) for at in loads],
                   marker="o", ms=3, color=colour, label=f"vs {b}")
        right.axhline(100 * goal, color=colour, ls="--", lw=1, label=f"goal vs {b}: {goal:.0%}")
    right.axhline(0, color="black", lw=0.6)
    right.set_xlabel("offered load, % of the fleet's prefill capacity without a cache")
    right.set_ylabel(f"{winner}'s P99 TTFT cut, % (higher is better)")
    right.set_title(f"{winner} against the baselines", fontsize=10)
    right.grid(alpha=0.3)
    right.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def floor_p99(trace: str, profile: str) -> float:
    """The P99 of every request's best case (``lab.ceiling.trace_best_ttfts``); a request
    too long for a pod is left out, as it fails in every run."""
    return float(np.percentile([t for _, t in trace_best_ttfts(load(trace),
                                                               load_profile(profile))], 99))


def run(out: Path, *, trace: str, profile: str, replicas: int, scale: float, routing: str,
        extra: Sequence[str]) -> Path:
    """One lab run (skipped when its summary is there); returns its folder."""
    folder = out / f"{scale:g}-{routing}"
    if not (folder / "summary.json").exists():
        cmd = [sys.executable, "-m", "lab", "backtest", "--trace", trace, "--profile", profile,
               "--policies", f"fixed:replicas={replicas}", "--routing", routing,
               "--time-scale", f"{scale:g}", "--out", str(folder), "--plots", "--quiet",
               *extra]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.routing.load_sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trace", default="mooncake-conv")
    parser.add_argument("--profile", default="gpu-8b")
    parser.add_argument("--replicas", type=int, default=16)
    parser.add_argument("--scales", default=",".join(f"{s:g}" for s in DEFAULT_SCALES),
                        help="time scales, comma-separated (0.2: five times the trace's rate)")
    parser.add_argument("--routings", default=",".join(DEFAULT_ROUTINGS),
                        help="comma-separated; must include round-robin and least-request")
    parser.add_argument("--winner", default=DEFAULT_ROUTING,
                        help="the routing whose cut is read against the goals (default: the "
                        f"gateway's default, {DEFAULT_ROUTING})")
    parser.add_argument("--jobs", type=int, default=2, help="lab runs at once")
    parser.add_argument("--out", type=Path, required=True, help="a folder for the runs")
    parser.add_argument("--write", type=Path, default=None, help="the markdown tables")
    parser.add_argument("--plot", type=Path, default=None, help="the plot (PNG)")
    args, extra = parser.parse_known_args(argv)
    try:
        scales = [float(s) for s in args.scales.split(",")]
    except ValueError:
        parser.error(f"--scales: expected numbers separated by commas, got {args.scales!r}")
    if any(s <= 0 for s in scales):
        parser.error(f"--scales: each must be > 0, got {args.scales!r}")
    routings = args.routings.split(",")
    if not set(BASELINES) | {args.winner} <= set(routings):
        parser.error(f"--routings must include {', '.join(BASELINES)} and --winner "
                     f"({args.winner})")
    if args.replicas < 1 or args.jobs < 1:
        parser.error("--replicas and --jobs must be >= 1")
    try:
        floor = floor_p99(args.trace, args.profile)
    except (TraceError, ProfileError) as e:
        parser.error(str(e))
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(s, r) for s in scales for r in routings]
    try:
        with ThreadPoolExecutor(args.jobs) as pool:
            folders = list(pool.map(lambda j: run(args.out, trace=args.trace,
                                                  profile=args.profile, replicas=args.replicas,
                                                  scale=j[0], routing=j[1], extra=extra), jobs))
    except subprocess.CalledProcessError as e:
        print(f"load_sweep: a lab run failed (exit {e.returncode}), its own message above: "
              f"{' '.join(map(str, e.cmd[1:]))}", file=sys.stderr)
        return 1
    points = [point(s, r, json.loads((f / "summary.json").read_text()), replicas=args.replicas)
              for (s, r), f in zip(jobs, folders, strict=True)]
    text = table(points, winner=args.winner, floor_p99=floor)
    print(f"floor: TTFT p99 {floor:.3f} s\n\n{text}")
    if args.write:
        args.write.write_text(text, encoding="utf-8")
    if args.plot:
        plot(points, winner=args.winner, floor_p99=floor, out=args.plot,
             title=f"{args.trace}, {args.replicas} x {args.profile} in the lab: routing "
                   f"across loads")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
