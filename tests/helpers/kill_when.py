"""SIGKILL a vLLM engine's process group at the moment its own gauges name, from a process
of its own.

    python -m tests.helpers.kill_when URL PGID --running 4 --waiting 16 --tokens 16

polls ``URL/metrics`` every ``--interval`` seconds; once the engine is generating
(its token counter rose since the previous look: vLLM's gauges keep their last value
once it is idle), runs at least ``--running`` requests, holds at least ``--waiting``
and has generated at least ``--tokens`` tokens, it SIGKILLs process group ``PGID`` and
prints one JSON line: the gauges it acted on, ``read_s`` (how long that read of the
metrics took) and ``killed_at``, the time of the kill
on CLOCK_MONOTONIC (the clock of the test's ``time.monotonic()``). If the moment has
not come within ``--timeout`` seconds it kills nothing and exits 1 with one line.

Why a process: a test's client parsing 100 streams keeps its interpreter busy, and a
thread of it waits for the GIL at each read (up to 5 ms each time): reading vLLM's
metrics and the process table there took seconds, so the kill came long after the
gauges it acted on (42 waiting read, 26 left by the kill).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
import urllib.request


def engine_gauge(text: str, name: str) -> float:
    """The value of vLLM's ``vllm:<name>`` series in a metrics exposition (0 if absent)."""
    m = re.search(r"^vllm:" + name + r"\{[^}]*\} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def gauges(text: str) -> dict[str, float]:
    return {"running": engine_gauge(text, "num_requests_running"),
            "waiting": engine_gauge(text, "num_requests_waiting"),
            "generated": engine_gauge(text, "generation_tokens_total")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.helpers.kill_when")
    ap.add_argument("url")
    ap.add_argument("pgid", type=int)
    ap.add_argument("--running", type=int, required=True)
    ap.add_argument("--waiting", type=int, required=True)
    ap.add_argument("--tokens", type=int, required=True)
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args(argv)
    deadline = time.monotonic() + args.timeout
    last: float | None = None
    now: dict[str, float] = {}
    problem = ""
    while time.monotonic() < deadline:
        asked = time.monotonic()
        try:
            with urllib.request.urlopen(f"{args.url}/metrics", timeout=10) as r:
                now = {**gauges(r.read().decode()), "read_s": time.monotonic() - asked}
            problem = ""
        except OSError as exc:  # an engine starved of CPU can answer late: look again
            problem = f"; its last read failed: {exc}"
            time.sleep(args.interval)
            continue
        rising = last is not None and now["generated"] > last
        last = now["generated"]
        if (rising and now["running"] >= args.running and now["waiting"] >= args.waiting
                and now["generated"] >= args.tokens):
            os.killpg(args.pgid, signal.SIGKILL)
            print(json.dumps({**now, "killed_at": time.monotonic()}), flush=True)
            return 0
        time.sleep(args.interval)
    print(f"kill_when: within {args.timeout:g} s the engine at {args.url} never ran "
          f"{args.running} with {args.waiting} waiting while generating (last: {now}{problem})",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
