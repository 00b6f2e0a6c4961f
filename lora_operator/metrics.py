"""The operator's own HTTP endpoint: ``/metrics`` and ``/healthz`` (aiohttp, Kopf's loop).

Metrics (brix.contract): ``brix_lora_adapter_phase`` (1 for the phase each
LoraAdapter is in, 0 for the others) and ``brix_lora_adapter_ready_replicas``,
produced at scrape time from what the reconciles last observed. Only the
active replica (Kopf peering) reconciles, so only it reports adapters.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from brix.contract import LORA_PHASES, metric

PHASE = metric("brix_lora_adapter_phase")
READY = metric("brix_lora_adapter_ready_replicas")


@dataclass(frozen=True, slots=True)
class Report:
    """What the last reconcile of one adapter observed."""

    base_model: str
    phase: str
    ready_replicas: int


class AdapterCollector(Collector):
    """Reads ``reports`` ((namespace, adapter) -> Report) at each scrape."""

    def __init__(self, reports: Mapping[tuple[str, str], Report]) -> None:
        self._reports = reports

    def collect(self) -> Iterator[Metric]:
        phase = GaugeMetricFamily(PHASE.name, PHASE.help, labels=list(PHASE.labels))
        ready = GaugeMetricFamily(READY.name, READY.help, labels=list(READY.labels))
        for (namespace, adapter), report in sorted(self._reports.items()):
            for p in LORA_PHASES:
                phase.add_metric([namespace, adapter, report.base_model, p],
                                 1.0 if p == report.phase else 0.0)
            ready.add_metric([namespace, adapter, report.base_model],
                             float(report.ready_replicas))
        yield phase
        yield ready


def registry_for(reports: Mapping[tuple[str, str], Report]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AdapterCollector(reports))
    return registry


def make_app(registry: CollectorRegistry) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


async def start(app: web.Application, *, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve ``app``; return its runner (to clean up) and the port bound (``port`` may be 0)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    addresses = runner.addresses  # (host, port, ...) of each bound socket
    bound = int(addresses[0][1]) if addresses else port
    return runner, bound
