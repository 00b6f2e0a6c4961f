"""Gateway benchmarks: ``python -m bench.gateway [--duration 5] [--write FILE]``.

Results are kept in bench/gateway/RESULTS.md (``--write bench/gateway/RESULTS.md``).

Everything runs as separate processes on this machine: sim engines (answers in
well under a millisecond of model time), one gateway process (one worker),
and a load generator that is not the gateway's code: ``wrk`` (Debian's
package) for non-streaming requests, ``bench.gateway.loadgen`` (raw asyncio
HTTP/1.1) for streams and for mixed loads.

1. Overhead against a sim, every process on the same CPUs: p50/p99 latency
   going direct and through the gateway at 1, 64 and 256 connections (the
   difference of the percentiles), and the CPU seconds each process used per
   request (from /proc).
2. One gateway worker on a CPU of its own (the last one; the upstream and
   wrk on the others), with ``bench.gateway.replay`` as the upstream: an
   answer recorded from the sim, replayed (a stand-in, not an engine; see
   that module for why the sim cannot serve here):
   a. the most requests/s the worker passes, and its CPU per request, with
      answers that come at once;
   b. the latency it adds to answers that take 50 ms (drawn from 25-75 ms
      with more than one connection, so that clients do not move in
      lockstep), at 1, 64 and 256 connections.
3. Streaming: time to first byte with 200 concurrent streams, direct and
   through the gateway.
4. Routing quality: three sims that each run at most 4 sequences at once, a
   load where 10% of the requests are 40x longer; p99 per strategy.

brix's gateway beside vLLM's Rust router (``vllm-router``), measured in the
same run: ``python -m bench.gateway.peer`` (see that module).

Goals (issue 4): p50 <= 1 ms and p99 <= 3 ms added at 64 concurrent; >= 3,000
non-streaming requests/s through one worker (<= 0.3 ms gateway CPU per
request); streaming first-byte overhead <= 30 ms p50 at 200 streams.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from bench.machine import cpu_model, pin
from bench.machine import tree_cpu_seconds as pid_cpu_seconds
from gateway.settings import DEFAULT_ROUTING
from tests.helpers.gateway import start_gateway
from tests.helpers.procs import Proc, ProcessGroup
from tests.helpers.sim import slow, start_sim

INSTANT = ("--prefill-tokens-per-s", "100000000", "--decode-ms-per-token", "0",
           "--decode-ms-per-token-per-seq", "0", "--log-level", "warning")
LUA = """wrk.method = "POST"
wrk.body = '{"model":"m1","prompt":"Hello there","max_tokens":1}'
wrk.headers["Content-Type"] = "application/json"
"""
ENGINE_MS = 50.0  # how long the replayed answers take in section 2b


def cpu_seconds(proc: Proc) -> float:
    return pid_cpu_seconds(proc.popen.pid)


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m[2]]


def wrk(url: str, connections: int, duration: float, script: Path) -> dict[str, float]:
    """Run wrk; its latency percentiles, requests/s, errors and its own CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
         "-s", str(script), url + "/v1/completions"],
        capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result: dict[str, float] = {
        "wrk_cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)}
    for p in ("50", "99"):
        m = re.search(rf"^\s+{p}%\s+(\S+)", out, re.M)
        assert m, out
        result[f"p{p}"] = _ms(m[1])
    m = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    assert m, out
    result["rps"] = float(m[1])
    m = re.search(r"^\s+(\d+) requests in", out, re.M)
    assert m, out
    result["requests"] = float(m[1])
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    result["errors"] = float(bad[1]) if bad else 0.0
    if errors:
        result["errors"] += sum(int(n) for n in re.findall(r"\d+", errors[0]))
    return result


def direct_and_via(upstream: Proc, gw: Proc, conns: int, duration: float,
                   script: Path) -> tuple[dict[str, float], dict[str, float], float, float]:
    """wrk straight to ``upstream``, then through ``gw``: both results, and the
    gateway's and the upstream's CPU ms per request during the second run."""
    assert upstream.url
    assert gw.url
    direct = wrk(upstream.url, conns, duration, script)
    g0, u0 = cpu_seconds(gw), cpu_seconds(upstream)
    via = wrk(gw.url, conns, duration, script)
    g1, u1 = cpu_seconds(gw), cpu_seconds(upstream)
    n = via["requests"]
    return direct, via, 1000 * (g1 - g0) / n, 1000 * (u1 - u0) / n


def loadgen(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.gateway.loadgen", *args],
                         capture_output=True, text=True, check=True).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def overhead(procs: ProcessGroup, duration: float, script: Path) -> list[str]:
    sim = start_sim(procs, name="m1", extra_args=INSTANT)
    gw = start_gateway(procs, extra_args=["--static-routes", f"m1={sim.url}",
                                          "--log-level", "warning"])
    assert sim.url
    assert gw.url
    wrk(gw.url, 16, 2, script)  # warm both up: connections, imports, caches
    lines = ["| connections | direct p50 ms | direct p99 ms | gateway p50 ms | gateway p99 ms "
             "| added p50 ms | added p99 ms | direct req/s | gateway req/s "
             "| gateway CPU ms/req | sim CPU ms/req | wrk CPU ms/req | errors |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for rnd in (1, 2):  # two rounds, direct and gateway alternating: the machine is shared
        for conns in (1, 64, 256):
            direct, via, gw_ms, sim_ms = direct_and_via(sim, gw, conns, duration, script)
            lines.append(
                f"| {conns} (round {rnd}) | {direct['p50']:.2f} | {direct['p99']:.2f} "
                f"| {via['p50']:.2f} | {via['p99']:.2f} | {via['p50'] - direct['p50']:+.2f} "
                f"| {via['p99'] - direct['p99']:+.2f} | {direct['rps']:.0f} | {via['rps']:.0f} "
                f"| {gw_ms:.3f} | {sim_ms:.3f} | {1000 * via['wrk_cpu'] / via['requests']:.3f} "
                f"| {int(direct['errors'] + via['errors'])} |")
            print(lines[-1], flush=True)
    procs.stop_all()
    return lines


def record_answer(procs: ProcessGroup, path: Path) -> None:
    """The sim's answer to wrk's request, as the bytes of an HTTP/1.1 response."""
    sim = start_sim(procs, name="m1", extra_args=INSTANT)
    assert sim.url
    r = httpx.post(sim.url + "/v1/completions", timeout=30,
                   json={"model": "m1", "prompt": "Hello there", "max_tokens": 1})
    r.raise_for_status()
    head = f"HTTP/1.1 {r.status_code} {r.reason_phrase}\r\n".encode()
    head += b"".join(k + b": " + v + b"\r\n" for k, v in r.headers.raw)
    path.write_bytes(head + b"\r\n" + r.content)
    procs.stop_all()


def _replay_and_gateway(procs: ProcessGroup, answer: Path, gateway_cpus: set[int],
                        script: Path, *, delay_ms: float = 0.0,
                        spread_ms: float = 0.0) -> tuple[Proc, Proc]:
    """The replay stand-in and a gateway to it on ``gateway_cpus``, warmed up."""
    up = procs.start(["-m", "bench.gateway.replay", "--answer", str(answer),
                      "--delay-ms", str(delay_ms), "--spread-ms", str(spread_ms)],
                     name="replay")
    assert up.url
    gw = start_gateway(procs, extra_args=["--static-routes", f"m1={up.url}",
                                          "--log-level", "warning"])
    pin(gw.popen.pid, gateway_cpus)
    assert gw.url
    wrk(gw.url, 16, 2, script)  # connections, imports, caches
    return up, gw


def own_cpu(procs: ProcessGroup, duration: float, script: Path,
            answer: Path) -> list[tuple[str, list[str]]]:
    """Section 2: one gateway worker pinned to the last CPU, everything else on the others."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return [("One gateway worker on a CPU of its own",
                 ["Not measured: this machine has one CPU."])]
    mine = os.sched_getaffinity(0)
    gateway_cpus = {cpus[-1]}
    os.sched_setaffinity(0, set(cpus[:-1]))  # what starts from here (wrk, replay) runs there
    try:
        rate = ["| connections | direct req/s | gateway req/s | gateway p50 ms "
                "| gateway p99 ms | gateway CPU ms/req | replay CPU ms/req | wrk CPU ms/req "
                "| errors |", "|---|---|---|---|---|---|---|---|---|"]
        up, gw = _replay_and_gateway(procs, answer, gateway_cpus, script)
        for rnd in (1, 2):
            for conns in (64, 256):
                direct, via, gw_ms, up_ms = direct_and_via(up, gw, conns, duration, script)
                rate.append(
                    f"| {conns} (round {rnd}) | {direct['rps']:.0f} | {via['rps']:.0f} "
                    f"| {via['p50']:.2f} | {via['p99']:.2f} | {gw_ms:.3f} | {up_ms:.3f} "
                    f"| {1000 * via['wrk_cpu'] / via['requests']:.3f} "
                    f"| {int(direct['errors'] + via['errors'])} |")
                print(rate[-1], flush=True)
        procs.stop_all()

        added = ["| connections | engine ms | direct p50 ms | direct p99 ms | gateway p50 ms "
                 "| gateway p99 ms | added p50 ms | added p99 ms | gateway req/s "
                 "| gateway CPU ms/req | errors |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for conns, spread in ((1, 0.0), (64, ENGINE_MS / 2), (256, ENGINE_MS / 2)):
            up, gw = _replay_and_gateway(procs, answer, gateway_cpus, script,
                                         delay_ms=ENGINE_MS, spread_ms=spread)
            engine = f"{ENGINE_MS:g}" + (f" +- {spread:g}" if spread else "")
            for rnd in (1, 2):
                direct, via, gw_ms, _ = direct_and_via(up, gw, conns, duration, script)
                added.append(
                    f"| {conns} (round {rnd}) | {engine} | {direct['p50']:.2f} "
                    f"| {direct['p99']:.2f} | {via['p50']:.2f} | {via['p99']:.2f} "
                    f"| {via['p50'] - direct['p50']:+.2f} | {via['p99'] - direct['p99']:+.2f} "
                    f"| {via['rps']:.0f} | {gw_ms:.3f} | {int(direct['errors'] + via['errors'])} |")
                print(added[-1], flush=True)
            procs.stop_all()
    finally:
        os.sched_setaffinity(0, mine)
    where = (f"gateway on CPU {cpus[-1]}, replay and wrk on CPU "
             f"{', '.join(str(c) for c in cpus[:-1])}")
    return [(f"One gateway worker on a CPU of its own: most requests/s ({where}; "
             "answers at once)", rate),
            (f"One gateway worker on a CPU of its own: added latency ({where}; answers "
             f"after {ENGINE_MS:g} ms)", added)]


def streaming(procs: ProcessGroup, duration: float) -> list[str]:
    sim = start_sim(procs, name="m1", extra_args=(*slow(ms_per_token=50, max_num_seqs=512),
                                                  "--log-level", "warning"))
    gw = start_gateway(procs, extra_args=["--static-routes", f"m1={sim.url}",
                                          "--log-level", "warning"])
    assert sim.url
    assert gw.url
    common = ["stream", "--concurrency", "200", "--duration", str(duration), "--tokens", "8"]
    loadgen(*common[:1], "--url", gw.url, "--concurrency", "20", "--duration", "1")  # warm up
    lines = ["| 200 streams, 8 tokens at 50 ms | TTFB p50 ms | TTFB p99 ms | stream p50 ms "
             "| streams | errors | gateway CPU ms/stream |", "|---|---|---|---|---|---|---|"]
    for rnd in (1, 2):
        for name, url in (("direct", sim.url), ("gateway", gw.url)):
            g0 = cpu_seconds(gw)
            r = loadgen(*common, "--url", url)
            cpu = (cpu_seconds(gw) - g0) * 1000 / max(1, r["ttfb"]["n"])
            lines.append(f"| {name} (round {rnd}) | {r['ttfb']['p50_ms']:.1f} "
                         f"| {r['ttfb']['p99_ms']:.1f} | {r['total']['p50_ms']:.1f} "
                         f"| {r['ttfb']['n']} | {r['errors']} "
                         f"| {cpu if name == 'gateway' else 0:.3f} |")
            print(lines[-1], flush=True)
    procs.stop_all()
    return lines


def routing_quality(procs: ProcessGroup, duration: float) -> list[str]:
    sims = [start_sim(procs, name="m1", extra_args=(*slow(ms_per_token=5, max_num_seqs=4),
                                                    "--log-level", "warning"))
            for _ in range(3)]
    gw = start_gateway(procs, extra_args=[
        *[a for s in sims for a in ("--static-routes", f"m1={s.url}")], "--seed", "1",
        "--log-level", "warning"])
    assert gw.url
    lines = ["| strategy | short p50 ms | short p99 ms | long p99 ms | all p99 ms | requests "
             "| errors |", "|---|---|---|---|---|---|---|"]
    for strategy in ("round-robin", "random", "least-request", "least-queue",
                     "prefix-affinity", "prefix-cache", DEFAULT_ROUTING):
        r = loadgen("mix", "--url", gw.url, "--routing", strategy, "--concurrency", "24",
                    "--duration", str(duration), "--tokens", "5", "--long-tokens", "200",
                    "--long-share", "0.1")
        name = f"{strategy} (the default)" if strategy == DEFAULT_ROUTING else strategy
        lines.append(f"| {name} | {r['short']['p50_ms']:.0f} | {r['short']['p99_ms']:.0f} "
                     f"| {r['long']['p99_ms']:.0f} | {r['all']['p99_ms']:.0f} "
                     f"| {r['all']['n']} | {r['errors']} |")
        print(lines[-1], flush=True)
    procs.stop_all()
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--write", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get install wrk (Debian's package)", file=sys.stderr)
        return 1
    started = datetime.datetime.now(datetime.UTC)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(LUA)
        procs = ProcessGroup(log_dir=Path(tmp) / "logs")
        try:
            answer = Path(tmp) / "answer.http"
            record_answer(procs, answer)
            sections = [
                ("Overhead against going direct to a sim (non-streaming, wrk; every process "
                 "on the same CPUs)", overhead(procs, args.duration, script)),
                *own_cpu(procs, args.duration, script, answer),
                ("Streaming time to first byte", streaming(procs, args.duration)),
                ("Routing quality under skewed load (3 sims, 4 sequences each, 24 clients, "
                 "10% of requests 40x longer)", routing_quality(procs, args.duration * 2)),
            ]
        finally:
            procs.stop_all()
    report = [
        "# Gateway benchmark",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC",
        f"- machine: {os.cpu_count()} CPUs (`nproc`), {cpu_model()}; load average "
        f"{load[0]:.1f} when it started (the machine is shared)",
        "- processes: sim engines (or the replay stand-in), one gateway process (uvicorn, "
        "one worker), the load generator (wrk, or `bench.gateway.loadgen`), all on "
        "loopback; on the same CPUs except where a section says otherwise",
        f"- command: `python -m bench.gateway --duration {args.duration:g}`",
        "",
    ]
    for title, lines in sections:
        report += [f"## {title}", "", *lines, ""]
    text = "\n".join(report)
    print(text)
    if args.write:
        previous = args.write.read_text() if args.write.exists() else ""
        notes = previous.split("<!-- notes -->", 1)[1] if "<!-- notes -->" in previous else ""
        args.write.write_text(text + "\n<!-- notes -->" + notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
