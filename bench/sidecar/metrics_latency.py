"""Sidecar ``/metrics`` latency while its engine (the sim) is under load.

``python -m bench.sidecar.metrics_latency [--concurrency 200] [--scrapes 600]``

Starts a sim engine, a sidecar next to it, and a separate load process holding
``concurrency`` streaming completions; then scrapes the sidecar's /metrics
``scrapes`` times, ``interval`` apart, from this process, and reports p50/p90/p99
and max of the scrape latency (goal: p99 <= 20 ms), plus the engine's queue seen
in those scrapes (to show that the load was real). After each sidecar scrape it
also times the engine's own /metrics: the baseline the sidecar cannot beat, since
it reads the engine at scrape time. ``--record`` appends the result
to bench/sidecar/RESULTS.md with the machine and the date.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.machine import cpu_model
from tests.helpers.procs import ProcessGroup
from tests.helpers.sidecar import start_sidecar
from tests.helpers.sim import slow, start_sim

RESULTS = Path(__file__).with_name("RESULTS.md")
MODEL = "bench-model"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


def gauge(text: str, name: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                return float(s.value)
    return float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--max-num-seqs", type=int, default=128)
    p.add_argument("--ms-per-token", type=float, default=20.0)
    p.add_argument("--scrapes", type=int, default=600)
    p.add_argument("--interval", type=float, default=0.05, help="seconds between scrapes")
    p.add_argument("--record", action="store_true", help="append to RESULTS.md")
    a = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        procs = ProcessGroup(Path(tmp) / "logs")
        try:
            engine = start_sim(procs, name=MODEL, extra_args=slow(
                ms_per_token=a.ms_per_token, max_num_seqs=a.max_num_seqs))
            assert engine.url is not None
            sidecar = start_sidecar(procs, engine_url=engine.url)
            duration = a.scrapes * (a.interval + 0.01) + 30
            load = procs.start(
                ["-m", "bench.sidecar.load", "--url", engine.url, "--model", MODEL,
                 "--concurrency", str(a.concurrency), "--duration", str(duration)],
                name="load", ready="load started")
            latencies: list[float] = []
            engine_latencies: list[float] = []
            waiting: list[float] = []
            running: list[float] = []
            with httpx.Client(timeout=10) as client:
                url = f"{sidecar.url}/metrics"
                deadline = time.monotonic() + 60  # until the engine is full
                while gauge(client.get(url).text, "brix_engine_requests_waiting") <= 0:
                    if time.monotonic() > deadline:
                        raise SystemExit("the engine never queued requests: no load")
                    time.sleep(0.1)
                for _ in range(a.scrapes):
                    t0 = time.perf_counter()
                    r = client.get(url)
                    latencies.append((time.perf_counter() - t0) * 1000)
                    r.raise_for_status()
                    t0 = time.perf_counter()  # the baseline: the engine's own /metrics
                    client.get(f"{engine.url}/metrics").raise_for_status()
                    engine_latencies.append((time.perf_counter() - t0) * 1000)
                    waiting.append(gauge(r.text, "brix_engine_requests_waiting"))
                    running.append(gauge(r.text, "brix_engine_requests_running"))
                    time.sleep(a.interval)
            load.stop()
            load_line = next((ln for ln in load.output().splitlines()
                              if ln.startswith("load done")), "load stopped")
        finally:
            procs.stop_all()

    p50, p90, p99 = (percentile(latencies, q) for q in (50, 90, 99))
    e50, e99 = (percentile(engine_latencies, q) for q in (50, 99))
    load_avg = os.getloadavg()[0]
    result = (
        f"| {datetime.now(UTC):%Y-%m-%d %H:%M} UTC | {os.cpu_count()} x {cpu_model()} | "
        f"{a.concurrency} streams, max_num_seqs {a.max_num_seqs}, "
        f"{a.ms_per_token:g} ms/token | {a.scrapes} | {p50:.1f} | {p90:.1f} | {p99:.1f} | "
        f"{max(latencies):.1f} | {e50:.1f} / {e99:.1f} | {statistics.mean(running):.0f} / "
        f"{statistics.mean(waiting):.0f} | {load_avg:.1f} | {'yes' if p99 <= 20 else 'no'} |"
    )
    print(f"/metrics latency ms: p50 {p50:.1f}  p90 {p90:.1f}  p99 {p99:.1f}  "
          f"max {max(latencies):.1f}; engine's own /metrics p50 {e50:.1f} p99 {e99:.1f}  "
          f"(load average {load_avg:.1f}; engine running/waiting mean "
          f"{statistics.mean(running):.0f}/{statistics.mean(waiting):.0f}; {load_line})")
    if a.record:
        lines = RESULTS.read_text().splitlines()
        # After the table's last row (the table comes first; notes follow it).
        last = max(i for i, line in enumerate(lines) if line.startswith("| 20"))
        lines.insert(last + 1, result)
        RESULTS.write_text("\n".join(lines) + "\n")
        print(f"recorded in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
