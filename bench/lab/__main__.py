"""Benchmark of the scaling lab: ``python -m bench.lab [--write bench/lab/RESULTS.md]``.

1. Speed: the Azure conversation hour (19,366 requests) through the simulator
   under each of ``keda-hpa``, ``kpa``, ``brix-loop`` and ``brix-keda``, this
   process pinned to one core; CPU seconds per policy (goal, issue 12: < 60 s).
2. The comparison on the bundled traces (``--profile gpu-8b --cold-start 60
   --slo-ttft 2.0``, 99 %): the ``keda-hpa`` threshold sweep, ``kpa``,
   ``brix-loop``, ``brix-keda`` (and ``brix-slo``), with the Azure trace also
   at eight times its rate for its first 20 minutes (``--rate-scale 8
   --duration 1200``), where one replica no longer serves it, from 1 replica
   and from 10 (warm). Reports and plots go to ``--out`` (default
   ``.brix/bench-lab``); with ``--write`` the tables go to RESULTS.md and the
   plots beside it; ``--reuse`` keeps the reports already there.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.machine import cpu_model
from lab.engine import SimSettings, simulate
from lab.pods import parse_cold_start
from lab.policies.registry import parse
from lab.profiles import load_profile
from lab.report import ceiling_sentence
from lab.traces import load

HERE = Path(__file__).parent
SPEED_POLICIES = ("keda-hpa", "kpa", "brix-loop", "brix-keda")
COMPARISON = ("keda-hpa:threshold=1,2,5,10", "kpa", "brix-loop", "brix-keda", "brix-slo")
RUNS = (  # (label, trace, extra flags)
    ("azure-conv", "azure-conv", ()),
    # 20 minutes of it: ~52k requests, 15-30 CPU s per policy for the whole hour.
    ("azure-conv-x8", "azure-conv", ("--rate-scale", "8", "--duration", "1200")),
    # The same with the Deployment already at 10 replicas: no start-up backlog on one pod.
    ("azure-conv-x8-warm", "azure-conv",
     ("--rate-scale", "8", "--duration", "1200", "--initial-replicas", "10")),
    ("mooncake-conv", "mooncake-conv", ()),
)


def speed() -> dict[str, dict[str, float]]:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    trace = load("azure-conv")
    profile = load_profile("gpu-8b")
    settings = SimSettings(cold_start=parse_cold_start("60"))
    out: dict[str, dict[str, float]] = {}
    for name in SPEED_POLICIES:
        (spec,) = parse(name)
        cpu, wall = time.process_time(), time.perf_counter()
        simulate(trace, profile, spec.make(), settings)
        out[name] = {"cpu_s": round(time.process_time() - cpu, 2),
                     "wall_s": round(time.perf_counter() - wall, 2)}
        print(f"speed {name}: {out[name]}", flush=True)
    return out


def comparison(out: Path, *, reuse: bool) -> dict[str, dict[str, Any]]:
    summaries: dict[str, dict[str, Any]] = {}
    for label, trace, extra in RUNS:
        folder = out / label
        if not (reuse and (folder / "summary.json").exists()):
            subprocess.run([sys.executable, "-m", "lab", "backtest", "--trace", trace, *extra,
                            "--policies", *COMPARISON, "--profile", "gpu-8b",
                            "--cold-start", "60", "--slo-ttft", "2.0", "--quiet",
                            "--out", str(folder)], check=True)
        summaries[label] = json.loads((folder / "summary.json").read_text())
        print(f"comparison {label}: {folder / 'report.md'}", flush=True)
    return summaries


def _table(summary: dict[str, Any]) -> list[str]:
    lines = ["| policy | SLO attainment | TTFT p50 / p99 s | failed | replica-h | max pods | "
             "scale events | oscillations | peak queue |", "|---|---|---|---|---|---|---|---|---|"]
    for name, row in summary["policies"].items():
        lines.append(
            f"| `{name}` | {row['slo_attainment']:.2%} | {row['ttft_p50_s']:.3g} / "
            f"{row['ttft_p99_s']:.3g} | {row['failed']} | {row['replica_hours']:.2f} | "
            f"{row['max_replicas']} | {row['scale_events']} | {row['oscillations']} | "
            f"{row['peak_queue']} |")
    lines += ["", "Cheapest run of each family that reaches 99 %:", ""]
    for family, entry in summary["cheapest"].items():
        if entry["policy"] is None:
            lines.append(f"- {family}: none reaches it (best `{entry['best_attainment_policy']}`,"
                         f" {entry['slo_attainment']:.2%}, {entry['replica_seconds'] / 3600:.2f}"
                         " replica-h)")
        else:
            rel = entry["relative_to_baseline"]
            lines.append(f"- {family}: `{entry['policy']}`, "
                         f"{entry['replica_seconds'] / 3600:.2f} replica-h"
                         + (f", {rel:.2f}x the cheapest keda-hpa" if rel is not None else ""))
    matched = summary.get("matched")
    if matched:
        lines += ["", f"No `keda-hpa` setting reaches 99 %: each family's cheapest run that "
                  f"reaches its best, {matched['attainment']:.2%} "
                  f"(`{matched['baseline_policy']}`):", ""]
        for family, entry in matched["families"].items():
            if entry["policy"] is None:
                lines.append(f"- {family}: none (best `{entry['best_attainment_policy']}`, "
                             f"{entry['slo_attainment']:.2%})")
            else:
                lines.append(f"- {family}: `{entry['policy']}`, {entry['slo_attainment']:.2%}, "
                             f"{entry['replica_seconds'] / 3600:.2f} replica-h, "
                             f"{entry['relative_to_baseline']:.2f}x the baseline's")
    return lines


def write(path: Path, speeds: dict[str, dict[str, float]],
          summaries: dict[str, dict[str, Any]], out: Path) -> None:
    plots = path.parent / "plots"
    lines = [
        "# Scaling lab: speed and the autoscaler comparison", "",
        f"Recorded {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC on {cpu_model()}, "
        f"{os.cpu_count()} CPUs shared with other work, Python {platform.python_version()}, "
        f"load average at the end {os.getloadavg()[0]:.1f}. `python -m bench.lab --write "
        "bench/lab/RESULTS.md`.", "",
        "## Speed (goal: under 60 s per policy for the Azure hour, one core)", "",
        "The Azure conversation hour, 19,366 requests, `gpu-8b`, cold start 60 s; the process "
        "pinned to one core. CPU seconds are the measure (wall time includes waiting for a "
        "CPU on this shared machine).", "",
        "| policy | CPU s | wall s |", "|---|---|---|",
    ]
    lines += [f"| {name} | {v['cpu_s']} | {v['wall_s']} |" for name, v in speeds.items()]
    first = next(iter(summaries.values()))["settings"]
    lines += ["", "## Comparison", "",
              "`--profile gpu-8b --cold-start 60 --slo-ttft 2.0` (99 % of all requests, failures "
              "count as misses), the lab's defaults otherwise: routing "
              f"`{first['routing']}`, a scrape every {first['scrape_interval']:g} s, "
              f"{first['scrape_lead']:g} s before the decisions, gateway hold "
              f"{first['hold_timeout']:g} s, seed {first['seed']}.",
              ""]
    for label, summary in summaries.items():
        t = summary["trace"]
        lines += [f"### {label}", "",
                  f"{t['requests']} requests over {t['duration_s']:.0f} s "
                  f"({t['mean_rate_per_s']:.2f}/s; prompt {t['mean_prompt_tokens']:.0f}, output "
                  f"{t['mean_output_tokens']:.0f} tokens on average).", ""]
        if "ceiling" in summary:
            lines += [ceiling_sentence(summary["ceiling"]), ""]
        lines += _table(summary)
        target = plots / label
        target.mkdir(parents=True, exist_ok=True)
        for png in ("replicas.png", "ttft_p99.png", "cost.png"):
            shutil.copy(out / label / png, target / png)
        lines += ["", f"![replicas]({target.relative_to(path.parent)}/replicas.png)",
                  f"![TTFT p99]({target.relative_to(path.parent)}/ttft_p99.png)",
                  f"![cost]({target.relative_to(path.parent)}/cost.png)", ""]
    lines += ["## Reading", "", "(written by hand after the run; see below)", ""]
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lab", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(".brix/bench-lab"))
    parser.add_argument("--write", type=Path, default=None, help="RESULTS.md to write")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--reuse", action="store_true",
                        help="keep comparisons whose summary.json is already under --out")
    args = parser.parse_args()
    speeds = {} if args.skip_speed else speed()
    summaries = comparison(args.out, reuse=args.reuse)
    if args.write:
        write(args.write, speeds, summaries, args.out)
        print(f"written: {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
