"""Policy specs as the lab's ``--policies`` takes them, and the settings each policy accepts.

A spec is ``NAME`` or ``NAME:key=value;key=value``. A value may list several
settings separated by commas (``keda-hpa:threshold=1,2,5,10``): that is a
sweep, one policy per value (per combination when several keys sweep), each
named as if it had been given alone (``keda-hpa:threshold=1``). A spec
without a sweep keeps its name exactly as given.

Unknown policies, unknown keys and values that do not parse or are out of
range raise ``ValueError`` with a one-line message naming them.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.policies.base import Autoscaler, MetricsView
from lab.policies.brix import BrixLoop, brix_keda
from lab.policies.fixed import Fixed
from lab.policies.hpa import DEFAULT_SCALE_DOWN, DEFAULT_SCALE_UP, ScalingRules
from lab.policies.keda import KedaHpa
from lab.policies.kpa import KPA_METRICS, Kpa
from lab.policies.slo import BrixSlo
from scaler.slo import ProfileCapacity, Slo, SloPolicy

__all__ = ["PolicySpec", "Setting", "describe", "names", "parse"]


@dataclass(frozen=True)
class PolicySpec:
    """One policy to run: its name as reported and a factory for a fresh instance."""

    name: str
    make: Callable[[], Autoscaler]


@dataclass(frozen=True)
class Setting:
    """One ``key=value`` a policy accepts: its type, default and meaning."""

    kind: type[int] | type[float] | type[bool] | type[str]
    default: int | float | bool | str | None
    help: str
    minimum: float | None = None
    """The smallest value allowed (inclusive), if any."""
    above: float | None = None
    """The value must be greater than this (exclusive), if set."""
    maximum: float | None = None
    """The largest value allowed (inclusive), if any."""
    below: float | None = None
    """The value must be less than this (exclusive), if set."""
    required: bool = False
    """The spec must give it (``default`` is then unused)."""
    choices: tuple[str, ...] = ()
    """For a ``str`` setting: the values allowed."""

    def parse(self, policy: str, key: str, text: str) -> int | float | bool | str:
        value: int | float
        if self.kind is str:
            if self.choices and text not in self.choices:
                allowed = ", ".join(self.choices)
                raise ValueError(f"{policy}: {key}={text!r} is not one of {allowed}")
            return text
        if self.kind is bool:
            lowered = text.strip().lower()
            if lowered in ("true", "yes", "on", "1"):
                return True
            if lowered in ("false", "no", "off", "0"):
                return False
            raise ValueError(f"{policy}: {key}={text!r} is not a boolean (true/false)")
        try:
            value = int(text) if self.kind is int else float(text)
        except ValueError:
            what = "an integer" if self.kind is int else "a number"
            raise ValueError(f"{policy}: {key}={text!r} is not {what}") from None
        if not math.isfinite(value):
            raise ValueError(f"{policy}: {key}={text!r} is not a finite number")
        if self.above is not None and not value > self.above:
            raise ValueError(f"{policy}: {key}={text!r} must be > {self.above:g}")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{policy}: {key}={text!r} must be >= {self.minimum:g}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"{policy}: {key}={text!r} must be <= {self.maximum:g}")
        if self.below is not None and not value < self.below:
            raise ValueError(f"{policy}: {key}={text!r} must be < {self.below:g}")
        return value


@dataclass(frozen=True)
class PolicyInfo:
    """A policy the registry knows: what it is, its settings, and how to build it."""

    summary: str
    settings: Mapping[str, Setting]
    build: Callable[..., Autoscaler]
    checks: tuple[Callable[[str, Mapping[str, Any]], None], ...] = field(default=())


def _min_max(policy: str, values: Mapping[str, Any]) -> None:
    lo, hi = values.get("min"), values.get("max")
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"{policy}: min={lo} is above max={hi}")


WAITING = "vllm:num_requests_waiting"


def _keda_hpa(*, threshold: float, activation: float, polling: float, cooldown: float,
              stabilization: float, tolerance: float, sync: float, ignore_null: bool,
              fresh: bool, min: int, max: int) -> KedaHpa:
    """The vLLM production-stack chart's ScaledObject: ``sum(vllm:num_requests_waiting)``."""

    def waiting(metrics: MetricsView) -> float | None:
        return metrics.sum(WAITING)

    down = ScalingRules(stabilization, DEFAULT_SCALE_DOWN.policies, DEFAULT_SCALE_DOWN.select)
    return KedaHpa(query=waiting, threshold=threshold, activation_threshold=activation,
                   polling_interval=polling, cooldown_period=cooldown, min_replicas=min,
                   max_replicas=max, ignore_null_values=ignore_null, sync_period=sync,
                   tolerance=tolerance, scale_up=DEFAULT_SCALE_UP, scale_down=down,
                   active_at_start=not fresh)


