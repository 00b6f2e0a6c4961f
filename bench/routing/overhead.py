"""The gateway's CPU per request by strategy: ``python -m bench.routing.overhead``.

One gateway process pinned to the last CPU, in front of four
``bench.gateway.replay`` stand-ins (the sim's recorded answer, replayed: they
cost next to nothing), and 64 keep-alive connections of
``bench.gateway.loadgen.Conn`` on the other CPUs sending chat completions
with a 2,000-character system prompt and a user message (so ``prefix-cache``
hashes 8-9 chunks and looks each up). Each request's prompt is its own unless
``--shared``: ``prefix-cache`` then misses every time and spreads the requests
as ``least-request`` does, so what differs is the routing's own work. Rounds
alternate ``least-request`` and ``prefix-cache`` on the same gateway, so a
slow minute of the shared machine hits both; the gateway's CPU seconds
(from /proc) over the requests it answered give its CPU per request.
``--profile NAME`` compares another profile with ``least-request`` (the
gateway's default, ``fleet-prefill``, also renders and hashes every prompt).
Goal (issue 14): ``prefix-cache`` within +0.05 ms of ``least-request``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.gateway.__main__ import record_answer
from bench.gateway.loadgen import Conn
from bench.machine import cpu_seconds, pin
from gateway.scoring import BUILT_IN
from tests.helpers.gateway import start_gateway
from tests.helpers.procs import ProcessGroup

SYSTEM = ("You are the brix assistant. Answer briefly, cite the design document, and say "
          "when you do not know. ") * 20


async def load(url: str, routing: str, connections: int, duration: float, *,
               shared: bool = False) -> tuple[int, int]:
    """(answered, errors) in ``duration`` seconds over ``connections`` connections."""
    parts = urlsplit(url)
    rng = random.Random(1)
    answered = errors = 0
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal answered, errors
        conn = Conn(parts.hostname or "127.0.0.1", parts.port or 80)
        try:
            while time.perf_counter() < deadline:
                # A prompt of its own (the system prompt after a unique line) unless
                # --shared: every request then misses and goes to the least loaded,
                # as least-request sends it, so both spread alike over the upstreams.
                system = SYSTEM if shared else f"{rng.random()}\n{SYSTEM}"
                body = json.dumps({"model": "m1", "max_tokens": 1, "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": f"question {rng.random()} " * 8}]}).encode()
                try:
                    status, _, _ = await conn.request("/v1/chat/completions", body,
                                                      {"x-brix-routing": routing})
                except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError):
                    errors += 1
                    conn.close()
                    conn = Conn(parts.hostname or "127.0.0.1", parts.port or 80)
                    continue
                if status == 200:
                    answered += 1
                else:
                    errors += 1
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return answered, errors


def measure(duration: float, rounds: int, connections: int, *, shared: bool = False,
            profile: str = "prefix-cache") -> list[str]:
    cpus = sorted(os.sched_getaffinity(0))
    lines = ["| round | routing | requests | req/s | gateway CPU ms/req | errors |",
             "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        procs = ProcessGroup(Path(tmp))
        try:
            answer = Path(tmp) / "answer.http"
            record_answer(procs, answer)
            if len(cpus) > 1:
                os.sched_setaffinity(0, set(cpus[:-1]))
            ups = [procs.start(["-m", "bench.gateway.replay", "--answer", str(answer)],
                               name=f"replay{i}") for i in range(4)]
            gw = start_gateway(procs, extra_args=[
                "--static-routes", ",".join(f"m1={u.url}" for u in ups),
                "--log-level", "warning"])
            assert gw.url
            if len(cpus) > 1:
                pin(gw.popen.pid, {cpus[-1]})
            asyncio.run(load(gw.url, "least-request", 16, 2))  # warm up
            asyncio.run(load(gw.url, profile, 16, 2))
            per: dict[str, list[float]] = {"least-request": [], profile: []}
            for rnd in range(1, rounds + 1):
                order = list(per) if rnd % 2 else list(reversed(per))
                for routing in order:
                    c0 = cpu_seconds(gw.popen.pid)
                    t0 = time.perf_counter()
                    n, errors = asyncio.run(load(gw.url, routing, connections, duration,
                                                 shared=shared))
                    spent = time.perf_counter() - t0
                    ms = 1000 * (cpu_seconds(gw.popen.pid) - c0) / max(1, n)
                    per[routing].append(ms)
                    lines.append(f"| {rnd} | {routing} | {n} | {n / spent:.0f} | {ms:.3f} "
                                 f"| {errors} |")
                    print(lines[-1], flush=True)
            lr, pc = (sum(v) / len(v) for v in per.values())
            lines += ["", f"Mean over the rounds: least-request {lr:.3f} ms, {profile} "
                      f"{pc:.3f} ms of gateway CPU per request: {pc - lr:+.3f} ms "
                      f"(goal: at most +0.050 ms)."]
        finally:
            procs.stop_all()
            os.sched_setaffinity(0, set(cpus))
    return lines


def decision_cost(rounds: int = 5, n: int = 10_000, profile: str = "prefix-cache") -> list[str]:
    """The routing work alone, in this process: what prefix-cache adds to a request.

    least-request: the load lookup and the pick. prefix-cache: rendering the
    prompt, hashing its chunks, the index lookup and update, and the scored
    pick. Alternated ``rounds`` times; microseconds per request.
    """
    from gateway.load import LoadTracker
    from gateway.picker import pick, prompt_chars
    from gateway.router import ProfileRouter
    from gateway.routing_config import RoutingConfig
    from gateway.table import Endpoint, RoutingTable

    eps = [Endpoint(f"p{i}", f"http://127.0.0.{i + 1}:8000") for i in range(4)]
    tracker = LoadTracker()
    router = ProfileRouter(RoutingConfig(), table=RoutingTable(static={"m1": eps}),
                           tracker=tracker)
    rng = random.Random(1)
    lines = [f"| prompts | least-request us/req (median of rounds) | {profile} us/req "
             "| added us |", "|---|---|---|---|"]
    for label, shared in (("own", False), ("shared system prompt", True)):
        bodies = [{"model": "m1", "messages": [
            {"role": "system", "content": SYSTEM if shared else f"{rng.random()}\n{SYSTEM}"},
            {"role": "user", "content": f"question {rng.random()} " * 8}]} for _ in range(n)]
        it = iter(bodies * (rounds + 1))

        def prefix_cache(it: Iterator[dict[str, Any]] = it) -> None:
            body = next(it)
            router.choose(profile, eps, name="m1", model="m1",
                          hashes=router.hashes(body, "m1"), rng=rng,
                          prompt_chars=prompt_chars(body))

        def least_request() -> None:
            pick("least-request", tracker.candidates(eps), rng=rng)

        times: dict[str, list[float]] = {"lr": [], "pc": []}
        for _ in range(rounds):
            for key, fn in (("lr", least_request), ("pc", prefix_cache)):
                t0 = time.perf_counter()
                for _ in range(n):
                    fn()
                times[key].append(1e6 * (time.perf_counter() - t0) / n)
        lr, pc = (sorted(v)[len(v) // 2] for v in times.values())
        lines.append(f"| {label} | {lr:.1f} | {pc:.1f} | {pc - lr:+.1f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.routing.overhead")
    parser.add_argument("--duration", type=float, default=5.0, help="Seconds per round.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--shared", action="store_true",
                        help="One system prompt for all (prefix-cache then keeps them on one "
                        "upstream, which changes the upstreams' share of the CPU as well).")
    parser.add_argument("--profile", default="prefix-cache", choices=sorted(BUILT_IN),
                        help="The built-in profile compared with least-request (prefix-cache).")
    parser.add_argument("--in-process", action="store_true",
                        help="Only the routing work, timed in this process (no servers).")
    args = parser.parse_args(argv)
    if args.in_process:
        print("\n".join(decision_cost(profile=args.profile)))
        return 0
    print("\n".join(measure(args.duration, args.rounds, args.connections,
                            shared=args.shared, profile=args.profile)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
