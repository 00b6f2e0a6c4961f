"""``python -m bench.up [--record]``: how long ``brix up`` takes to be ready, and
what the idle stack costs.

Starts ``python -m brix.cli up`` (the command ``make up`` runs once set up),
times it to its ready line, lets the stack settle, then adds up the CPU time of
every process of the stack (``brix up`` itself, localkube and everything it
runs, Prometheus) over an idle minute. Goals (issue 8): ready in 90 s when set
up; the idle stack under 10% of one core.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from bench.machine import cpu_model
from tests.helpers.stack import stack_processes

ROOT = Path(__file__).resolve().parents[2]
READY = re.compile(r"brix is up: gateway at (http://\S+)")


def label(proc: psutil.Process) -> str:
    """A short name for a process of the stack: its module or program."""
    try:
        cmd = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return f"pid {proc.pid}"
    if "-m" in cmd[:-1]:
        name = cmd[cmd.index("-m") + 1]
        if "--served-model-name" in cmd[:-1]:
            name += " " + cmd[cmd.index("--served-model-name") + 1]
        return name
    return Path(cmd[0]).name if cmd else f"pid {proc.pid}"


def cpu_total(procs: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for p in procs:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--settle-seconds", type=float, default=20.0)
    parser.add_argument("--record", action="store_true", help="append to bench/up/RESULTS.md")
    args = parser.parse_args()
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "brix.cli", "up"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    assert proc.stdout is not None
    ready_s = None
    for line in proc.stdout:
        if READY.search(line):
            ready_s = time.monotonic() - started
            break
    if ready_s is None:
        print("brix up exited before its ready line", file=sys.stderr)
        return 1
    # Keep draining its output so that it never blocks on a full pipe.
    drain = subprocess.Popen(["cat"], stdin=proc.stdout, stdout=subprocess.DEVNULL)
    try:
        time.sleep(args.settle_seconds)
        procs = stack_processes(ROOT)
        before = cpu_total(procs)
        time.sleep(args.idle_seconds)
        after = cpu_total(procs)
        spent = {pid: after[pid] - before[pid] for pid in after if pid in before}
        share = sum(spent.values()) / args.idle_seconds
        names = {p.pid: label(p) for p in procs}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(120)
        drain.wait(10)
    lines = [
        f"## {dt.date.today().isoformat()} — {os.cpu_count()} CPUs, {cpu_model()}",
        "",
        f"- `brix up` (set up already) to its ready line: {ready_s:.1f} s (goal <= 90 s)",
        f"- idle stack ({len(procs)} processes) over {args.idle_seconds:.0f} s: "
        f"{100 * share:.1f}% of one core (goal <= 10%)",
        f"- load average at the end: {os.getloadavg()[0]:.1f}",
        "- by process (% of one core):",
        *(f"  - {names[pid]}: {100 * used / args.idle_seconds:.2f}"
          for pid, used in sorted(spent.items(), key=lambda kv: -kv[1])),
        "",
    ]
    print("\n".join(lines))
    if args.record:
        results = Path(__file__).with_name("RESULTS.md")
        if not results.exists():
            results.write_text("# brix up: time to ready, idle cost\n\n"
                               "Run with `python -m bench.up --record`.\n\n")
        with results.open("a") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
