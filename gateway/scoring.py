"""Routing profiles made of weighted scorers and filters: the pure decision.

A profile first filters the candidates (a filter that would leave none is
skipped), then gives each one the weighted sum of its scorers' scores, each
in [0, 1], higher is better. The best sum wins; candidates within 1e-9 of it
tie, and ties go to the fewest requests in flight, then at random. Nothing
here does I/O or keeps state: what a scorer needs comes in as ``Signals``.

Scorers (load scorers score ``1 - value / max value`` over the candidates,
so the least loaded gets 1 and the most loaded 0; all equal: all 1):

- ``in-flight``: the requests this gateway has sent to the pod and not yet
  seen finish (its own count: always fresh, and no sidecar polled);
- ``queue``: the engine's waiting requests (its sidecar's; this gateway's
  in-flight count where the sidecar's is not known);
- ``running``: requests running in the engine, never less than this
  gateway's in-flight count (which is fresher than a poll);
- ``kv-cache``: ``1 - `` the engine's KV-cache usage ratio; a pod whose usage
  is unknown (no sample, or a NaN one) scores a neutral 0.5, neither empty
  nor full;
- ``prefix``: the share of the request's prompt chunks that the pod was
  recently sent in a row from the start (``gateway.prefix_index``);
- ``lora``: 1 when the request's adapter was routed to the pod within the
  last few seconds (so it is likely active in its batch), else 0;
- ``prefill``: a load scorer of the prompt the pod must prefill before this
  request's first token: what the requests already sent there have not yet
  prefilled (``Candidate.prefill``) plus this request's own prompt less the
  prefix the pod holds (``Signals.uncached``). It is the queue a prompt joins
  in the engine measured in work rather than in requests, with the cache
  counted, as NVIDIA Dynamo's KV router weighs prefill blocks: a short prompt
  is not sent behind a pod's long prefill, and a long prompt goes where its
  prefix is cached unless that pod's backlog costs more than the cache saves.
- ``fleet-prefill``: the ``prefill`` scorer's cost, plus a charge for the
  cache hit a pod would give up, once every pod has a backlog: the least
  backlog of any pod times the share of this prompt the pod would prefill
  beyond the least any pod would (``Signals.uncached`` against the fewest, over
  the prompt's size). While some pod has nothing left to prefill the charge is
  0 and it picks as ``prefill`` does. Once every pod is behind, work a lost hit
  adds is capacity the fleet no longer has, and every request queued behind it
  waits for it; the charge grows with that queue. The lab measured it against
  ``prefill`` past the fleet's capacity (bench/routing/RESULTS.md).

Filters:

- ``load``: drop pods whose in-flight count is past ``factor`` times the
  mean in-flight count plus ``slack`` (the new request counted in the mean);
- ``queue``: drop pods with more than ``max`` waiting requests;
- ``kv-cache``: drop pods whose KV-cache usage is above ``max`` (unknown: kept).

The built-in ``least-prefill`` profile is the ``prefill`` scorer alone; the
built-in ``fleet-prefill`` profile (the gateway's default) is the
``fleet-prefill`` scorer alone. The built-in ``prefix-cache`` profile is prefix 2 +
in-flight 1 behind the load filter (factor 2, slack 4): a pod holding the
whole prompt beats an idle one, but a pod that shares only a prompt's first
chunk or two (a common system prompt) does not beat a less loaded one; ties
and misses go to the least loaded pod. It needs no sidecar. The prefix
scorer alone (what ``prefix-cache`` was before) piled requests onto the pods
that held a shared first chunk while others idled (bench/routing/RESULTS.md).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from gateway.picker import Candidate

SCORERS: Final[tuple[str, ...]] = (
    "fleet-prefill", "in-flight", "kv-cache", "lora", "prefill", "prefix", "queue", "running")
FILTERS: Final[Mapping[str, tuple[str, ...]]] = {
    "kv-cache": ("max",), "load": ("factor", "slack"), "queue": ("max",),
}
SIDECAR_SCORERS: Final = frozenset({"queue", "running", "kv-cache"})
"""Scorers that read what the sidecars report (the gateway polls them while in use)."""
_EPS = 1e-9
_KV_UNKNOWN: Final = 0.5
"""The kv-cache scorer's score for a pod whose usage is not known: neutral."""


def _kv(value: float | None) -> float | None:
    """A usable KV-cache usage sample, clamped to [0, 1]; None when unknown (None, NaN)."""
    if value is None or math.isnan(value):
        return None
    return min(1.0, max(0.0, value))


