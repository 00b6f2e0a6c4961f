"""Which Deployments the fallback loop scales, and how: read from their annotations.

Purely computational. A Deployment is a scale target when annotated
``brix.dev/autoscale: "true"``; ``brix.dev/autoscale-target`` (required, per
replica), ``-signal`` (queue, running, kv_cache, slo; default queue), ``-min``
(default 1; 0 allows scaling to zero) and ``-max`` set the rest, and its
``brix.dev/model`` label names the model. Signal ``slo`` takes no target; its
settings are the KEDA trigger's metadata as annotations
(``brix.contract.AUTOSCALE_SLO_ANNOTATIONS``: ``-ttft``, ``-tpot``,
``-attainment``, ``-pod-start-seconds``, ``-initial-capacity``, ``-profile``,
...). A bad value is an ``AnnotationError`` that names the annotation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from brix.contract import (
    AUTOSCALE_ANNOTATION,
    AUTOSCALE_MAX_ANNOTATION,
    AUTOSCALE_MIN_ANNOTATION,
    AUTOSCALE_SIGNAL_ANNOTATION,
    AUTOSCALE_SLO_ANNOTATIONS,
    AUTOSCALE_TARGET_ANNOTATION,
    MODEL_LABEL,
)
from scaler.signals import SIGNALS, MetadataError, Signal, Trigger
from scaler.slo_signal import parse_slo


class AnnotationError(ValueError):
    """An autoscale annotation (or the model label) is missing or invalid."""


@dataclass(frozen=True, slots=True)
class ScaleTarget:
    trigger: Trigger
    min_replicas: int
    max_replicas: int


def wants_autoscaling(annotations: Mapping[str, str]) -> bool:
    return annotations.get(AUTOSCALE_ANNOTATION, "").strip().lower() == "true"


def _int(annotations: Mapping[str, str], key: str, default: int) -> int:
    raw = annotations.get(key, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise AnnotationError(f"{key}: expected a whole number, got {raw!r}") from None
    if value < 0:
        raise AnnotationError(f"{key}: must be >= 0, got {raw!r}")
    return value


def read_target(*, namespace: str, labels: Mapping[str, str], annotations: Mapping[str, str],
                default_max: int) -> ScaleTarget:
    """The scale target of an annotated Deployment, or ``AnnotationError``."""
    model = labels.get(MODEL_LABEL, "").strip()
    if not model:
        raise AnnotationError(f"label {MODEL_LABEL} is missing: it names the model to measure")
    signal = annotations.get(AUTOSCALE_SIGNAL_ANNOTATION, "").strip() or "queue"
    if signal == "slo":
        return _slo_target(namespace, model, annotations, default_max)
    raw_target = annotations.get(AUTOSCALE_TARGET_ANNOTATION, "").strip()
    if not raw_target:
        raise AnnotationError(f"{AUTOSCALE_TARGET_ANNOTATION}: is required (per replica, e.g. "
                              "\"4\")")
    try:
        target = float(raw_target)
    except ValueError:
        raise AnnotationError(
            f"{AUTOSCALE_TARGET_ANNOTATION}: expected a number, got {raw_target!r}") from None
    if not (math.isfinite(target) and target > 0):
        raise AnnotationError(f"{AUTOSCALE_TARGET_ANNOTATION}: must be > 0, got {raw_target!r}")
    if signal not in SIGNALS:
        raise AnnotationError(f"{AUTOSCALE_SIGNAL_ANNOTATION}: expected one of "
                              f"{', '.join(SIGNALS)}, got {signal!r}")
    low = _int(annotations, AUTOSCALE_MIN_ANNOTATION, 1)
    high = _int(annotations, AUTOSCALE_MAX_ANNOTATION, max(default_max, low, 1))
    if high < max(low, 1):
        raise AnnotationError(f"{AUTOSCALE_MAX_ANNOTATION}: must be >= 1 and >= "
                              f"{AUTOSCALE_MIN_ANNOTATION} ({low}), got {high}")
    sig: Signal = signal  # checked against SIGNALS above
    trigger = Trigger(namespace=namespace, model=model, signal=sig, target=target)
    return ScaleTarget(trigger=trigger, min_replicas=low, max_replicas=high)


_ANNOTATION_OF = {key: name for name, key in AUTOSCALE_SLO_ANNOTATIONS.items()} | {
    "minReplicas": AUTOSCALE_MIN_ANNOTATION, "maxReplicas": AUTOSCALE_MAX_ANNOTATION}


def _slo_target(namespace: str, model: str, annotations: Mapping[str, str],
                default_max: int) -> ScaleTarget:
    """Signal slo: the policy from the annotations, read as the KEDA metadata is."""
    low = _int(annotations, AUTOSCALE_MIN_ANNOTATION, 1)
    high = _int(annotations, AUTOSCALE_MAX_ANNOTATION, max(default_max, low, 1))
    metadata = {key: annotations[name] for name, key in AUTOSCALE_SLO_ANNOTATIONS.items()
                if name in annotations}
    metadata |= {"minReplicas": str(low), "maxReplicas": str(high)}
    try:
        policy = parse_slo(metadata)
    except MetadataError as exc:
        name = _ANNOTATION_OF.get(exc.key, exc.key)
        raise AnnotationError(f"{name}: {str(exc).partition(': ')[2]}") from None
    trigger = Trigger(namespace=namespace, model=model, signal="slo", target=1.0, slo=policy)
    return ScaleTarget(trigger=trigger, min_replicas=low, max_replicas=high)
