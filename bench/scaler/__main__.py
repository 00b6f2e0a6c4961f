"""Benchmark of the KEDA path: ``python -m bench.scaler [--write bench/scaler/RESULTS.md]``.

1,000 ScaledObjects over 50 models (20 per model, as if each model had many
triggers and KEDA plus the HPA polled them all), a real Prometheus scraping
known values every second, the scaler as a process, a gRPC client generated
from the proto:

- ``GetMetrics`` latency p50/p99 with every answer cached (warm cache);
- the same with the cache off (``--cache-ttl 0``: every call asks Prometheus);
- Prometheus queries per cache interval while all 1,000 objects are polled
  every second for a while (read from Prometheus' own request counter).

Goals (issue 5): p99 <= 5 ms cached; <= 1 query per model per interval.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import httpx

from bench.machine import cpu_model, cpu_seconds
from tests.helpers.procs import ProcessGroup
from tests.helpers.prometheus import query, start_prometheus
from tests.helpers.scaler import StaticExporter, scrape_config, start_scaler


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
    return ordered[index]


def prometheus_queries(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("prometheus_http_requests_total{")
               and 'handler="/api/v1/query"' in line)


def requests(models: int, objects: int) -> list[Any]:
    from scaler._proto import externalscaler_pb2 as pb

    out = []
    for i in range(objects):
        model = f"model-{i % models}"
        ref = pb.ScaledObjectRef(name=f"so-{i}", namespace="bench", scalerMetadata={
            "model": model, "target": "4", "scalerAddress": "brix-scaler:9100"})
        out.append(pb.GetMetricsRequest(scaledObjectRef=ref))
    return out


async def timed_calls(target: str, batch: list[Any], concurrency: int) -> list[float]:
    """Latency (ms) of each GetMetrics in ``batch``, ``concurrency`` at a time."""
    from scaler._proto import externalscaler_pb2_grpc as pb_grpc

    latencies: list[float] = []
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        await stub.GetMetrics(batch[0])  # connect first
        semaphore = asyncio.Semaphore(concurrency)

        async def one(request: Any) -> None:
            async with semaphore:
                start = time.perf_counter()
                await stub.GetMetrics(request)
                latencies.append((time.perf_counter() - start) * 1000)

        await asyncio.gather(*(one(r) for r in batch))
    return latencies


async def polled(target: str, batch: list[Any], seconds: float) -> int:
    """Poll every object once a second for ``seconds``; return the calls made."""
    from scaler._proto import externalscaler_pb2_grpc as pb_grpc

    calls = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            tick = time.monotonic()
            await asyncio.gather(*(stub.GetMetrics(r) for r in batch))
            calls += len(batch)
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    return calls


def summary(name: str, latencies: list[float]) -> str:
    return (f"| {name} | {len(latencies)} | {statistics.median(latencies):.2f} | "
            f"{percentile(latencies, 99):.2f} | {max(latencies):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scaler", description=__doc__)
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--interval", type=float, default=2.0,
                        help="cache interval (s) of the query-count run")
    parser.add_argument("--poll-seconds", type=float, default=20.0)
    parser.add_argument("--write", type=Path, help="write the results (markdown) here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-scaler-"))
    procs = ProcessGroup(log_dir=work / "logs")
    exporter = StaticExporter()
    lines: list[str] = []
    try:
        for m in range(args.models):
            for p in range(2):
                exporter.pod(f"model-{m}", f"pod-{p}", namespace="bench", waiting=m + p,
                             running=1, kv_cache=0.5)
        _, prom = start_prometheus(procs, work / "prom", scrape_config(exporter.target))
        deadline = time.monotonic() + 60
        while len(query(prom, 'count by (model) (brix_engine_up{namespace="bench"})')) \
                < args.models:
            if time.monotonic() > deadline:
                raise TimeoutError("Prometheus did not scrape the exporter")
            time.sleep(0.5)
        batch = requests(args.models, args.objects)

        cached = start_scaler(procs, prometheus_url=prom, name="scaler-cached",
                              extra_args=["--cache-ttl", "3600", "--log-level", "WARNING"])
        assert cached.grpc_target is not None
        asyncio.run(timed_calls(cached.grpc_target, batch[: args.models], 1))  # warm
        cpu_before = cpu_seconds(cached.proc.popen.pid)
        hot_serial = asyncio.run(timed_calls(cached.grpc_target, batch, 1))
        hot = asyncio.run(timed_calls(cached.grpc_target, batch, args.concurrency))
        cpu_per_call = (cpu_seconds(cached.proc.popen.pid) - cpu_before) / (2 * len(batch)) * 1000

        uncached = start_scaler(procs, prometheus_url=prom, name="scaler-uncached",
                                extra_args=["--cache-ttl", "0", "--log-level", "WARNING"])
        assert uncached.grpc_target is not None
        cold_serial = asyncio.run(timed_calls(uncached.grpc_target, batch, 1))
        cold = asyncio.run(timed_calls(uncached.grpc_target, batch, args.concurrency))

        polling = start_scaler(procs, prometheus_url=prom, name="scaler-polled",
                               extra_args=["--cache-ttl", str(args.interval),
                                           "--log-level", "WARNING"])
        assert polling.grpc_target is not None
        before = prometheus_queries(prom)
        started = time.monotonic()
        calls = asyncio.run(polled(polling.grpc_target, batch, args.poll_seconds))
        elapsed = time.monotonic() - started
        sent = prometheus_queries(prom) - before
        intervals = elapsed / args.interval
        per_model = sent / args.models / intervals

        lines += [
            "# Scaler benchmark: KEDA GetMetrics",
            "",
            f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
            f"- machine: {os.cpu_count()} CPUs (`nproc`), {cpu_model()}; load average "
            f"{os.getloadavg()[0]:.1f} at the end (other work shares the machine: latencies "
            "include waiting for a CPU)",
            f"- setup: {args.objects} ScaledObjects over {args.models} models (2 pods each), "
            "real Prometheus scraping every 1 s, scaler as a process, aio gRPC client from "
            "the proto on the same machine",
            "- command: `python -m bench.scaler --write bench/scaler/RESULTS.md`",
            "",
            "| GetMetrics | calls | p50 ms | p99 ms | max ms |",
            "|---|---|---|---|---|",
            summary("cached, one at a time", hot_serial),
            summary(f"cached, {args.concurrency} concurrent", hot),
            summary("uncached (--cache-ttl 0), one at a time", cold_serial),
            summary(f"uncached, {args.concurrency} concurrent", cold),
            "",
            f"Scaler CPU time per cached GetMetrics (from /proc, independent of the load): "
            f"**{cpu_per_call:.2f} ms**.",
            "",
            f"Polling all {args.objects} objects every second for {elapsed:.0f} s with "
            f"`--cache-ttl {args.interval:g}`: {calls} GetMetrics calls, {sent:.0f} Prometheus "
            f"queries = **{per_model:.2f} queries per model per interval** "
            f"({intervals:.1f} intervals, {args.models} models).",
            "",
            f"Goals: p99 <= 5 ms cached: **{'met' if percentile(hot, 99) <= 5 else 'NOT met'}** "
            f"(concurrent), **{'met' if percentile(hot_serial, 99) <= 5 else 'NOT met'}** "
            f"(one at a time); <= 1 query per model per interval: "
            f"**{'met' if per_model <= 1.0 + 1e-9 else 'NOT met'}**.",
        ]
    finally:
        procs.stop_all()
        exporter.close()
        shutil.rmtree(work, ignore_errors=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        args.write.write_text(text)


if __name__ == "__main__":
    main()
