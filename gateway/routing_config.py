"""The routing config file (``--routing-config``, YAML): profiles and prefix-index bounds.

Example (``gateway/routing.example.yaml`` is a full one)::

    prefix:
      chunk-chars: 256        # characters per hashed chunk of the prompt
      max-chunks: 256         # chunks hashed per request at most
      chunks-per-pod: 8192    # LRU bound of the index, per pod
    lora-window: 5            # seconds an adapter counts as active on a pod after a request
    profiles:
      prefix-cache:
        scorers: {prefix: 2, in-flight: 1}
        filters: {load: {factor: 2, slack: 4}}
      balanced:
        scorers: {prefix: 2, running: 1, kv-cache: 0.5}

The built-in ``fleet-prefill`` (the default), ``least-prefill`` and ``prefix-cache``
profiles exist without a file; a file may redefine them. A profile may not take a name
of the picker's strategies (``least-request`` ...), which stay as they are. Every mistake is a
``RoutingConfigError`` whose message starts with the key at fault, e.g.
``profiles.fast.scorers.speed: unknown scorer``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway.picker import STRATEGIES
from gateway.scoring import BUILT_IN, FILTERS, SCORERS, Filter, Profile


class RoutingConfigError(ValueError):
    """The routing config cannot be used; the message names the key."""


@dataclass(frozen=True, slots=True)
class PrefixBounds:
    chunk_chars: int = 256
    """Characters per chunk: a few lines of a system prompt; smaller costs more hashes."""
    max_chunks: int = 256
    """Chunks hashed per request at most (64 K characters at the default chunk)."""
    chunks_per_pod: int = 8192
    """LRU bound per pod: 2 M characters of recent prompts, about 1.4 MB of memory."""


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    profiles: Mapping[str, Profile] = field(
        default_factory=lambda: dict(BUILT_IN))
    prefix: PrefixBounds = PrefixBounds()
    lora_window: float = 5.0
    """Seconds an adapter counts as active on a pod after a request for it went there."""


def _number(value: Any, key: str, *, integer: bool = False, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RoutingConfigError(f"{key}: must be a number, not {value!r}")
    if integer and not isinstance(value, int):
        raise RoutingConfigError(f"{key}: must be a whole number, not {value!r}")
    if value < 0 or (positive and value == 0):
        raise RoutingConfigError(f"{key}: must be {'> 0' if positive else '>= 0'}, not {value}")
    return value


def _mapping(value: Any, key: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RoutingConfigError(f"{key}: must be a mapping")
    return value


def _unknown(data: Mapping[str, Any], known: tuple[str, ...], key: str) -> None:
    for k in data:
        if k not in known:
            where = f"{key}.{k}" if key else str(k)
            raise RoutingConfigError(f"{where}: unknown key (known: {', '.join(known)})")


def _profile(name: str, data: Any) -> Profile:
    key = f"profiles.{name}"
    if name in STRATEGIES:
        raise RoutingConfigError(f"{key}: a built-in strategy has this name")
    body = _mapping(data, key)
    _unknown(body, ("scorers", "filters"), key)
    scorers = _mapping(body.get("scorers"), f"{key}.scorers")
    if not scorers:
        raise RoutingConfigError(f"{key}.scorers: a profile needs at least one scorer")
    weights: dict[str, float] = {}
    for scorer, weight in scorers.items():
        skey = f"{key}.scorers.{scorer}"
        if scorer not in SCORERS:
            raise RoutingConfigError(f"{skey}: unknown scorer (known: {', '.join(SCORERS)})")
        weights[scorer] = float(_number(weight, skey))
    filters = []
    for kind, params in _mapping(body.get("filters"), f"{key}.filters").items():
        fkey = f"{key}.filters.{kind}"
        if kind not in FILTERS:
            raise RoutingConfigError(f"{fkey}: unknown filter (known: {', '.join(FILTERS)})")
        given = _mapping(params, fkey)
        _unknown(given, FILTERS[kind], fkey)
        if kind != "load" and "max" not in given:
            raise RoutingConfigError(f"{fkey}.max: required")
        filters.append(Filter(kind, {k: float(_number(v, f"{fkey}.{k}"))
                                     for k, v in given.items()}))
    return Profile(name=name, weights=weights, filters=tuple(filters))


def parse_routing_config(data: Any) -> RoutingConfig:
    """A ``RoutingConfig`` from the file's parsed YAML."""
    top = _mapping(data, "(top level)")
    _unknown(top, ("prefix", "lora-window", "profiles"), "")
    bounds = _mapping(top.get("prefix"), "prefix")
    _unknown(bounds, ("chunk-chars", "max-chunks", "chunks-per-pod"), "prefix")
    default = PrefixBounds()
    prefix = PrefixBounds(**{
        attr: int(_number(bounds.get(k, getattr(default, attr)), f"prefix.{k}",
                          integer=True, positive=True))
        for k, attr in (("chunk-chars", "chunk_chars"), ("max-chunks", "max_chunks"),
                        ("chunks-per-pod", "chunks_per_pod"))
    })
    window = float(_number(top.get("lora-window", 5.0), "lora-window"))
    profiles = dict(BUILT_IN)
    for name, body in _mapping(top.get("profiles"), "profiles").items():
        profiles[str(name)] = _profile(str(name), body)
    return RoutingConfig(profiles=profiles, prefix=prefix, lora_window=window)


def load_routing_config(path: str | Path | None) -> RoutingConfig:
    """The config in ``path`` (None: the built-in one). OSError if it cannot be read."""
    if path is None:
        return RoutingConfig()
    text = Path(path).read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RoutingConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from exc
    return parse_routing_config(data)