@dataclass(frozen=True, slots=True)
class Filter:
    kind: str
    """One of ``FILTERS``."""
    params: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class Profile:
    """A named routing strategy: weighted scorers behind optional filters."""

    name: str
    weights: Mapping[str, float]
    """Scorer name -> weight (>= 0); at least one."""
    filters: tuple[Filter, ...] = ()

    @property
    def uses_sidecars(self) -> bool:
        return any(s in SIDECAR_SCORERS for s in self.weights) or any(
            f.kind in {"queue", "kv-cache"} for f in self.filters)

    @property
    def uses_prefix(self) -> bool:
        """Whether it needs the prefix index's matches: the prefix scorer reads them, and
        the prefill scorers take what a pod holds off the prompt it must prefill."""
        return any(s in self.weights for s in ("prefix", "prefill", "fleet-prefill"))


@dataclass(slots=True)  # not frozen: one per candidate per request, and frozen inits cost
class Signals:
    """What the caller knows of one candidate beyond its load."""

    prefix_chunks: int = 0
    """Leading chunks of the request's prompt this pod was recently sent."""
    kv_cache: float | None = None
    """KV-cache usage ratio from the pod's sidecar (None or NaN: not known)."""
    lora_active: bool = False
    """The request's adapter was routed here moments ago."""
    uncached: int = 0
    """The request's own prompt this pod would have to prefill: its size less the
    prefix the pod holds (the same unit as ``Candidate.prefill``)."""


@dataclass(frozen=True, slots=True)
class Scored:
    """A candidate's outcome: kept by the filters or not, and its score."""

    kept: bool
    score: float
    parts: Mapping[str, float] = field(default_factory=dict)


PREFIX_CACHE: Final = Profile(
    name="prefix-cache", weights={"prefix": 2.0, "in-flight": 1.0},
    filters=(Filter("load", {"factor": 2.0, "slack": 4.0}),),
)
"""A built-in profile (see the module's docstring)."""

LEAST_PREFILL: Final = Profile(name="least-prefill", weights={"prefill": 1.0})
"""A built-in profile: the ``prefill`` scorer alone, no filter. Where no pod has a
prompt in prefill and none holds the request's prefix, every pod ties and the tie goes
to the fewest in flight: least-request."""

FLEET_PREFILL: Final = Profile(name="fleet-prefill", weights={"fleet-prefill": 1.0})
"""The built-in profile and the gateway's default routing: the ``fleet-prefill`` scorer
alone, no filter. It picks as ``least-prefill`` while some pod has no prompt left to
prefill (so as least-request while nothing is in prefill and nothing cached), and keeps
prompts where their prefix is once every pod has a backlog."""

BUILT_IN: Final[Mapping[str, Profile]] = {
    p.name: p for p in (PREFIX_CACHE, LEAST_PREFILL, FLEET_PREFILL)}
"""The profiles that exist without a routing config file."""


def uncached(size: int, matched_chunks: int, chunk: int) -> int:
    """What a pod must prefill of a prompt of ``size`` when it holds the first
    ``matched_chunks`` chunks of ``chunk`` each (``Signals.uncached``; characters at the
    gateway, tokens in the lab)."""
    return max(0, size - matched_chunks * chunk)


def _prefill_costs(cands: Sequence[Candidate], sig: Sequence[Signals]) -> list[float]:
    """The ``prefill`` scorer's cost per pod: its backlog and this prompt's uncached part."""
    return [float(c.prefill + s.uncached) for c, s in zip(cands, sig, strict=True)]


def _fleet_prefill_costs(cands: Sequence[Candidate], sig: Sequence[Signals],
                         prompt: int) -> list[float]:
    """The ``fleet-prefill`` scorer's cost per pod: the ``prefill`` cost plus the least
    backlog of any pod times the share of the ``prompt`` the pod would prefill beyond
    the least any pod would (0 while some pod has no backlog, or the size is unknown)."""
    costs = _prefill_costs(cands, sig)
    floor = min(c.prefill for c in cands)
    if floor <= 0 or prompt <= 0:
        return costs
    least = min(s.uncached for s in sig)
    per_unit = floor / prompt
    return [cost + per_unit * (s.uncached - least) for cost, s in zip(costs, sig, strict=True)]


def _load_score(values: Sequence[float]) -> list[float]:
    top = max(values)
    if top <= 0:
        return [1.0] * len(values)
    return [1.0 - v / top for v in values]


