"""Scaling signals: trigger metadata, the PromQL that measures them, and reading the answers.

Purely computational: this module builds query strings and interprets decoded
query results; ``scaler.prometheus`` runs the queries.

One query per model measures every signal at once, so however many
ScaledObjects and signals point at a model, it costs one query per cache
interval. Each part is tagged with a ``brix_part`` label::

    waiting   sum(brix_engine_requests_waiting{namespace, model})
    pending   sum(brix_gateway_requests_pending{model})   (the gateway runs in its
              own namespace and routes by model name across namespaces, so its
              series carry the gateway's namespace: match the model alone)
    running   sum(brix_engine_requests_running{namespace, model})
    kv_cache  avg(brix_engine_kv_cache_usage_ratio{namespace, model})
    pods      count(brix_engine_up{namespace, model})

Signals: ``queue`` = waiting + pending (a total), ``running`` (a total),
``kv_cache`` (the mean ratio over the model's pods; use KEDA's
``metricType: Value`` for it), ``slo`` (the desired replica count of
``scaler.slo``, measured by ``scaler.slo_signal``; activity is the queue's).
A missing part while the model has pods is an error; with no pods every
engine part is 0 (the gateway's pending count still counts: it is what brings
a model back from zero).

Errors (all ``SignalError``; ``code`` says how the servicer reports them)::

    SignalError
    ├── MetadataError      bad trigger metadata            (invalid)
    ├── PrometheusError    unreachable, timeout, refusal   (unavailable / invalid / internal)
    └── DataError          NaN, no series with pods, not exactly one sample (unavailable / internal)
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urlparse

from brix.contract import metric
from scaler.slo import SloPolicy

Signal = Literal["queue", "running", "kv_cache", "slo"]
SIGNALS: Final[tuple[Signal, ...]] = ("queue", "running", "kv_cache", "slo")
ErrorCode = Literal["invalid", "unavailable", "internal"]
ErrorKind = Literal["metadata", "prometheus", "data"]

PART_LABEL: Final = "brix_part"
PARTS: Final = ("waiting", "pending", "running", "kv_cache", "pods")

_WAITING = metric("brix_engine_requests_waiting").name
_PENDING = metric("brix_gateway_requests_pending").name
_RUNNING = metric("brix_engine_requests_running").name
_KV_CACHE = metric("brix_engine_kv_cache_usage_ratio").name
_UP = metric("brix_engine_up").name

# Metadata keys this scaler reads; every other key KEDA passes is ignored.
KEY_MODEL: Final = "model"
KEY_QUERY: Final = "query"
KEY_SIGNAL: Final = "signal"
KEY_TARGET: Final = "target"
KEY_ACTIVATION: Final = "activationTarget"
KEY_PROMETHEUS: Final = "prometheusAddress"


class SignalError(Exception):
    """A signal could not be measured; ``code`` classifies it for gRPC."""

    code: ErrorCode = "internal"
    kind: ErrorKind = "data"
    """What ``brix_scaler_errors_total`` counts it as."""

    def __init__(self, message: str, *, code: ErrorCode | None = None,
                 kind: ErrorKind | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        if kind is not None:
            self.kind = kind


class MetadataError(SignalError):
    """Trigger metadata is invalid; the message names the key."""

    code: ErrorCode = "invalid"
    kind: ErrorKind = "metadata"

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class PrometheusError(SignalError):
    """Prometheus could not be asked, or refused the query."""

    code: ErrorCode = "unavailable"
    kind: ErrorKind = "prometheus"


class DataError(SignalError):
    """Prometheus answered, but not with a usable number."""


# --- Trigger metadata -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceKey:
    """What one Prometheus query measures: a model in a namespace, or a raw query."""

    address: str | None
    namespace: str
    model: str | None
    query: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class Trigger:
    """A ScaledObject trigger (or an annotated Deployment), validated."""

    namespace: str
    model: str | None = None
    query: str | None = None
    signal: Signal = "queue"
    target: float = 1.0
    activation_target: float = 0.0
    prometheus_address: str | None = None
    slo: SloPolicy | None = None
    """The SLO policy of signal ``slo`` (``scaler.slo_signal.parse_slo``)."""

    @property
    def source(self) -> SourceKey:
        if self.query is not None:
            return SourceKey(self.prometheus_address, "", None, self.query)
        return SourceKey(self.prometheus_address, self.namespace, self.model, None)

    @property
    def metric_name(self) -> str:
        """Stable and unique per model and signal (or per raw query)."""
        if self.query is not None:
            return f"brix-query-{_digest(self.query, 12)}"
        assert self.model is not None
        slug = re.sub(r"[^a-z0-9]+", "-", self.model.lower()).strip("-")[:40] or "model"
        name = f"brix-{self.signal.replace('_', '-')}-{slug}"
        return name if slug == self.model else f"{name}-{_digest(self.model, 8)}"


def _show(value: float) -> str:
    """A number as Prometheus writes it (NaN, +Inf)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:g}"


