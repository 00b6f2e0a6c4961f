"""The scaler's own metrics (``brix_scaler_*`` of ``brix.contract``), in an injected registry."""

from __future__ import annotations

from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics

from brix.contract import metric

# Only the contract's series: no extra ``*_created`` gauges next to the counters.
disable_created_metrics()  # type: ignore[no-untyped-call]

ErrorKind = Literal["prometheus", "kubernetes", "metadata", "annotation", "data"]
ERROR_KINDS: tuple[ErrorKind, ...] = ("prometheus", "kubernetes", "metadata", "annotation", "data")


def _gauge(name: str, registry: CollectorRegistry) -> Gauge:
    m = metric(name)
    return Gauge(m.name, m.help, list(m.labels), registry=registry)


def _counter(name: str, registry: CollectorRegistry) -> Counter:
    m = metric(name)
    return Counter(m.name, m.help, list(m.labels), registry=registry)


class ScalerMetrics:
    """The four families of the contract; names, help and labels come from it."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.desired_replicas = _gauge("brix_scaler_desired_replicas", self.registry)
        self.metric_value = _gauge("brix_scaler_metric_value", self.registry)
        self.decisions = _counter("brix_scaler_decisions_total", self.registry)
        self.errors = _counter("brix_scaler_errors_total", self.registry)
        for kind in ERROR_KINDS:  # bounded label set, created up front
            self.errors.labels(kind=kind)

    def error(self, kind: ErrorKind) -> None:
        self.errors.labels(kind=kind).inc()

    def decision(self, *, namespace: str, deployment: str, signal: str, value: float,
                 desired: int, direction: str) -> None:
        self.desired_replicas.labels(namespace=namespace, deployment=deployment).set(desired)
        self.metric_value.labels(namespace=namespace, deployment=deployment,
                                 signal=signal).set(value)
        self.decisions.labels(namespace=namespace, deployment=deployment,
                              direction=direction).inc()

    def forget(self, *, namespace: str, deployment: str) -> None:
        """Drop the series of a Deployment the loop no longer scales."""
        for family in (self.desired_replicas, self.metric_value, self.decisions):
            for labels in list(family._metrics):  # prometheus_client keeps children here
                values = dict(zip(family._labelnames, labels, strict=True))
                if values.get("namespace") == namespace and values.get("deployment") == deployment:
                    family.remove(*labels)
