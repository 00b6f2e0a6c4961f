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
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lab.policies.base import Autoscaler
from lab.policies.fixed import Fixed

__all__ = ["PolicySpec", "Setting", "describe", "names", "parse"]


@dataclass(frozen=True)
class PolicySpec:
    """One policy to run: its name as reported and a factory for a fresh instance."""

    name: str
    make: Callable[[], Autoscaler]


@dataclass(frozen=True)
class Setting:
    """One ``key=value`` a policy accepts: its type, default and meaning."""

    kind: type[int] | type[float] | type[bool]
    default: int | float | bool | None
    help: str
    minimum: float | None = None
    """The smallest value allowed (inclusive), if any."""
    positive: bool = False
    """The value must be > 0."""

    def parse(self, policy: str, key: str, text: str) -> int | float | bool:
        value: int | float | bool
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
        if self.positive and not value > 0:
            raise ValueError(f"{policy}: {key}={text!r} must be > 0")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{policy}: {key}={text!r} must be >= {self.minimum:g}")
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


_POLICIES: dict[str, PolicyInfo] = {
    "fixed": PolicyInfo(
        summary="No autoscaling: a constant replica count.",
        settings={
            "replicas": Setting(int, 1, "the replica count, held from the start", minimum=0),
            "interval": Setting(float, 15.0, "seconds between (no-op) decisions", positive=True),
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
            default = "required" if setting.default is None else f"default {setting.default}"
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
    missing = [k for k, s in info.settings.items() if s.default is None and k not in dict(pairs)]
    if missing:
        raise ValueError(f"{name}: setting {missing[0]!r} is required")
    parsed = [[(key, text, info.settings[key].parse(name, key, text)) for text in texts]
              for key, texts in pairs]
    sweep = any(len(texts) > 1 for _, texts in pairs)
    specs: list[PolicySpec] = []
    for combo in itertools.product(*parsed):
        kwargs = {key: value for key, _, value in combo}
        for check in (_min_max, *info.checks):
            check(name, kwargs)
        label = name + (":" + ";".join(f"{k}={t}" for k, t, _ in combo) if combo else "")
        # Build once now so that bad combinations fail at parse time, not mid-run.
        info.build(**kwargs)
        specs.append(PolicySpec(name=label if sweep else spec.strip(), make=_factory(info, kwargs)))
    return specs