def _digest(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _number(metadata: Mapping[str, str], key: str, default: float | None, *,
            minimum: float, strict: bool) -> float:
    raw = metadata.get(key, "").strip()
    if not raw:
        if default is None:
            raise MetadataError(key, "is required (a number per replica, e.g. \"5\")")
        return default
    try:
        value = float(raw)
    except ValueError:
        raise MetadataError(key, f"expected a number, got {raw!r}") from None
    if not math.isfinite(value) or value < minimum or (strict and value == minimum):
        relation = ">" if strict else ">="
        raise MetadataError(key, f"must be a number {relation} {minimum:g}, got {raw!r}")
    return value


def parse_trigger(metadata: Mapping[str, str], namespace: str) -> Trigger:
    """Validate KEDA trigger metadata; ``MetadataError`` names the first bad key.

    Keys other than the ones this scaler reads (``scalerAddress``, KEDA's TLS
    options, anything else) are accepted and ignored.
    """
    model = metadata.get(KEY_MODEL, "").strip() or None
    query = metadata.get(KEY_QUERY, "").strip() or None
    if model is None and query is None:
        raise MetadataError(KEY_MODEL, "is required (or give `query` with raw PromQL)")
    if model is not None and query is not None:
        raise MetadataError(KEY_QUERY, "give either `model` or `query`, not both")
    signal_raw = metadata.get(KEY_SIGNAL, "").strip() or "queue"
    if signal_raw not in SIGNALS:
        raise MetadataError(KEY_SIGNAL, f"expected one of {', '.join(SIGNALS)}, got {signal_raw!r}")
    slo = None
    if signal_raw == "slo":
        if model is None:
            raise MetadataError(KEY_MODEL, "signal slo needs `model` (not a raw `query`)")
        # Imported here: slo_signal builds on this module's errors and PromQL helpers.
        from scaler.slo_signal import parse_slo
        slo = parse_slo(metadata)
    # The slo signal answers the desired replica count itself: its target is 1.
    target = _number(metadata, KEY_TARGET, 1.0 if slo else None, minimum=0, strict=True)
    activation = _number(metadata, KEY_ACTIVATION, 0.0, minimum=0, strict=False)
    address = metadata.get(KEY_PROMETHEUS, "").strip() or None
    if address is not None:
        parsed = urlparse(address)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise MetadataError(KEY_PROMETHEUS,
                                f"expected an http(s):// URL, got {address!r}")
        address = address.rstrip("/")
    return Trigger(
        namespace=namespace or "default", model=model, query=query,
        signal=signal_raw,  # checked against SIGNALS above
        target=target, activation_target=activation, prometheus_address=address, slo=slo,
    )


# --- PromQL -----------------------------------------------------------------


def quote(value: str) -> str:
    """A PromQL double-quoted string literal for ``value``."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def model_query(namespace: str, model: str) -> str:
    """The one query that measures every signal of ``model`` in ``namespace``."""
    selector = f"{{namespace={quote(namespace)},model={quote(model)}}}"
    gateway_selector = f"{{model={quote(model)}}}"
    parts = (
        ("waiting", f"sum({_WAITING}{selector})"),
        ("pending", f"sum({_PENDING}{gateway_selector})"),
        ("running", f"sum({_RUNNING}{selector})"),
        ("kv_cache", f"avg({_KV_CACHE}{selector})"),
        ("pods", f"count({_UP}{selector})"),
    )
    return " or ".join(
        f'label_replace({expr}, "{PART_LABEL}", "{part}", "", "")' for part, expr in parts
    )


# --- Reading answers --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelSample:
    """The parts of one model's query; None where Prometheus had no series."""

    waiting: float | None = None
    pending: float | None = None
    running: float | None = None
    kv_cache: float | None = None
    pods: float | None = None

    @property
    def has_pods(self) -> bool:
        return bool(self.pods)


def _sample_value(item: Any, what: str) -> float:
    try:
        raw = item["value"][1] if isinstance(item, Mapping) else item[1]
        return float(raw)
    except (KeyError, IndexError, TypeError, ValueError):
        raise DataError(f"{what}: unreadable sample {item!r} in Prometheus' answer") from None


def read_model_sample(result: Sequence[Any], *, model: str, namespace: str) -> ModelSample:
    """Decode the result vector of ``model_query``."""
    values: dict[str, float] = {}
    for item in result:
        part = item.get("metric", {}).get(PART_LABEL) if isinstance(item, Mapping) else None
        if part not in PARTS:
            raise DataError(f"unexpected series {item!r} for model {model!r}")
        values[part] = _sample_value(item, f"model {model!r} in {namespace!r}")
    return ModelSample(**values)


def signal_value(sample: ModelSample, signal: Signal, *, model: str, namespace: str) -> float:
    """The signal's value; ``DataError`` for NaN or a part missing while pods exist."""
    where = f"model {model!r} in namespace {namespace!r}"

    def part(name: str, value: float | None, *, default: float = 0.0) -> float:
        if value is None:
            if sample.has_pods:
                raise DataError(
                    f"no {name} series for {where} although it has {sample.pods:g} pod(s) "
                    "in Prometheus (are its sidecars scraped?)", code="unavailable")
            return default
        if not math.isfinite(value):
            raise DataError(f"{name} of {where} is {_show(value)} in Prometheus")
        return value

    if signal in ("queue", "slo"):  # slo: its activity is the queue's
        pending = sample.pending
        if pending is not None and not math.isfinite(pending):
            raise DataError(f"{_PENDING} of {where} is {_show(pending)} in Prometheus")
        return part(_WAITING, sample.waiting) + (pending or 0.0)
    if signal == "running":
        return part(_RUNNING, sample.running)
    return part(_KV_CACHE, sample.kv_cache)


def queue_and_running(sample: ModelSample, *, model: str, namespace: str) -> tuple[float, float]:
    """(queue, running): the inputs of ``policy.is_active``."""
    queue = signal_value(sample, "queue", model=model, namespace=namespace)
    running = signal_value(sample, "running", model=model, namespace=namespace)
    return queue, running


def read_query_value(result: Any, *, query: str) -> float:
    """The single number a raw query must return (a one-sample vector or a scalar)."""
    if (isinstance(result, Sequence) and len(result) == 2
            and not isinstance(result[0], Mapping)):
        value = _sample_value(result, f"query {query!r}")  # a scalar: [time, "value"]
    elif isinstance(result, Sequence):
        if len(result) != 1:
            raise DataError(
                f"query {query!r} must return exactly one sample, it returned {len(result)}"
                + (" (aggregate it, e.g. with sum())" if len(result) > 1 else ""),
                code="unavailable" if not result else "internal")
        value = _sample_value(result[0], f"query {query!r}")
    else:
        raise DataError(f"query {query!r}: unexpected answer {result!r}")
    if not math.isfinite(value) or value < 0:
        raise DataError(f"query {query!r} returned {_show(value)}; "
                        "a scaling signal is a number >= 0")
    return value