def _brix_loop(*, target: float, activation: float, interval: float, stabilization: float,
               cooldown: float, period: float, panic: float, min: int,
               max: int) -> BrixLoop:
    return BrixLoop(target=target, min_replicas=min, max_replicas=max,
                    activation_target=activation, interval=interval,
                    stabilization_window=stabilization, scale_to_zero_cooldown=cooldown,
                    scale_period=period, panic_window=panic)


def _brix_keda(*, target: float, activation: float, polling: float, cooldown: float,
               stabilization: float, tolerance: float, fresh: bool, min: int,
               max: int) -> KedaHpa:
    return brix_keda(target=target, activation_target=activation, polling_interval=polling,
                     cooldown_period=cooldown, stabilization_window=stabilization,
                     min_replicas=min, max_replicas=max, tolerance=tolerance,
                     active_at_start=not fresh)


def _kpa(*, target: float, metric: str, stable: float, panic_window: float, panic: float,
         up_rate: float, down_rate: float, delay: float, activation_scale: int, zero: bool,
         interval: float, min: int, max: int) -> Kpa:
    return Kpa(target=target, metric=metric, stable_window=stable, panic_window=panic_window,
               panic_threshold=panic, max_scale_up_rate=up_rate, max_scale_down_rate=down_rate,
               scale_down_delay=delay, activation_scale=activation_scale, scale_to_zero=zero,
               interval=interval, min_replicas=min, max_replicas=max)


PROFILES = Path(__file__).resolve().parents[1] / "profiles"
"""Where the lab keeps its bundled timing profiles (``NAME.json``)."""


def _profile(text: str) -> ProfileCapacity:
    """A timing profile by bundled name or JSON path; ValueError naming it otherwise."""
    path = Path(text) if text.endswith(".json") or "/" in text else PROFILES / f"{text}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not JSON"
        raise ValueError(f"profile {text!r} ({path}): {why}") from None
    if not isinstance(data, dict):
        raise ValueError(f"profile {text!r} ({path}): not a JSON object")
    return ProfileCapacity.from_mapping(data)


def _brix_slo(*, ttft: float, tpot: float | None, attainment: float, pod_start: float,
              capacity: float | None, profile: str | None, concurrency: float | None,
              utilization: float, window: float, cooldown: float, trend: float,
              growth: float, gain: float, interval: float, min: int, max: int,
              tolerance: float, hold_rising: bool) -> BrixSlo:
    slo = Slo(ttft=ttft, tpot=tpot, attainment=attainment)
    return BrixSlo(SloPolicy(slo=slo, pod_start=pod_start, capacity=capacity,
                             profile=None if profile is None else _profile(profile),
                             concurrency=concurrency, min_replicas=min, max_replicas=max,
                             utilization=utilization, scale_down_window=window,
                             zero_cooldown=cooldown, trend_window=trend, max_growth=growth,
                             capacity_gain=gain,
                             down_tolerance=tolerance, down_while_rising=not hold_rising),
                   interval=interval)


_MAX = Setting(int, 100, "most replicas (KEDA's maxReplicaCount default: no policy is capped "
               "by its bound unless asked)", minimum=1)
_TOLERANCE = Setting(float, 0.1, "the HPA's tolerance around the target ratio", minimum=0)
_FRESH = Setting(bool, False, "the ScaledObject is created at the run's start: a target not "
                 "yet seen active goes to zero at the first poll (default: the run starts "
                 "mid-operation, the target last active at 0; min=0 only)")

