"""End to end through the metric contract: sim engines, their sidecars, Prometheus, the scaler.

Two sim engines of one model, each allowed 2 requests at a time and slow
enough that requests stay in flight, get 5 requests each: 2 run and 3 wait on
each. Prometheus scrapes the two sidecars (labelled with their namespace and
pod, as Kubernetes discovery would); the scaler must answer queue = 6 and
running = 4 for the model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.procs import ProcessGroup
from tests.helpers.prometheus import query, start_prometheus
from tests.helpers.scaler import get_metrics_request, scaled_object_ref, scaler_stub, start_scaler
from tests.helpers.sidecar import start_sidecar
from tests.helpers.sim import slow, start_sim
from tests.helpers.wait import wait_until

MODEL = "sim-scaled"
PER_ENGINE = 5
SEQS = 2




@pytest.fixture
def load() -> Iterator[Callable[[str], None]]:
    """Send PER_ENGINE long completions to an engine in the background."""
    stop = threading.Event()
    clients: list[httpx.Client] = []
    threads: list[threading.Thread] = []

    def send(url: str) -> None:
        def one() -> None:
            http = httpx.Client(timeout=300)
            clients.append(http)
            try:
                http.post(f"{url}/v1/completions", json={
                    "model": MODEL, "prompt": "hello", "max_tokens": 2000, "ignore_eos": True})
            except httpx.HTTPError:
                if not stop.is_set():
                    raise
        for _ in range(PER_ENGINE):
            t = threading.Thread(target=one, daemon=True)
            t.start()
            threads.append(t)

    yield send
    stop.set()
    for http in clients:
        http.close()


def test_values_match_what_the_engines_hold(procs: ProcessGroup, tmp_path: Path,
                                            load: Callable[[str], None]) -> None:
    targets: list[dict[str, Any]] = []
    engines = []
    for i in range(2):
        engine = start_sim(procs, name=MODEL, extra_args=slow(ms_per_token=50, max_num_seqs=SEQS))
        sidecar = start_sidecar(procs, engine_url=engine.url)
        assert sidecar.url is not None
        engines.append(engine)
        targets.append({"targets": [sidecar.url.removeprefix("http://")],
                        "labels": {"namespace": "models", "pod": f"{MODEL}-{i}"}})
    _, prom = start_prometheus(procs, tmp_path / "prom", {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "sidecars", "static_configs": targets}],
    })
    scaler = start_scaler(procs, prometheus_url=prom, extra_args=["--cache-ttl", "0.5"])

    for engine in engines:
        assert engine.url is not None
        load(engine.url)

    def scraped_load() -> bool:
        waiting = query(prom, f'sum(brix_engine_requests_waiting{{model="{MODEL}"}})')
        running = query(prom, f'sum(brix_engine_requests_running{{model="{MODEL}"}})')
        return (bool(waiting) and float(waiting[0]["value"][1]) == 2 * (PER_ENGINE - SEQS)
                and bool(running) and float(running[0]["value"][1]) == 2 * SEQS)
    wait_until(scraped_load, "Prometheus sees the load on both engines")

    with scaler.channel() as channel:
        stub = scaler_stub(channel)
        meta = {"model": MODEL, "target": "2"}
        queue = stub.GetMetrics(get_metrics_request(namespace="models", **meta))
        assert queue.metricValues[0].metricValueFloat == 2 * (PER_ENGINE - SEQS)
        running = stub.GetMetrics(get_metrics_request(namespace="models", signal="running",
                                                      **meta))
        assert running.metricValues[0].metricValueFloat == 2 * SEQS
        assert stub.IsActive(scaled_object_ref(namespace="models", **meta)).result is True
        # Another namespace has no such model: no pods, no series, zero.
        other = stub.GetMetrics(get_metrics_request(namespace="elsewhere", **meta))
        assert other.metricValues[0].metricValueFloat == 0
