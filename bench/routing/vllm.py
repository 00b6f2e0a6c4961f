"""Prefix-cache routing on real vLLM: ``python -m bench.routing.vllm [--sessions 16]``.

Two vLLM replicas on the CPU (the tiny model through ``python -m
inference.engine --backend vllm``, which turns vLLM's prefix caching on; vLLM's
CPU backend uses blocks of 128 tokens) behind one real gateway, and a
multi-turn chat workload (``bench.routing.workloads.chat``: each turn re-sends
the conversation so far, a few shared system prompts) sent once per routing
strategy, each run with its own salt in every word so that no run reuses
another's cache. The hit ratio is vLLM's own: the growth of
``vllm:prefix_cache_hits_total`` over ``vllm:prefix_cache_queries_total``
on both replicas during the run.

Goal (issue 14): with ``prefix-cache`` at least twice round-robin's hit ratio.
The tiny model's tokenizer is byte-level (about 12 tokens per word of this
workload), so the words per turn are few: the longest conversation stays
within the model's 2,048 tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.machine import cpu_model
from bench.routing import workloads as wl
from bench.routing.__main__ import pct, prefix_counters, replay, salted
from tests.helpers.gateway import start_gateway
from tests.helpers.procs import ProcessGroup
from tests.helpers.vllm import SERVED_NAME, start_vllm

REPLICAS = 2
STRATEGIES = ("round-robin", "least-request", "prefix-cache")
GOAL = 2.0  # prefix-cache's hit ratio over round-robin's, at least


@dataclass(frozen=True, slots=True)
class Run:
    routing: str
    requests: int
    errors: int
    hit_ratio: float
    ttft_p50_ms: float
    ttft_p99_ms: float


def workload(sessions: int, turns: int, rate: float) -> list[wl.Request]:
    return wl.chat(sessions=sessions, turns=turns, rate=rate, system_prompts=4, system_words=12,
                   turn_words=12, answer_words=12, max_tokens=4, salt="")


def measure(sessions: int, turns: int, rate: float, log_dir: Path,
            strategies: tuple[str, ...] = STRATEGIES) -> list[Run]:
    """Start the replicas and the gateway, replay the workload per strategy, stop them."""
    requests = workload(sessions, turns, rate)
    procs = ProcessGroup(log_dir)
    runs = []
    try:
        engines = [start_vllm(procs) for _ in range(REPLICAS)]
        gw = start_gateway(procs, extra_args=[
            "--static-routes", ",".join(f"{SERVED_NAME}={e.url}" for e in engines),
            "--log-level", "warning", "--seed", "1",
        ])
        assert gw.url
        for k, routing in enumerate(strategies):
            h0, q0 = prefix_counters([e.proc for e in engines])
            results, _ = asyncio.run(replay(gw.url, routing, salted(requests, f"v{k}"),
                                            SERVED_NAME))
            h1, q1 = prefix_counters([e.proc for e in engines])
            ok = [r for r in results if r.ok]
            ttft = [1000 * r.ttft for r in ok]
            runs.append(Run(routing=routing, requests=len(results),
                            errors=len(results) - len(ok),
                            hit_ratio=(h1 - h0) / (q1 - q0) if q1 > q0 else float("nan"),
                            ttft_p50_ms=pct(ttft, 50), ttft_p99_ms=pct(ttft, 99)))
            print(runs[-1], file=sys.stderr, flush=True)
    finally:
        procs.stop_all()
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.routing.vllm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--rate", type=float, default=2.0, help="requests per second in all")
    args = parser.parse_args(argv)
    if args.sessions < 1 or args.turns < 2 or not args.rate > 0:
        parser.error("need --sessions >= 1, --turns >= 2 and --rate > 0")
    started = datetime.datetime.now(datetime.UTC)
    load = os.getloadavg()[0]
    log_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-routing-vllm-{os.getpid()}"
    log_dir.mkdir(parents=True, exist_ok=True)
    runs = measure(args.sessions, args.turns, args.rate, log_dir)
    print(f"- date: {started:%Y-%m-%d %H:%M} UTC; machine: {os.cpu_count()} CPUs, "
          f"{cpu_model()}; load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} "
          "at the end")
    print(f"- command: `python -m bench.routing.vllm --sessions {args.sessions} --turns "
          f"{args.turns} --rate {args.rate:g}`")
    print("")
    print("| routing | requests | errors | hit ratio (vLLM) | TTFT p50 ms | TTFT p99 ms |")
    print("|---|---|---|---|---|---|")
    for r in runs:
        print(f"| {r.routing} | {r.requests} | {r.errors} | {r.hit_ratio:.3f} | "
              f"{r.ttft_p50_ms:.0f} | {r.ttft_p99_ms:.0f} |")
    by = {r.routing: r.hit_ratio for r in runs}
    ratio = by["prefix-cache"] / by["round-robin"] if by["round-robin"] > 0 else float("inf")
    print(f"\nprefix-cache / round-robin hit ratio: {ratio:.2f} (goal >= {GOAL:g}: "
          f"{'met' if ratio >= GOAL else 'not met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
