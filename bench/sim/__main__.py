"""Benchmark of the sim engine: ``python -m bench.sim [--write bench/sim/RESULTS.md]``.

The sim runs as a process pinned to one CPU (``os.sched_setaffinity``); an
aiohttp client opens N concurrent streaming completions (``ignore_eos``, a
fixed ``max_tokens``), reads every SSE chunk, and records time to first chunk
and the end of each stream. The sim's CPU time comes from /proc, so "tokens per
CPU-second" does not depend on what else the machine is doing.

Scenarios:

- ``hold``: N streams under a realistic timing model; all N run at once
  (``--max-num-seqs`` >= N). Shows whether one core keeps the model's pace:
  achieved tokens/s against the ideal, the sim's CPU use, TTFT.
- ``saturate``: the same streams with no decode time (steps as fast as the
  CPU allows): the most tokens one core of sim streams per second.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.machine import cpu_model, cpu_seconds
from tests.helpers.procs import Proc, ProcessGroup
from tests.helpers.sim import sim_value, start_sim

MODEL = "bench-sim"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


@dataclass
class StreamResult:
    ttft: float
    total: float
    chunks: int
    text_tokens: int
    ok: bool


async def one_stream(
    session: aiohttp.ClientSession, url: str, i: int, max_tokens: int,
) -> StreamResult:
    body = {"model": MODEL, "prompt": f"benchmark stream {i}: tell a long story",
            "max_tokens": max_tokens, "stream": True, "ignore_eos": True}
    start = time.monotonic()
    ttft = 0.0
    chunks = words = 0
    done = False
    async with session.post(f"{url}/v1/completions", json=body) as resp:
        if resp.status != 200:
            return StreamResult(0, 0, 0, 0, False)
        async for raw in resp.content:
            line = raw.strip()
            if not line:
                continue
            if line == b"data: [DONE]":
                done = True
                break
            if chunks == 0:
                ttft = time.monotonic() - start
            chunks += 1
            # Each token is a word with a leading space; count them without parsing JSON.
            _, _, rest = line.partition(b'"text":"')
            words += rest.split(b'"', 1)[0].count(b" ")
    return StreamResult(ttft, time.monotonic() - start, chunks, words, done)


async def run_streams(url: str, n: int, max_tokens: int) -> tuple[list[StreamResult], float]:
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.monotonic()
        results = await asyncio.gather(*(one_stream(session, url, i, max_tokens)
                                         for i in range(n)))
        return list(results), time.monotonic() - start


def scenario(
    group: ProcessGroup, *, name: str, n: int, max_tokens: int, decode_ms: float,
    per_seq_ms: float, cpu: int,
) -> dict[str, Any]:
    proc: Proc = start_sim(group, name=MODEL, extra_args=[
        "--prefill-tokens-per-s", "100000", "--decode-ms-per-token", str(decode_ms),
        "--decode-ms-per-token-per-seq", str(per_seq_ms), "--max-num-seqs", str(max(n, 1)),
        "--kv-cache-tokens", str(max(n * (max_tokens + 64), 65536)),
        "--log-level", "warning",
    ])
    assert proc.url is not None
    if cpu >= 0:
        os.sched_setaffinity(proc.popen.pid, {cpu})
    cpu_before = cpu_seconds(proc.popen.pid)
    results, wall = asyncio.run(run_streams(proc.url, n, max_tokens))
    sim_cpu = cpu_seconds(proc.popen.pid) - cpu_before
    generated = sim_value(proc.url, "vllm:generation_tokens_total")
    e2e_mean = (sim_value(proc.url, "vllm:e2e_request_latency_seconds_sum")
                / max(1.0, sim_value(proc.url, "vllm:e2e_request_latency_seconds_count")))
    proc.stop()
    ok = [r for r in results if r.ok]
    step = (decode_ms + per_seq_ms * (n - 1)) / 1000
    ideal_wall = max_tokens * step + 0.0  # prefill is negligible at 100k tokens/s
    return {
        "name": name, "streams": n, "completed": len(ok), "max_tokens": max_tokens,
        "decode_ms": decode_ms, "per_seq_ms": per_seq_ms,
        "wall_s": wall, "sim_e2e_mean_s": e2e_mean,
        "ideal_wall_s": ideal_wall if decode_ms > 0 else None,
        "tokens": int(generated), "tokens_per_s": generated / wall,
        "sim_cpu_s": sim_cpu, "sim_cpu_share": sim_cpu / wall,
        "tokens_per_cpu_s": generated / sim_cpu if sim_cpu else float("inf"),
        "ttft_p50_ms": 1e3 * percentile([r.ttft for r in ok], 50) if ok else None,
        "ttft_p99_ms": 1e3 * percentile([r.ttft for r in ok], 99) if ok else None,
        "stream_p50_s": statistics.median(r.total for r in ok) if ok else None,
        "all_tokens_arrived": all(r.text_tokens == max_tokens for r in ok),
    }


def render(rows: list[dict[str, Any]], command: str) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    lines = [
        "# Sim engine benchmark: concurrent streams, tokens/s per core", "",
        f"- date: {now}",
        f"- machine: {os.cpu_count()} CPUs (`nproc`), {cpu_model()}; load average "
        f"{load:.1f} at the end (the machine is shared: wall-clock figures include waiting "
        "for a CPU; the CPU-time figures do not)",
        "- setup: the sim as a process pinned to one CPU, an aiohttp client on the same "
        "machine opening every stream at once (`/v1/completions`, `stream`, `ignore_eos`)",
        f"- command: `{command}`", "",
        "| scenario | streams | done | tokens each | step model | ideal s | sim e2e mean s | "
        "client wall s | tokens/s | sim CPU share | tokens per sim CPU-s | client TTFT p50 ms "
        "| p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ideal = f"{r['ideal_wall_s']:.1f}" if r["ideal_wall_s"] is not None else "-"
        lines.append(
            f"| {r['name']} | {r['streams']} | {r['completed']} | {r['max_tokens']} | "
            f"{r['decode_ms']} ms + {r['per_seq_ms']} ms/seq | {ideal} | "
            f"{r['sim_e2e_mean_s']:.1f} | {r['wall_s']:.1f} | "
            f"{r['tokens_per_s']:.0f} | {100 * r['sim_cpu_share']:.0f}% | "
            f"{r['tokens_per_cpu_s']:.0f} | {r['ttft_p50_ms']:.0f} | {r['ttft_p99_ms']:.0f} |"
        )
    lines.append("")
    lines.append("Every stream received all its tokens: "
                 + ("**yes**" if all(r["all_tokens_arrived"] and r["completed"] == r["streams"]
                                     for r in rows) else "**NO**") + ".")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sim", description=__doc__)
    parser.add_argument("--streams", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--decode-ms", type=float, default=30.0)
    parser.add_argument("--per-seq-ms", type=float, default=0.02)
    parser.add_argument("--cpu", type=int, default=0,
                        help="CPU to pin the sim to (-1: do not pin; its CPU time is "
                        "measured either way)")
    parser.add_argument("--write", type=Path, help="write the results (markdown) here")
    args = parser.parse_args()
    rows = []
    group = ProcessGroup(log_dir=Path("/tmp/brix-bench-sim"))
    try:
        for n in args.streams:
            rows.append(scenario(group, name="hold", n=n, max_tokens=args.max_tokens,
                                 decode_ms=args.decode_ms, per_seq_ms=args.per_seq_ms,
                                 cpu=args.cpu))
            print(rows[-1], flush=True)
        n = max(args.streams)
        rows.append(scenario(group, name="saturate", n=n, max_tokens=args.max_tokens,
                             decode_ms=0.0, per_seq_ms=0.0, cpu=args.cpu))
        print(rows[-1], flush=True)
    finally:
        group.stop_all()
    command = " ".join(["python -m bench.sim", *sys.argv[1:]])
    text = render(rows, command)
    print(text)
    if args.write:
        args.write.write_text(text)


if __name__ == "__main__":
    main()
