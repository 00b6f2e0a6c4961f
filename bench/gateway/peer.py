"""brix's gateway beside the vLLM project's Rust router, measured in one run.

``python -m bench.gateway.peer [--duration 5] [--pin] [--routing R] [--workers 1,2]
[--also NAME=DIR]``

The peer is ``vllm-router`` (PyPI, pinned below), a benchmark-only dependency:
it is installed into a virtual environment of its own
(``.brix/bench/vllm-router-venv``) the first time this runs, never into
brix's. Both routers run with round-robin over the same one upstream:

- brix: ``python -m gateway --discovery none --static-routes m1=UPSTREAM
  --routing round-robin`` (``--routing default``: brix's default, the
  fleet-prefill profile, which hashes each prompt's chunks)
- vllm-router: ``vllm-router --worker-urls UPSTREAM --policy round_robin``

Measured, each path in turn within every round (direct, then each router;
two rounds by default, so a minute of a busy neighbour on this shared machine
shows as a difference between rounds rather than a difference between routers;
``--rounds N`` above two adds a last row per path, the median over the rounds
of its ratios to vllm-router's):

1. non-streaming completions with wrk against ``bench.gateway.replay``
   (the sim's recorded answer, sent at once): requests/s and p50/p99 at 64
   connections, the router's CPU per request over that run (user + system,
   from /proc), and the p50 added at 8 connections (router p50 minus direct
   p50 in the same round);
2. streams: 200 concurrent streams of 8 tokens at 50 ms from a sim, time to
   the first body chunk (``bench.gateway.loadgen``), and the router's CPU per
   stream.

Every figure of a router comes with its ratio to vllm-router's in the same
round. ``--pin`` puts each router on the last CPU (all of its threads) and
everything else on the others; without it every process shares every CPU.
``--also NAME=DIR`` adds the brix gateway of another checkout of brix (run
from DIR) beside this one: an A/B of two versions of the gateway, interleaved.
``--workers 1,2`` measures brix with one worker and with two (``--workers 2``,
row ``brix x2``); a router's CPU is its process's and its workers' together.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import venv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.gateway.__main__ import LUA, cpu_seconds, loadgen, record_answer, wrk
from bench.machine import cpu_model, pin
from tests.helpers.procs import REPO, Proc, ProcessGroup, free_port
from tests.helpers.sim import slow, start_sim

PEER = "vllm-router==0.1.17"
PEER_VENV = REPO / ".brix" / "bench" / "vllm-router-venv"
PEER_NAME = "vllm-router"


def peer_binary() -> Path:
    """vllm-router's executable, installed into its own virtual environment if missing."""
    binary = PEER_VENV / "bin" / "vllm-router"
    marker = PEER_VENV / "installed.txt"
    if binary.exists() and marker.exists() and marker.read_text().strip() == PEER:
        return binary
    print(f"installing {PEER} into {PEER_VENV} (once)", file=sys.stderr, flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(PEER_VENV)
    subprocess.run([str(PEER_VENV / "bin" / "python"), "-m", "pip", "install", "-q", PEER],
                   check=True)
    marker.write_text(PEER + "\n")
    return binary


@dataclass
class Router:
    name: str
    start: Callable[[ProcessGroup, str], Proc]
    """Start the router in front of the upstream URL; returns once it answers."""


def brix_router(name: str, checkout: Path, routing: str | None, workers: int = 1) -> Router:
    def start(procs: ProcessGroup, upstream: str) -> Proc:
        strategy = ["--routing", routing] if routing else []
        processes = ["--workers", str(workers)] if workers > 1 else []
        return procs.start(
            ["-m", "gateway", "--port", "0", "--discovery", "none",
             "--static-routes", f"m1={upstream}", *strategy, *processes,
             "--log-level", "warning"],
            name=name, env={"BIND_HOST": "127.0.0.1"}, cwd=checkout)
    return Router(name, start)


def peer_router() -> Router:
    binary = peer_binary()

    def start(procs: ProcessGroup, upstream: str) -> Proc:
        port = free_port()
        proc = procs.start(
            [str(binary), "--host", "127.0.0.1", "--port", str(port), "--worker-urls", upstream,
             "--policy", "round_robin", "--log-level", "warning",
             "--prometheus-port", str(free_port()), "--prometheus-host", "127.0.0.1"],
            name=PEER_NAME, ready=None)
        proc.url = f"http://127.0.0.1:{port}"
        _wait_listening(proc, port)
        return proc
    return Router(PEER_NAME, start)


def _wait_listening(proc: Proc, port: int, timeout: float = 60.0) -> None:
    import socket
    import time

    deadline = time.monotonic() + timeout
    while True:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited: {proc.output()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{proc.name} does not listen on {port}") from None
            time.sleep(0.1)


def start_routers(procs: ProcessGroup, routers: list[Router], upstream: str,
                  router_cpus: set[int] | None, *,
                  warm: Callable[[str], object]) -> list[tuple[str, Proc]]:
    """Each router in front of ``upstream``, on ``router_cpus`` if any, warmed by ``warm(url)``."""
    running = []
    for router in routers:
        proc = router.start(procs, upstream)
        if router_cpus:
            pin(proc.popen.pid, router_cpus)
        assert proc.url
        warm(proc.url)
        running.append((router.name, proc))
    return running


def _signed(value: float) -> str:
    return f"{value:+.2f}"


def _ratio(value: float, peer: float) -> str:
    return f"{value / peer:.2f}x" if peer else "-"


def _medians(rounds: dict[str, list[tuple[float, ...]]]) -> dict[str, tuple[float, ...]]:
    """Per path, the median over the rounds of each of its figures."""
    return {name: tuple(statistics.median(col) for col in zip(*rows, strict=True))
            for name, rows in rounds.items()}


def rate_and_latency(procs: ProcessGroup, routers: list[Router], duration: float,
                     script: Path, answer: Path, router_cpus: set[int] | None,
                     rounds: int) -> list[str]:
    up = procs.start(["-m", "bench.gateway.replay", "--answer", str(answer)], name="replay")
    assert up.url
    running = start_routers(procs, routers, up.url, router_cpus,
                            warm=lambda url: wrk(url, 16, 2, script))  # connections, caches
    lines = ["| round | path | req/s at 64 | vs vllm-router | p50 / p99 ms at 64 "
             "| CPU ms/req at 64 | vs vllm-router | p50 ms at 8 | added p50 ms at 8 "
             "| errors | load avg |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    # Per router and round: req/s and CPU as ratios to vllm-router's, and the added p50.
    kept: dict[str, list[tuple[float, ...]]] = {}
    for rnd in range(1, rounds + 1):
        direct64 = wrk(up.url, 64, duration, script)
        direct8 = wrk(up.url, 8, duration, script)
        rows = [("direct", direct64, direct8, 0.0)]
        for name, proc in running:
            assert proc.url
            c0 = cpu_seconds(proc)
            via64 = wrk(proc.url, 64, duration, script)
            cpu = 1000 * (cpu_seconds(proc) - c0) / via64["requests"]
            via8 = wrk(proc.url, 8, duration, script)
            rows.append((name, via64, via8, cpu))
        peer = next(r for r in rows if r[0] == PEER_NAME)
        for name, r64, r8, cpu in rows:
            routed = name != "direct"
            if routed:
                kept.setdefault(name, []).append((r64["rps"] / peer[1]["rps"], cpu / peer[3],
                                                  r8["p50"] - direct8["p50"]))
            lines.append(
                f"| {rnd} | {name} | {r64['rps']:.0f} | {_ratio(r64['rps'], peer[1]['rps'])} "
                f"| {r64['p50']:.2f} / {r64['p99']:.2f} "
                f"| {f'{cpu:.3f}' if routed else '-'} "
                f"| {_ratio(cpu, peer[3]) if routed else '-'} | {r8['p50']:.2f} "
                f"| {_signed(r8['p50'] - direct8['p50']) if routed else '-'} "
                f"| {int(r64['errors'] + r8['errors'])} | {os.getloadavg()[0]:.1f} |")
            print(lines[-1], flush=True)
    if rounds > 2:
        for name, (rps, cpu, added) in _medians(kept).items():
            lines.append(f"| median | {name} | - | {rps:.2f}x | - | - | {cpu:.2f}x | - "
                         f"| {_signed(added)} | - | - |")
    procs.stop_all()
    return lines


def streams(procs: ProcessGroup, routers: list[Router], duration: float,
            router_cpus: set[int] | None, rounds: int) -> list[str]:
    sim = start_sim(procs, name="m1", extra_args=(*slow(ms_per_token=50, max_num_seqs=512),
                                                  "--log-level", "warning"))
    assert sim.url
    running = [("direct", sim), *start_routers(
        procs, routers, sim.url, router_cpus,
        warm=lambda url: loadgen("stream", "--url", url, "--concurrency", "20", "--duration", "1"))]
    common = ["stream", "--concurrency", "200", "--duration", str(duration), "--tokens", "8"]
    lines = ["| round | path | first chunk p50 ms | vs vllm-router | first chunk p99 ms "
             "| vs vllm-router | stream p50 ms | streams | CPU ms/stream | vs vllm-router "
             "| errors | load avg |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    kept: dict[str, list[tuple[float, ...]]] = {}  # first chunk p50, p99, CPU: ratios
    for rnd in range(1, rounds + 1):
        rows = []
        for name, proc in running:
            assert proc.url
            c0 = cpu_seconds(proc)
            r = loadgen(*common, "--url", proc.url)
            cpu = 1000 * (cpu_seconds(proc) - c0) / max(1, r["ttfb"]["n"])
            rows.append((name, r, cpu))
        peer = next(r for r in rows if r[0] == PEER_NAME)
        for name, r, cpu in rows:
            routed = name != "direct"
            p50, p99 = r["ttfb"]["p50_ms"], r["ttfb"]["p99_ms"]
            kept.setdefault(name, []).append((p50 / peer[1]["ttfb"]["p50_ms"],
                                              p99 / peer[1]["ttfb"]["p99_ms"],
                                              cpu / peer[2] if routed else 0.0))
            lines.append(
                f"| {rnd} | {name} | {p50:.1f} | {_ratio(p50, peer[1]['ttfb']['p50_ms'])} "
                f"| {p99:.1f} | {_ratio(p99, peer[1]['ttfb']['p99_ms'])} "
                f"| {r['total']['p50_ms']:.1f} | {r['ttfb']['n']} "
                f"| {f'{cpu:.3f}' if routed else '-'} | {_ratio(cpu, peer[2]) if routed else '-'} "
                f"| {r['errors']} | {os.getloadavg()[0]:.1f} |")
            print(lines[-1], flush=True)
    if rounds > 2:
        for name, (p50, p99, cpu) in _medians(kept).items():
            lines.append(f"| median | {name} | - | {p50:.2f}x | - | {p99:.2f}x | - | - | - "
                         f"| {f'{cpu:.2f}x' if name != 'direct' else '-'} | - | - |")
    procs.stop_all()
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway.peer")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--pin", action="store_true",
                        help="each router on the last CPU, everything else on the others")
    parser.add_argument("--also", action="append", default=[], metavar="NAME=DIR",
                        help="also measure the gateway of the brix checkout in DIR")
    parser.add_argument("--only", choices=["rate", "streams"], default=None)
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of every path in turn; above 2, a last row per path "
                        "gives the median over the rounds of its ratios to vllm-router's")
    parser.add_argument("--workers", default="1", metavar="N[,N...]",
                        help="brix's --workers: one brix row per value (e.g. 1,2 for the "
                        "scaling from one worker to two)")
    parser.add_argument("--routing", default="round-robin",
                        help="brix's strategy, round-robin like the peer's by default "
                        "('default': brix's own default, the fleet-prefill profile)")
    args = parser.parse_args(argv)
    if args.only in (None, "rate") and shutil.which("wrk") is None:
        print("wrk is missing: apt-get install wrk (Debian's package)", file=sys.stderr)
        return 1
    routing = None if args.routing == "default" else args.routing
    try:
        counts = [int(n) for n in args.workers.split(",")]
    except ValueError:
        parser.error(f"--workers: expected numbers separated by commas, got {args.workers!r}")
    if any(n < 1 for n in counts):
        parser.error(f"--workers: each must be >= 1, got {args.workers!r}")
    if args.rounds < 1:
        parser.error(f"--rounds: must be >= 1, got {args.rounds}")
    if args.pin and max(counts) > 1:
        parser.error("--pin gives each router one CPU: run --workers above 1 unpinned")
    routers = [peer_router(), *(brix_router("brix" if n == 1 else f"brix x{n}", REPO, routing, n)
                                for n in counts)]
    for spec in args.also:
        name, _, where = spec.partition("=")
        routers.append(brix_router(name, Path(where).resolve(), routing))
    cpus = sorted(os.sched_getaffinity(0))
    router_cpus = {cpus[-1]} if args.pin and len(cpus) > 1 else None
    mine = os.sched_getaffinity(0)
    if router_cpus:
        os.sched_setaffinity(0, set(cpus[:-1]))  # wrk, the upstream, loadgen
    started = datetime.datetime.now(datetime.UTC)
    load = os.getloadavg()
    sections = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "post.lua"
            script.write_text(LUA)
            procs = ProcessGroup(log_dir=Path(tmp) / "logs")
            try:
                if args.only in (None, "rate"):
                    answer = Path(tmp) / "answer.http"
                    record_answer(procs, answer)
                    sections.append(("Requests/s, CPU and added latency (replay upstream, "
                                     "answers at once; wrk)",
                                     rate_and_latency(procs, routers, args.duration, script,
                                                      answer, router_cpus, args.rounds)))
                if args.only in (None, "streams"):
                    sections.append(("Streams: first chunk (200 streams, 8 tokens at 50 ms, "
                                     "sim upstream)",
                                     streams(procs, routers, args.duration, router_cpus,
                                             args.rounds)))
            finally:
                procs.stop_all()
    finally:
        os.sched_setaffinity(0, mine)
    where = (f"each router pinned to CPU {cpus[-1]}, the rest on the others" if router_cpus
             else "every process on every CPU (unpinned)")
    print(f"\n- date: {started:%Y-%m-%d %H:%M} UTC; machine: {os.cpu_count()} CPUs, "
          f"{cpu_model()}; load average {load[0]:.1f} at the start; {where}; "
          f"peer {PEER}; command: python -m bench.gateway.peer {' '.join(argv or sys.argv[1:])}")
    for title, lines in sections:
        print(f"\n### {title}\n")
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