_POLICIES: dict[str, PolicyInfo] = {
    "keda-hpa": PolicyInfo(
        summary="KEDA's Prometheus scaler + the HPA as the vLLM production-stack chart sets it "
                "up: sum(vllm:num_requests_waiting), AverageValue per replica.",
        settings={
            "threshold": Setting(float, 5.0, "the trigger's threshold: waiting requests per "
                                 "replica", above=0),
            "activation": Setting(float, 0.0, "activationThreshold: active above this",
                                  minimum=0),
            "polling": Setting(float, 15.0, "pollingInterval, seconds (activation checks)",
                               above=0),
            "cooldown": Setting(float, 360.0, "cooldownPeriod, seconds inactive before zero "
                                "(min=0 only)", minimum=0),
            "stabilization": Setting(float, 300.0, "the HPA's scale-down stabilisation window, "
                                     "seconds", minimum=0),
            "tolerance": _TOLERANCE,
            "sync": Setting(float, 15.0, "the HPA's sync period, seconds", above=0),
            "ignore_null": Setting(bool, True, "ignoreNullValues: an empty answer reads as 0 "
                                   "(false: holds)"),
            "fresh": _FRESH,
            "min": Setting(int, 1, "minReplicaCount (0: scale to zero after the cooldown; no "
                           "engine series at zero, so nothing activates it again)", minimum=0),
            "max": _MAX,
        },
        build=_keda_hpa,
    ),
    "brix-loop": PolicyInfo(
        summary="brix's fallback loop: scaler.policy.decide on the queue signal (engine "
                "waiting + gateway pending) with the loop's defaults.",
        settings={
            "target": Setting(float, 4.0, "queue per replica (sim-model's manifest)",
                              above=0),
            "activation": Setting(float, 0.0, "active while the queue is above this (or "
                                  "requests run)", minimum=0),
            "interval": Setting(float, 15.0, "--loop-interval, seconds", above=0),
            "stabilization": Setting(float, 300.0, "--stabilization-window, seconds",
                                     minimum=0),
            "cooldown": Setting(float, 300.0, "--scale-to-zero-cooldown, seconds (min=0)",
                                minimum=0),
            "period": Setting(float, 15.0, "--scale-period: rate-limit period, seconds",
                              above=0),
            "panic": Setting(float, 0.0, "--panic-window, seconds (0: off)", minimum=0),
            "min": Setting(int, 1, "brix.dev/autoscale-min (sim-model: 1)", minimum=0),
            "max": _MAX,
        },
        build=_brix_loop,
    ),
    "brix-keda": PolicyInfo(
        summary="brix's scaler signal (queue) through KEDA + the HPA, as sim-model's "
                "ScaledObject in k8s/overlays/keda configures it.",
        settings={
            "target": Setting(float, 4.0, "queue per replica", above=0),
            "activation": Setting(float, 0.0, "activationTarget", minimum=0),
            "polling": Setting(float, 5.0, "pollingInterval, seconds", above=0),
            "cooldown": Setting(float, 300.0, "cooldownPeriod, seconds", minimum=0),
            "stabilization": Setting(float, 300.0, "scaleDown.stabilizationWindowSeconds",
                                     minimum=0),
            "tolerance": _TOLERANCE,
            "fresh": _FRESH,
            "min": Setting(int, 0, "minReplicaCount (sim-model: 0)", minimum=0),
            "max": _MAX,
        },
        build=_brix_keda,
    ),
    "kpa": PolicyInfo(
        summary="Knative's KPA with AIBrix's defaults: stable 60 s / panic 6 s windows, "
                "panic at 200 %, rates x2, scale-down delay 300 s.",
        settings={
            "target": Setting(float, 0.5, "the metric per pod to keep (AIBrix's example: "
                              "0.5 of the KV cache)", above=0),
            "metric": Setting(str, "kv_cache", "what it scales on, summed over pods",
                              choices=tuple(KPA_METRICS)),
            "stable": Setting(float, 60.0, "stable window, seconds", above=0),
            "panic_window": Setting(float, 6.0, "panic window, seconds", above=0),
            "panic": Setting(float, 2.0, "panic threshold, a multiple of the target (1..10)",
                             minimum=1, maximum=10),
            "up_rate": Setting(float, 2.0, "max scale-up rate per decision", above=1),
            "down_rate": Setting(float, 2.0, "max scale-down rate per decision",
                                 above=1),
            "delay": Setting(float, 300.0, "scale-down delay (cooldown window), seconds",
                             minimum=0),
            "activation_scale": Setting(int, 1, "fewest pods once active", minimum=1),
            "zero": Setting(bool, False, "scale to zero (needs min=0)"),
            "interval": Setting(float, 15.0, "seconds between decisions", above=0),
            "min": Setting(int, 1, "minReplicas", minimum=0),
            "max": _MAX,
        },
        build=_kpa,
    ),
    "brix-slo": PolicyInfo(
        summary="brix's SLO policy (scaler.slo): replicas for the demand expected a pod start "
                "ahead and the backlog to drain within the TTFT target, at a capacity learnt "
                "online.",
        settings={
            "ttft": Setting(float, 2.0, "TTFT target, seconds", above=0),
            "tpot": Setting(float, None, "TPOT target, seconds: bounds the profile's batch; "
                            "an observed miss lowers the capacity while a queue persisted",
                            above=0),
            "attainment": Setting(float, 0.99, "share of requests within the targets, (0, 1]",
                                  above=0, maximum=1),
            "pod_start": Setting(float, 60.0, "seconds from scale-up to serving (the "
                                 "lab's --cold-start)", minimum=0),
            "capacity": Setting(float, None, "requests/s one replica serves within the SLO, "
                                "from the profile (unset: learnt once targets are met "
                                "under load; holds until then); overrides profile", above=0),
            "profile": Setting(str, None, "timing profile, a bundled name (gpu-8b) or a JSON "
                               "path: the capacity follows the measured lengths"),
            "concurrency": Setting(float, None, "requests one replica runs at once (unset: "
                                   "the profile's max_num_seqs)", above=0),
            "utilization": Setting(float, 0.8, "share of the capacity planned for, (0, 1]",
                                   above=0, maximum=1),
            "window": Setting(float, 300.0, "seconds demand must stay lower before a "
                              "scale-down", minimum=0),
            "cooldown": Setting(float, 300.0, "seconds idle before zero (min=0)", minimum=0),
            "trend": Setting(float, 300.0, "seconds of rates the forecast fits", above=0),
            "growth": Setting(float, 2.0, "the forecast's bound, a multiple of the rate now",
                              minimum=1),
            "gain": Setting(float, 0.2, "how far one contradicting observation moves the "
                            "capacity, (0, 1]", above=0, maximum=1),
            "interval": Setting(float, 15.0, "seconds between decisions", above=0),
            "min": Setting(int, 1, "fewest replicas (0: to zero after the cooldown)",
                           minimum=0),
            "max": _MAX,
            "tolerance": Setting(float, 0.35, "a scale-down removing less than this share "
                                 "of the replicas holds, [0, 1) (scaleDownTolerance)",
                                 minimum=0, below=1),
            "hold_rising": Setting(bool, True, "no scale-down while the demand is above its "
                                   "mean over the window (scaleDownWhileRising=false)"),
        },
        build=_brix_slo,
    ),
    "fixed": PolicyInfo(
        summary="No autoscaling: a constant replica count.",
        settings={
            "replicas": Setting(int, 1, "the replica count, held from the start", minimum=0),
            "interval": Setting(float, 15.0, "seconds between (no-op) decisions", above=0),
        },
        build=Fixed,
    ),
}


