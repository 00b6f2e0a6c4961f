"""The ``slo`` signal: its settings, the PromQL that measures its demand, and reading it.

Purely computational, beside ``signals.py``: ``parse_slo`` turns KEDA trigger
metadata (or the loop's annotations, mapped to the same keys) into a
``scaler.slo.SloPolicy``; ``slo_query`` is the one query that measures what
``scaler.slo.decide`` needs; ``read_slo_load`` turns its answer into a
``scaler.slo.Load``. Each part is tagged with the ``brix_part`` label::

    rate      sum(rate(brix_gateway_requests_total{model}[1m]))   arrivals/s (answered)
    prompt    sum(rate(brix_engine_prompt_tokens_total{ns, model}[1m]))
    output    sum(rate(brix_engine_generation_tokens_total{ns, model}[1m]))
    ttft      histogram_quantile(attainment, sum by (le) (rate(..._ttft_seconds_bucket[1m])))
    tpot      the same over brix_engine_time_per_output_token_seconds (requests finished)
    served    sum(rate(brix_engine_time_to_first_token_seconds_count{ns, model}[1m]))
    waiting, pending, running, pods   as in ``signals.model_query``

The demand is the gateway's rate. Where the gateway has no series for the
model while it has pods (the gateway not scraped, or its series lost), the
engines' own count of first tokens stands in (``served``: what the engines
started, so it trails arrivals as the gateway's count does); with neither,
``slo_load`` raises a ``DataError``: absent data is not zero demand. With no
pods at all nothing can have been answered, so an absent rate is 0 there (the
gateway's pending gauge is what brings a model back from zero).

The mean lengths are the token rates over the request rate; the observed TTFT
is the attainment quantile of the engines' histogram over the same minute
(absent, or NaN, while nothing was answered: then nothing is observed), and
the observed TPOT likewise of the requests that finished in it (read whether or
not a TPOT target is set: ``scaler.slo`` only judges it against one).

Metadata keys (``MetadataError`` names the first bad one)::

    ttft             seconds, required, > 0
    tpot             seconds, optional, > 0
    attainment       (0, 1], default 0.99
    podStartSeconds  >= 0, default 60
    initialCapacity  requests/s one replica serves within the SLO, > 0
    profile          a timing profile as JSON (lab calibrate format); one of the two
    promptTokens     the mean prompt tokens the profile prices before any are measured (1024)
    outputTokens     the mean generated tokens likewise (256)
    concurrency      requests one replica runs at once (default: the profile's max_num_seqs)
    minReplicas, maxReplicas, utilization, scaleDownWindow, scaleToZeroCooldown
    scaleDownTolerance  [0, 1), default 0.35: a scale-down removing a smaller share
                     of the replicas holds
    scaleDownWhileRising  "true" or "false" (default): whether a scale-down may come
                     while the demand is above its mean over the scale-down window
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from brix.contract import metric
from scaler.signals import PART_LABEL, DataError, MetadataError, quote
from scaler.slo import Load, ProfileCapacity, Slo, SloError, SloPolicy

__all__ = ["SLO_KEYS", "SloSample", "demand", "parse_slo", "read_slo_sample", "slo_load",
           "slo_query"]

KEY_TTFT: Final = "ttft"
KEY_TPOT: Final = "tpot"
KEY_ATTAINMENT: Final = "attainment"
KEY_POD_START: Final = "podStartSeconds"
KEY_CAPACITY: Final = "initialCapacity"
KEY_PROFILE: Final = "profile"
KEY_CONCURRENCY: Final = "concurrency"
KEY_PROMPT_TOKENS: Final = "promptTokens"
KEY_OUTPUT_TOKENS: Final = "outputTokens"
KEY_MIN: Final = "minReplicas"
KEY_MAX: Final = "maxReplicas"
KEY_UTILIZATION: Final = "utilization"
KEY_SCALE_DOWN_WINDOW: Final = "scaleDownWindow"
KEY_SCALE_DOWN_TOLERANCE: Final = "scaleDownTolerance"
KEY_ZERO_COOLDOWN: Final = "scaleToZeroCooldown"
KEY_DOWN_WHILE_RISING: Final = "scaleDownWhileRising"
SLO_KEYS: Final = (KEY_TTFT, KEY_TPOT, KEY_ATTAINMENT, KEY_POD_START, KEY_CAPACITY, KEY_PROFILE,
                   KEY_PROMPT_TOKENS, KEY_OUTPUT_TOKENS, KEY_CONCURRENCY, KEY_MIN, KEY_MAX,
                   KEY_UTILIZATION, KEY_SCALE_DOWN_WINDOW, KEY_SCALE_DOWN_TOLERANCE,
                   KEY_ZERO_COOLDOWN, KEY_DOWN_WHILE_RISING)

DEFAULT_POD_START: Final = 60.0
RATE_WINDOW: Final = "1m"

_REQUESTS = metric("brix_gateway_requests_total").name
_PROMPT = metric("brix_engine_prompt_tokens_total").name
_OUTPUT = metric("brix_engine_generation_tokens_total").name
_TTFT = metric("brix_engine_time_to_first_token_seconds").name
_TPOT = metric("brix_engine_time_per_output_token_seconds").name
_WAITING = metric("brix_engine_requests_waiting").name
_PENDING = metric("brix_gateway_requests_pending").name
_RUNNING = metric("brix_engine_requests_running").name
_UP = metric("brix_engine_up").name

SLO_PARTS: Final = ("rate", "prompt", "output", "ttft", "tpot", "served", "waiting",
                     "pending", "running", "pods")


def _float(metadata: Mapping[str, str], key: str) -> float | None:
    raw = metadata.get(key, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise MetadataError(key, f"expected a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise MetadataError(key, f"expected a finite number, got {raw!r}")
    return value


def _int(metadata: Mapping[str, str], key: str) -> int | None:
    raw = metadata.get(key, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise MetadataError(key, f"expected a whole number, got {raw!r}") from None


def _bool(metadata: Mapping[str, str], key: str) -> bool | None:
    raw = metadata.get(key, "").strip()
    if not raw:
        return None
    if raw.lower() not in ("true", "false"):
        raise MetadataError(key, f'expected "true" or "false", got {raw!r}')
    return raw.lower() == "true"


def _profile(metadata: Mapping[str, str]) -> ProfileCapacity | None:
    raw = metadata.get(KEY_PROFILE, "").strip()
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise MetadataError(KEY_PROFILE, f"expected a JSON object (the lab's calibrate "
                            f"format): {exc.msg} at {exc.pos}") from None
    if not isinstance(data, dict):
        raise MetadataError(KEY_PROFILE, f"expected a JSON object, got {type(data).__name__}")
    try:
        return ProfileCapacity.from_mapping(data)
    except SloError as exc:
        raise MetadataError(KEY_PROFILE, str(exc)) from None


def parse_slo(metadata: Mapping[str, str]) -> SloPolicy:
    """The SLO policy of a trigger's metadata; ``MetadataError`` names the first bad key.

    A policy needs a capacity to start from: ``initialCapacity`` or ``profile``.
    Without either it could only learn one once the targets were met under
    load, and until then it could not answer: that is refused here, up front.
    """
    ttft = _float(metadata, KEY_TTFT)
    if ttft is None:
        raise MetadataError(KEY_TTFT, "is required for signal slo (seconds to the first "
                            "token, e.g. \"2\")")
    optional: dict[str, Any] = {}
    for key, field in ((KEY_MIN, "min_replicas"), (KEY_MAX, "max_replicas")):
        value = _int(metadata, key)
        if value is not None:
            optional[field] = value
    for key, field in ((KEY_UTILIZATION, "utilization"),
                       (KEY_SCALE_DOWN_WINDOW, "scale_down_window"),
                       (KEY_SCALE_DOWN_TOLERANCE, "down_tolerance"),
                       (KEY_ZERO_COOLDOWN, "zero_cooldown"),
                       (KEY_CONCURRENCY, "concurrency"),
                       (KEY_PROMPT_TOKENS, "prompt_tokens"),
                       (KEY_OUTPUT_TOKENS, "output_tokens")):
        number = _float(metadata, key)
        if number is not None:
            optional[field] = number
    down_while_rising = _bool(metadata, KEY_DOWN_WHILE_RISING)
    if down_while_rising is not None:
        optional["down_while_rising"] = down_while_rising
    capacity = _float(metadata, KEY_CAPACITY)
    profile = _profile(metadata)
    if capacity is None and profile is None:
        raise MetadataError(KEY_CAPACITY, "signal slo needs a capacity to start from: "
                            f"{KEY_CAPACITY} (requests/s per replica) or {KEY_PROFILE}")
    attainment = _float(metadata, KEY_ATTAINMENT)
    pod_start = _float(metadata, KEY_POD_START)
    try:
        slo = Slo(ttft=ttft, tpot=_float(metadata, KEY_TPOT),
                  attainment=0.99 if attainment is None else attainment)
        return SloPolicy(slo=slo, pod_start=DEFAULT_POD_START if pod_start is None else pod_start,
                         capacity=capacity, profile=profile, **optional)
    except SloError as exc:
        raise MetadataError(_metadata_key(exc.key), str(exc).partition(": ")[2]) from None


_FIELD_KEYS: Final = {"min_replicas": KEY_MIN, "max_replicas": KEY_MAX,
                      "minReplicas": KEY_MIN, "maxReplicas": KEY_MAX,
                      "utilization": KEY_UTILIZATION, "scale_down_window": KEY_SCALE_DOWN_WINDOW,
                      "zero_cooldown": KEY_ZERO_COOLDOWN,
                      "down_tolerance": KEY_SCALE_DOWN_TOLERANCE}


def _metadata_key(key: str) -> str:
    return _FIELD_KEYS.get(key, key)


# --- PromQL -----------------------------------------------------------------


def slo_query(namespace: str, model: str, attainment: float) -> str:
    """The one query that measures an ``slo`` trigger's load."""
    selector = f"{{namespace={quote(namespace)},model={quote(model)}}}"
    gateway = f"{{model={quote(model)}}}"
    w = RATE_WINDOW
    parts = (
        ("rate", f"sum(rate({_REQUESTS}{gateway}[{w}]))"),
        ("prompt", f"sum(rate({_PROMPT}{selector}[{w}]))"),
        ("output", f"sum(rate({_OUTPUT}{selector}[{w}]))"),
        ("ttft", f"histogram_quantile({attainment:g}, sum by (le) "
                 f"(rate({_TTFT}_bucket{selector}[{w}])))"),
        ("tpot", f"histogram_quantile({attainment:g}, sum by (le) "
                 f"(rate({_TPOT}_bucket{selector}[{w}])))"),
        ("served", f"sum(rate({_TTFT}_count{selector}[{w}]))"),
        ("waiting", f"sum({_WAITING}{selector})"),
        ("pending", f"sum({_PENDING}{gateway})"),
        ("running", f"sum({_RUNNING}{selector})"),
        ("pods", f"count({_UP}{selector} == 1)"),
    )
    return " or ".join(
        f'label_replace({expr}, "{PART_LABEL}", "{part}", "", "")' for part, expr in parts)


