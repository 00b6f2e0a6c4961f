"""localkube API benchmark: create/list 1,000 objects, watch fan-out, memory.

    python -m bench.localkube [--objects 1000] [--watchers 50] [--events 200]
                              [--memory-objects 10000] [--record bench/localkube/RESULTS.md]

Starts ``python -m localkube --no-node --no-persist`` on a free port and
measures, from one client process on the same machine:

- create: N ConfigMaps, 8 requests in flight (throughput, p50/p99 latency);
- list: the N objects in one request (p50/p99 of 20 lists);
- watch fan-out: W watchers on one namespace; each of E patches is timed from
  just before the request is sent to its arrival at each watcher (p50/p99
  over E x W deliveries; goal p99 <= 10 ms);
- memory: the server's resident set before and after M pod-sized objects.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import os
import platform
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench.machine import cpu_model, cpu_seconds


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    idx = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[idx]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def start_server(state_dir: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "localkube", "--port", "0", "--state-dir", str(state_dir),
         "--no-node", "--no-persist", "--log-level", "WARNING"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        m = re.search(r"listening on (https?://\S+)", line)
        if m:
            return proc, m.group(1)
    raise RuntimeError("localkube did not start")


def client_session(state_dir: Path, **kw: Any) -> aiohttp.ClientSession:
    """A session as the kubeconfig's user (the admin's token, localkube's CA)."""
    cfg = yaml.safe_load((state_dir / "kubeconfig").read_text())
    ca = base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    token = cfg["users"][0]["user"]["token"]
    return aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {token}"},
        connector=aiohttp.TCPConnector(ssl=ssl.create_default_context(cadata=ca)), **kw)


def pod_like(name: str) -> dict[str, Any]:
    """About the size of a real pod object (1-2 KB of JSON)."""
    return {
        "metadata": {"name": name, "labels": {"app": "bench", "brix.dev/model": "tiny",
                                              "pod-template-hash": "abc123"},
                     "annotations": {"note": "x" * 200}},
        "data": {"command": "python -m inference.engine --backend sim --port 8000",
                 "env": json.dumps({f"VAR_{i}": f"value-{i}" for i in range(20)}),
                 "status": "Running " * 20},
    }


async def create_many(session: aiohttp.ClientSession, url: str, ns: str, n: int,
                      prefix: str, *, concurrency: int = 8) -> list[float]:
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            t0 = time.perf_counter()
            async with session.post(f"{url}/api/v1/namespaces/{ns}/configmaps",
                                    json=pod_like(f"{prefix}-{i}")) as r:
                assert r.status == 201, await r.text()
                await r.read()
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp))
        try:
            timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
            async with client_session(Path(tmp), timeout=timeout) as s:
                for ns in ("bench", "watch", "memory"):
                    async with s.post(f"{url}/api/v1/namespaces",
                                      json={"metadata": {"name": ns}}) as r:
                        assert r.status == 201
                # Create.
                t0, c0 = time.perf_counter(), cpu_seconds(proc.pid)
                lat = await create_many(s, url, "bench", args.objects, "obj")
                wall = time.perf_counter() - t0
                results["create"] = {"n": args.objects, "per_s": args.objects / wall,
                                     "p50_ms": percentile(lat, 50) * 1e3,
                                     "p99_ms": percentile(lat, 99) * 1e3,
                                     "server_cpu_us": (cpu_seconds(proc.pid) - c0)
                                     / args.objects * 1e6}
                # List.
                c0 = cpu_seconds(proc.pid)
                lat = []
                for _ in range(20):
                    t0 = time.perf_counter()
                    async with s.get(f"{url}/api/v1/namespaces/bench/configmaps") as r:
                        body = await r.json()
                    lat.append(time.perf_counter() - t0)
                    assert len(body["items"]) == args.objects
                results["list"] = {"n": args.objects, "p50_ms": percentile(lat, 50) * 1e3,
                                   "p99_ms": percentile(lat, 99) * 1e3,
                                   "server_cpu_ms": (cpu_seconds(proc.pid) - c0) / 20 * 1e3}
                c0 = cpu_seconds(proc.pid)
                results["watch"] = await watch_fanout(s, url, args.watchers, args.events)
                results["watch"]["server_cpu_us"] = (cpu_seconds(proc.pid) - c0) / (
                    results["watch"]["deliveries"]) * 1e6
        finally:
            proc.terminate()
            proc.wait(10)
    results["memory"] = await memory(args.memory_objects)
    return results