def _passing(f: Filter, cands: Sequence[Candidate], sig: Sequence[Signals],
             among: Sequence[int]) -> list[int]:
    if f.kind == "load":
        mean = (sum(c.in_flight for c in cands) + 1) / len(cands)  # the new request counted
        bound = f.params.get("factor", 1.5) * mean + f.params.get("slack", 0.0)
        return [i for i in among if cands[i].in_flight < bound]
    if f.kind == "queue":
        top = f.params["max"]
        return [i for i in among if (cands[i].waiting or 0) <= top]
    if f.kind == "kv-cache":
        top = f.params["max"]
        return [i for i in among if (kv := _kv(sig[i].kv_cache)) is None or kv <= top]
    raise ValueError(f"unknown filter {f.kind!r}")


def _kept(profile: Profile, cands: Sequence[Candidate], sig: Sequence[Signals]) -> list[int]:
    kept: list[int] = list(range(len(cands)))
    for f in profile.filters:
        narrowed = _passing(f, cands, sig, kept)
        if narrowed:
            kept = narrowed
    return kept


def _part(name: str, cands: Sequence[Candidate], sig: Sequence[Signals],
          prefix_total: int, prompt: int) -> list[float]:
    """One scorer's scores, one per candidate, each in [0, 1]."""
    if name == "prefix":
        if not prefix_total:
            return [0.0] * len(cands)
        return [min(1.0, s.prefix_chunks / prefix_total) for s in sig]
    if name == "prefill":
        return _load_score(_prefill_costs(cands, sig))
    if name == "fleet-prefill":
        return _load_score(_fleet_prefill_costs(cands, sig, prompt))
    if name == "in-flight":
        return _load_score([float(c.in_flight) for c in cands])
    if name == "queue":
        return _load_score([float(c.in_flight if c.waiting is None else c.waiting)
                            for c in cands])
    if name == "running":
        return _load_score([float(max(c.running or 0, c.in_flight)) for c in cands])
    if name == "kv-cache":
        return [_KV_UNKNOWN if (kv := _kv(s.kv_cache)) is None else 1.0 - kv for s in sig]
    if name == "lora":
        return [1.0 if s.lora_active else 0.0 for s in sig]
    raise ValueError(f"unknown scorer {name!r}")


def score(
    profile: Profile, candidates: Sequence[Candidate], signals: Sequence[Signals],
    *, prefix_total: int, prompt: int = 0,
) -> list[Scored]:
    """Each candidate's filter outcome, weighted score and scorer parts (to explain a pick).

    ``prompt``: the request's prompt size, in the unit of ``Signals.uncached`` (the
    ``fleet-prefill`` scorer's charge needs it; 0, not known: no charge)."""
    if len(signals) != len(candidates):
        raise ValueError("one Signals per candidate")
    parts = {name: _part(name, candidates, signals, prefix_total, prompt)
             for name in profile.weights}
    kept = set(_kept(profile, candidates, signals))
    return [
        Scored(kept=i in kept,
               score=sum(w * parts[name][i] for name, w in profile.weights.items()),
               parts={name: parts[name][i] for name in profile.weights})
        for i in range(len(candidates))
    ]


def pick_scored(
    profile: Profile, candidates: Sequence[Candidate], signals: Sequence[Signals],
    *, prefix_total: int, rng: random.Random, prompt: int = 0,
) -> int:
    """The index in ``candidates`` that ``profile`` sends the request to.

    The same outcome as the best of ``score`` (``prompt`` as there), computed
    without its objects (this runs once per request).
    """
    n = len(candidates)
    if n == 0:
        raise ValueError("no candidates to pick from")
    if len(signals) != n:
        raise ValueError("one Signals per candidate")
    if n == 1:
        return 0
    totals = [0.0] * n
    for name, weight in profile.weights.items():
        if weight:
            for i, v in enumerate(_part(name, candidates, signals, prefix_total, prompt)):
                totals[i] += weight * v
    kept = _kept(profile, candidates, signals) if profile.filters else range(n)
    best = max(totals[i] for i in kept)
    top = [i for i in kept if totals[i] >= best - _EPS]
    if len(top) == 1:
        return top[0]
    least = min(candidates[i].in_flight for i in top)
    ties = [i for i in top if candidates[i].in_flight == least]
    return ties[0] if len(ties) == 1 else ties[rng.randrange(len(ties))]
