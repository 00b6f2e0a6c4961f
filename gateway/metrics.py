"""The gateway's metrics (``brix_gateway_*`` of brix.contract), in their own registry.

With ``--workers N`` (N > 1) every worker writes its values to files in
``$PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, which the
supervisor turns on for its workers), and whichever worker answers a scrape
reads them all: the same names and labels as one process, summed over the
workers (counters and histograms also keep what a restarted worker counted).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from brix.contract import metric

# Proxy latency is small next to generation time: buckets from 1 ms to 10 min.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0, 60.0, 120.0, 300.0, 600.0)

UNKNOWN_MODEL = ""
"""The ``model`` label of requests that name no model we know (keeps the label set bounded)."""


class GatewayMetrics:
    """The four series families of the contract, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        requests = metric("brix_gateway_requests_total")
        duration = metric("brix_gateway_request_duration_seconds")
        ttfb = metric("brix_gateway_time_to_first_byte_seconds")
        pending = metric("brix_gateway_requests_pending")
        # prometheus_client adds _total itself.
        self.requests = Counter(requests.name.removesuffix("_total"), requests.help,
                                list(requests.labels), registry=self.registry)
        self.duration = Histogram(duration.name, duration.help, list(duration.labels),
                                  buckets=_BUCKETS, registry=self.registry)
        self.ttfb = Histogram(ttfb.name, ttfb.help, list(ttfb.labels), buckets=_BUCKETS,
                              registry=self.registry)
        # livesum: across workers, the sum over the live ones (one process: ignored).
        self.pending = Gauge(pending.name, pending.help, list(pending.labels),
                             registry=self.registry, multiprocess_mode="livesum")

        # Children by label values, so the request path skips labels()'s lock and checks.
        self._requests: dict[tuple[str, int], Counter] = {}
        self._duration: dict[str, Histogram] = {}
        self._ttfb: dict[str, Histogram] = {}

    def exposition(self) -> bytes:
        """The Prometheus text of ``/metrics``: this registry, or every worker's values."""
        path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not path:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    def answered(self, model: str, code: int, seconds: float) -> None:
        counter = self._requests.get((model, code))
        if counter is None:
            counter = self._requests[(model, code)] = self.requests.labels(model, str(code))
        counter.inc()
        duration = self._duration.get(model)
        if duration is None:
            duration = self._duration[model] = self.duration.labels(model)
        duration.observe(seconds)

    def first_byte(self, model: str, seconds: float) -> None:
        ttfb = self._ttfb.get(model)
        if ttfb is None:
            ttfb = self._ttfb[model] = self.ttfb.labels(model)
        ttfb.observe(seconds)