async def memory(n: int) -> dict[str, Any]:
    """RSS of a fresh server before and after ``n`` objects (one client in flight at a time
    after a warm-up, so that request buffers do not count as objects)."""
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp))
        try:
            async with client_session(Path(tmp)) as s:
                async with s.post(f"{url}/api/v1/namespaces",
                                  json={"metadata": {"name": "memory"}}) as r:
                    assert r.status == 201
                await create_many(s, url, "memory", 50, "warm", concurrency=1)
                before = rss_bytes(proc.pid)
                await create_many(s, url, "memory", n, "mem", concurrency=1)
                after = rss_bytes(proc.pid)
        finally:
            proc.terminate()
            proc.wait(10)
    size = len(json.dumps(pod_like("mem-00000")))
    return {"n": n, "rss_before_mb": before / 2**20, "rss_after_mb": after / 2**20,
            "per_object_kb": (after - before) / n / 1024, "json_kb": size / 1024}


async def watch_fanout(s: aiohttp.ClientSession, url: str, watchers: int,
                       events: int) -> dict[str, Any]:
    """Each change is sent once every watcher has the previous one (no backlog)."""
    base = f"{url}/api/v1/namespaces/watch/configmaps"
    async with s.post(base, json={"metadata": {"name": "target"}, "data": {"n": "0"}}) as r:
        rv = (await r.json())["metadata"]["resourceVersion"]
    sent: dict[int, float] = {}
    arrivals: list[float] = []
    got: dict[int, int] = {}
    all_in = {i: asyncio.Event() for i in range(1, events + 1)}
    number = re.compile(rb'"n":"(\d+)"')

    async def watch(ready: asyncio.Event) -> None:
        async with s.get(base, params={"watch": "1", "resourceVersion": rv}) as r:
            ready.set()
            while True:
                line = await r.content.readline()
                now = time.perf_counter()
                m = number.search(line)
                if m is None:
                    continue
                n = int(m.group(1))
                arrivals.append(now - sent[n])
                got[n] = got.get(n, 0) + 1
                if got[n] == watchers:
                    all_in[n].set()
                if n == events:
                    return

    readies = [asyncio.Event() for _ in range(watchers)]
    tasks = [asyncio.create_task(watch(e)) for e in readies]
    await asyncio.gather(*(e.wait() for e in readies))
    await asyncio.sleep(0.5)
    for i in range(1, events + 1):
        sent[i] = time.perf_counter()
        async with s.patch(f"{base}/target", data=json.dumps({"data": {"n": str(i)}}),
                           headers={"Content-Type": "application/merge-patch+json"}) as r:
            assert r.status == 200
            await r.read()
        await asyncio.wait_for(all_in[i].wait(), 30)
        await asyncio.sleep(0.005)
    await asyncio.gather(*tasks)
    return {"watchers": watchers, "events": events, "deliveries": len(arrivals),
            "p50_ms": percentile(arrivals, 50) * 1e3, "p99_ms": percentile(arrivals, 99) * 1e3,
            "max_ms": max(arrivals) * 1e3, "mean_ms": statistics.fmean(arrivals) * 1e3}


def report(results: dict[str, Any]) -> str:
    c, li, w, m = results["create"], results["list"], results["watch"], results["memory"]
    return "\n".join([
        f"### {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC — nproc "
        f"{len(os.sched_getaffinity(0))}, {cpu_model()}, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f} at the end",
        "",
        "| measure | result |",
        "|---|---|",
        f"| create {c['n']} ConfigMaps (8 in flight) | {c['per_s']:.0f}/s, "
        f"p50 {c['p50_ms']:.1f} ms, p99 {c['p99_ms']:.1f} ms; server CPU "
        f"{c['server_cpu_us']:.0f} us per create |",
        f"| list {li['n']} objects | p50 {li['p50_ms']:.1f} ms, p99 {li['p99_ms']:.1f} ms; "
        f"server CPU {li['server_cpu_ms']:.1f} ms per list |",
        f"| watch fan-out: {w['events']} changes to {w['watchers']} watchers "
        f"({w['deliveries']} deliveries) | p50 {w['p50_ms']:.2f} ms, "
        f"p99 {w['p99_ms']:.2f} ms, max {w['max_ms']:.2f} ms (goal p99 <= 10 ms); "
        f"server CPU {w['server_cpu_us']:.0f} us per delivery |",
        f"| memory for {m['n']} objects of {m['json_kb']:.1f} KiB JSON (fresh server) | "
        f"RSS {m['rss_before_mb']:.0f} -> {m['rss_after_mb']:.0f} MiB "
        f"({m['per_object_kb']:.1f} KiB per object) |",
        "",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.localkube", description=__doc__)
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--watchers", type=int, default=50)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--memory-objects", type=int, default=10_000)
    parser.add_argument("--record", type=Path, help="append the results to this markdown file")
    args = parser.parse_args()
    text = report(asyncio.run(bench(args)))
    print(text)
    if args.record:
        with args.record.open("a", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
