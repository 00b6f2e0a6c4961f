"""From the engine's Prometheus exposition to brix's metric families. Purely computational.

vLLM (and the sim, which copies it) names its series ``vllm:*`` and labels them
``model_name`` and ``engine`` (one per data-parallel engine). brix exports stable,
engine-independent names (``brix.contract.METRICS``) with one label, ``model``:
series of several engines are added up (the KV-cache ratio is averaged), and
histograms keep the engine's buckets.

An engine family that is absent gives no brix family (never a made-up zero).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, cast

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from brix.contract import metric

Aggregate = Literal["sum", "mean"]

# How client_python writes an `le` value ("0.5", "+Inf"); it is untyped there.
_go_float = cast(Callable[[float], str], floatToGoString)

# (brix name, engine sample name, how several engines' series combine)
GAUGES: tuple[tuple[str, str, Aggregate], ...] = (
    ("brix_engine_requests_waiting", "vllm:num_requests_waiting", "sum"),
    ("brix_engine_requests_running", "vllm:num_requests_running", "sum"),
    # vLLM's "perc" is a fraction already: 1.0 means full.
    ("brix_engine_kv_cache_usage_ratio", "vllm:kv_cache_usage_perc", "mean"),
)
COUNTERS: tuple[tuple[str, str], ...] = (
    ("brix_engine_prompt_tokens_total", "vllm:prompt_tokens_total"),
    ("brix_engine_generation_tokens_total", "vllm:generation_tokens_total"),
    # In tokens, counted when a request is scheduled (vLLM and the sim alike).
    ("brix_engine_prefix_cache_queries_total", "vllm:prefix_cache_queries_total"),
    ("brix_engine_prefix_cache_hits_total", "vllm:prefix_cache_hits_total"),
)
HISTOGRAMS: tuple[tuple[str, str], ...] = (
    ("brix_engine_time_to_first_token_seconds", "vllm:time_to_first_token_seconds"),
    ("brix_engine_e2e_request_latency_seconds", "vllm:e2e_request_latency_seconds"),
    # vLLM's per-request mean (vllm:time_per_output_token_seconds, per step, is gone).
    ("brix_engine_time_per_output_token_seconds", "vllm:request_time_per_output_token_seconds"),
)

# Only these sample names are kept from the engine's exposition.
_WANTED: frozenset[str] = frozenset(
    [g[1] for g in GAUGES] + [c[1] for c in COUNTERS]
    + [f"{h[1]}{suffix}" for h in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")]
)


@dataclass(frozen=True, slots=True)
class Sample:
    labels: Mapping[str, str]
    value: float


Samples = Mapping[str, list[Sample]]


_WANTED_FAMILIES: frozenset[str] = frozenset(
    [g[1] for g in GAUGES] + [c[1] for c in COUNTERS]
    + [c[1].removesuffix("_total") for c in COUNTERS] + [h[1] for h in HISTOGRAMS]
)


def _sample_name(line: str) -> str:
    end = len(line)
    for stop in ("{", " "):
        at = line.find(stop)
        if 0 <= at < end:
            end = at
    return line[:end]


def relevant_lines(text: str) -> str:
    """The lines of ``text`` about the families the mapping uses (samples, HELP, TYPE).

    vLLM's /metrics runs to a thousand lines and more (every histogram of every
    engine); cutting it down before the parser keeps a scrape within milliseconds.
    """
    kept: list[str] = []
    for line in text.splitlines():
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE") and parts[2] in _WANTED_FAMILIES:
                kept.append(line)
        elif _sample_name(line) in _WANTED:
            kept.append(line)
    kept.append("")
    return "\n".join(kept)


def parse_exposition(text: str) -> dict[str, list[Sample]]:
    """The samples of the names the mapping uses, by sample name.

    Only those lines are parsed (``relevant_lines``), with client_python's parser;
    ValueError when one of them is not Prometheus' text format.
    """
    out: dict[str, list[Sample]] = defaultdict(list)
    try:
        for family in text_string_to_metric_families(relevant_lines(text)):
            for s in family.samples:
                if s.name in _WANTED:
                    out[s.name].append(Sample(labels=dict(s.labels), value=float(s.value)))
    except (ValueError, TypeError, IndexError) as exc:
        raise ValueError(f"the engine's /metrics is not Prometheus text: {exc}") from exc
    return dict(out)


def _family_help(name: str) -> str:
    return metric(name).help


def _gauge(name: str, value: float, model: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, _family_help(name), labels=["model"])
    family.add_metric([model], value)
    return family


def _combine(values: list[float], how: Aggregate) -> float:
    total = math.fsum(values)
    return total / len(values) if how == "mean" else total


def _histogram(name: str, engine_name: str, samples: Samples, model: str) -> Metric | None:
    buckets: dict[float, float] = defaultdict(float)
    for s in samples.get(f"{engine_name}_bucket", []):
        le = s.labels.get("le")
        if le is None:
            continue
        try:
            buckets[float(le)] += s.value
        except ValueError:
            continue
    sums = samples.get(f"{engine_name}_sum", [])
    if not buckets or math.inf not in buckets:
        return None
    family = HistogramMetricFamily(name, _family_help(name), labels=["model"])
    family.add_metric(
        [model],
        buckets=[(_go_float(le), count) for le, count in sorted(buckets.items())],
        sum_value=math.fsum(s.value for s in sums) if sums else None,
    )
    # client_python writes _count from the +Inf bucket, which equals the engine's
    # own _count (both come from the same observations).
    return family


def engine_families(
    samples: Samples, *, model: str, adapters_loaded: int | None,
) -> list[Metric]:
    """brix's families for an engine that answered: ``brix_engine_up`` 1 and the mapping.

    ``adapters_loaded`` is the count of adapters in the engine's /v1/models (None when
    that could not be read: then ``brix_lora_adapters_loaded`` is absent).
    """
    out: list[Metric] = [_gauge("brix_engine_up", 1.0, model)]
    for name, engine_name, how in GAUGES:
        values = [s.value for s in samples.get(engine_name, [])]
        if values:
            out.append(_gauge(name, _combine(values, how), model))
    for name, engine_name in COUNTERS:
        values = [s.value for s in samples.get(engine_name, [])]
        if values:
            family = CounterMetricFamily(name, _family_help(name), labels=["model"])
            family.add_metric([model], math.fsum(values))
            out.append(family)
    for name, engine_name in HISTOGRAMS:
        hist = _histogram(name, engine_name, samples, model)
        if hist is not None:
            out.append(hist)
    if adapters_loaded is not None:
        out.append(_gauge("brix_lora_adapters_loaded", float(adapters_loaded), model))
    return out


def engine_down_families(*, model: str) -> list[Metric]:
    """brix's families for an engine that does not answer: ``brix_engine_up`` 0, nothing
    else (no stale values)."""
    return [_gauge("brix_engine_up", 0.0, model)]


def mapped_names() -> Iterable[str]:
    """Every brix family name this module can produce (the tests check it against the
    contract)."""
    yield "brix_engine_up"
    yield from (g[0] for g in GAUGES)
    yield from (c[0] for c in COUNTERS)
    yield from (h[0] for h in HISTOGRAMS)
    yield "brix_lora_adapters_loaded"