@dataclass(frozen=True, slots=True)
class SloSample:
    """The parts of ``slo_query``'s answer; None where Prometheus had no series (or NaN)."""

    rate: float | None = None
    prompt: float | None = None
    output: float | None = None
    ttft: float | None = None
    tpot: float | None = None
    served: float | None = None
    waiting: float | None = None
    pending: float | None = None
    running: float | None = None
    pods: float | None = None


def read_slo_sample(result: Sequence[Any], *, model: str) -> SloSample:
    """Decode the result vector of ``slo_query``.

    NaN is "nothing observed" for the quantile and the rates (a histogram with
    no new observations, a rate over no requests); anything else not finite
    or negative is a ``DataError``.
    """
    values: dict[str, float | None] = {}
    for item in result:
        part = item.get("metric", {}).get(PART_LABEL) if isinstance(item, Mapping) else None
        if part not in SLO_PARTS:
            raise DataError(f"unexpected series {item!r} for model {model!r}")
        try:
            value = float(item["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            raise DataError(f"model {model!r}: unreadable sample {item!r}") from None
        if math.isnan(value):
            values[part] = None
            continue
        if not math.isfinite(value) or value < 0:
            raise DataError(f"{part} of model {model!r} is {value} in Prometheus")
        values[part] = value
    return SloSample(**values)


def demand(rate: float | None, served: float | None, pods: int) -> float | None:
    """The request rate to plan for: the gateway's ``rate``, else the engines' count
    ``served``; 0 with neither and no pods (nothing can have been answered), None with
    neither while pods serve: absent data is not zero demand."""
    if rate is not None:
        return rate
    if served is not None:
        return served
    return None if pods else 0.0


def slo_load(sample: SloSample, *, model: str, namespace: str) -> Load:
    """The ``Load`` of ``scaler.slo.decide``; ``DataError`` when the model's pods are
    in Prometheus but their queue or running series are not, or no request rate
    (the gateway's, else the engines') is."""
    pods = int(sample.pods or 0)
    if pods and (sample.waiting is None or sample.running is None):
        raise DataError(f"no waiting/running series for model {model!r} in namespace "
                        f"{namespace!r} although it has {pods} pod(s) in Prometheus "
                        "(are its sidecars scraped?)", code="unavailable")
    rate = demand(sample.rate, sample.served, pods)
    if rate is None:
        raise DataError(f"no request rate for model {model!r} in namespace {namespace!r} "
                        f"although it has {pods} pod(s): neither the gateway's {_REQUESTS} "
                        f"nor the engines' {_TTFT}_count has a rate (a rate needs two "
                        "samples within its window: pods scraped once so far have none yet; "
                        "else, is the gateway scraped?); absent data is not zero demand",
                        code="unavailable")
    prompt = output = None
    if rate > 0 and sample.prompt is not None and sample.output is not None:
        prompt, output = sample.prompt / rate, sample.output / rate
    return Load(rate=rate, queue=(sample.waiting or 0.0) + (sample.pending or 0.0),
                running=sample.running or 0.0, replicas=pods, ready=pods,
                ttft=sample.ttft if rate > 0 else None,
                tpot=sample.tpot if rate > 0 else None,
                prompt_tokens=prompt, output_tokens=output)