def names() -> list[str]:
    """The policies the registry knows, sorted."""
    return sorted(_POLICIES)


def describe() -> str:
    """Every policy and its settings, for ``--help``."""
    lines = ["Policies (NAME or NAME:key=value;key=value; key=a,b,c sweeps):"]
    for name in names():
        info = _POLICIES[name]
        lines.append(f"  {name}: {info.summary}")
        for key, setting in info.settings.items():
            default = ("required" if setting.required
                       else "optional" if setting.default is None
                       else f"default {setting.default}")
            lines.append(f"      {key} ({setting.kind.__name__}, {default}): {setting.help}")
    return "\n".join(lines)


def _split(spec: str) -> tuple[str, list[tuple[str, list[str]]]]:
    name, sep, rest = spec.strip().partition(":")
    name = name.strip()
    if not name:
        raise ValueError(f"policy spec {spec!r} has no policy name")
    pairs: list[tuple[str, list[str]]] = []
    if not sep:
        return name, pairs
    if not rest.strip():
        raise ValueError(f"policy spec {spec!r} has a ':' but no settings")
    seen: set[str] = set()
    for item in rest.split(";"):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ValueError(f"{name}: setting {item.strip()!r} is not key=value")
        if key in seen:
            raise ValueError(f"{name}: setting {key!r} is given twice")
        seen.add(key)
        values = [v.strip() for v in value.split(",")]
        if any(not v for v in values):
            raise ValueError(f"{name}: {key}={value.strip()!r} has an empty value")
        pairs.append((key, values))
    return name, pairs


def _factory(info: PolicyInfo, kwargs: dict[str, Any]) -> Callable[[], Autoscaler]:
    def make() -> Autoscaler:
        return info.build(**kwargs)

    return make


def parse(spec: str) -> list[PolicySpec]:
    """The policies one ``--policies`` argument stands for (several for a sweep)."""
    name, pairs = _split(spec)
    info = _POLICIES.get(name)
    if info is None:
        raise ValueError(f"unknown policy {name!r} (known: {', '.join(names())})")
    for key, _ in pairs:
        if key not in info.settings:
            known = ", ".join(info.settings) or "none"
            raise ValueError(f"{name}: unknown setting {key!r} (known: {known})")
    missing = [k for k, s in info.settings.items() if s.required and k not in dict(pairs)]
    if missing:
        raise ValueError(f"{name}: setting {missing[0]!r} is required")
    parsed = [[(key, text, info.settings[key].parse(name, key, text)) for text in texts]
              for key, texts in pairs]
    sweep = any(len(texts) > 1 for _, texts in pairs)
    specs: list[PolicySpec] = []
    for combo in itertools.product(*parsed):
        kwargs = {key: s.default for key, s in info.settings.items() if not s.required}
        kwargs.update({key: value for key, _, value in combo})
        for check in (_min_max, *info.checks):
            check(name, kwargs)
        label = name + (":" + ";".join(f"{k}={t}" for k, t, _ in combo) if combo else "")
        # Build once now so that bad combinations fail at parse time, not mid-run.
        try:
            info.build(**kwargs)
        except ValueError as exc:
            raise ValueError(f"{label}: {exc}") from None
        specs.append(PolicySpec(name=label if sweep else spec.strip(), make=_factory(info, kwargs)))
    return specs
