"""The scaling policy: how many replicas a model should have. Purely computational.

Nothing here talks to Kubernetes, gRPC or Prometheus: the fallback loop and the
KEDA servicer gather the inputs, call these functions, and apply the result.

``decide`` follows the HorizontalPodAutoscaler's algorithm so that the loop
behaves like the HPA that KEDA would drive:

1. The raw recommendation. For a *total* signal (summed over the model's
   pods) ``ceil(value / target)``; for an *average* signal (a mean ratio)
   ``ceil(current * value / target)``. When the per-replica value is within
   ``tolerance`` of the target the current count is kept.
   A *queue* signal (requests waiting for a free slot) is a total with one
   difference. ``ceil(queue / target)`` alone falls to the minimum as soon as
   new replicas absorb the queue, although the work that filled it is still
   running, so a steady load would scale up, down and up again with every
   stabilisation window. While a queue exists the replicas are full, so
   ``running / current`` then is what one replica runs at most: the highest
   such value seen is kept as the per-replica capacity, and once it is known
   the recommendation is the replicas the running work needs plus those the
   queue asks for, ``ceil(running / capacity) + ceil(queue / target)``.
   Until a queue was first seen it is the total's.
2. Panic mode (optional, ``panic_window > 0``): at ``panic_threshold`` times the
   target it scales up at once (no rate limit) and, for ``panic_window``
   seconds after, never scales down.
3. Stabilisation: scaling up uses the newest recommendation; scaling down uses
   the highest recommendation of the last ``stabilization_window`` seconds.
4. Rate limits, relative to the replicas at the start of each period: up to
   ``max(ceil(start * (1 + up_percent/100)), start + up_pods)`` per
   ``scale_up_period``; down to ``min(ceil(start * (1 - down_percent/100)),
   start - down_pods)`` per ``scale_down_period``.
5. Bounds: ``min_replicas`` and ``max_replicas``. With ``min_replicas == 0`` a
   model goes to zero once it has been inactive for ``scale_to_zero_cooldown``
   seconds, and comes back from zero (to at least one replica) as soon as it is
   active: its queue is above the activation target or it runs requests. While
   inactive it never scales up.

Time is a plain float in seconds (monotonic), passed in by the caller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

SignalKind = Literal["total", "average", "queue"]
Direction = Literal["up", "down", "none"]

__all__ = [
    "Decision",
    "Direction",
    "Observation",
    "Policy",
    "PolicyState",
    "ScaleEvent",
    "SignalKind",
    "decide",
    "is_active",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class Policy:
    """How one scale target scales. Defaults are the HPA's where it has one."""

    target: float
    """The signal's value one replica should carry (> 0)."""
    min_replicas: int = 1
    """Lower bound; 0 allows scaling to zero after ``scale_to_zero_cooldown``."""
    max_replicas: int = 10
    """Upper bound (>= 1 and >= min_replicas)."""
    tolerance: float = 0.1
    """No change while the per-replica value is within this fraction of the target (HPA: 0.1)."""
    activation_target: float = 0.0
    """The queue must be above this for a model to count as active (from zero)."""
    stabilization_window: float = 300.0
    """Seconds of recommendations a scale-down looks back over (HPA: 300)."""
    scale_to_zero_cooldown: float = 300.0
    """Seconds without activity before scaling to zero (KEDA's cooldownPeriod: 300)."""
    scale_up_percent: float = 100.0
    """Scale-up rate limit: this percentage of the replicas at the period's start..."""
    scale_up_pods: int = 4
    """...or this many pods, whichever allows more (HPA: 100 % or 4 pods per 15 s)."""
    scale_up_period: float = 15.0
    """Seconds a scale-up rate limit counts over."""
    scale_down_percent: float = 100.0
    """Scale-down rate limit: this percentage of the replicas at the period's start..."""
    scale_down_pods: int = 0
    """...or this many pods, whichever allows more (HPA: 100 % per 15 s)."""
    scale_down_period: float = 15.0
    """Seconds a scale-down rate limit counts over."""
    panic_window: float = 0.0
    """Seconds panic mode lasts once triggered; 0 turns panic mode off."""
    panic_threshold: float = 2.0
    """Per-replica value, as a multiple of the target, that triggers panic mode."""

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"{name}: {why}")

        if not (math.isfinite(self.target) and self.target > 0):
            raise bad("target", f"must be a number > 0, got {self.target!r}")
        if self.min_replicas < 0:
            raise bad("min_replicas", f"must be >= 0, got {self.min_replicas}")
        if self.max_replicas < max(1, self.min_replicas):
            raise bad("max_replicas", f"must be >= 1 and >= min_replicas, got {self.max_replicas}")
        for name in ("tolerance", "activation_target", "stabilization_window",
                     "scale_to_zero_cooldown", "scale_up_percent", "scale_down_percent",
                     "panic_window"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise bad(name, f"must be a number >= 0, got {value!r}")
        if self.scale_down_percent > 100:
            raise bad("scale_down_percent", f"must be <= 100, got {self.scale_down_percent}")
        for name in ("scale_up_pods", "scale_down_pods"):
            if getattr(self, name) < 0:
                raise bad(name, f"must be >= 0, got {getattr(self, name)}")
        for name in ("scale_up_period", "scale_down_period"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise bad(name, f"must be a number > 0, got {value!r}")
        if not (math.isfinite(self.panic_threshold) and self.panic_threshold > 1):
            raise bad("panic_threshold", f"must be a number > 1, got {self.panic_threshold!r}")


@dataclass(frozen=True, slots=True)
class ScaleEvent:
    """A change of replicas made at ``time`` (``change`` > 0 up, < 0 down)."""

    time: float
    change: int


@dataclass(frozen=True, slots=True)
class PolicyState:
    """What ``decide`` remembers between calls for one scale target."""

    recommendations: tuple[tuple[float, int], ...] = ()
    """(time, raw recommendation) within the stabilisation window."""
    events: tuple[ScaleEvent, ...] = ()
    """Changes applied within the longest rate-limit period."""
    last_active: float | None = None
    """When the target was last seen active (None: never observed)."""
    panic_until: float | None = None
    """Panic mode lasts until this time."""
    capacity: float | None = None
    """A queue signal's requests one replica runs at most, as seen (None: not yet)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Observation:
    """The inputs of one decision."""

    value: float
    """The scaling signal (>= 0, finite)."""
    kind: SignalKind
    """``total`` (summed over replicas), ``average`` (a mean ratio) or ``queue`` (a
    total of requests waiting for a free slot; needs ``running``)."""
    current_replicas: int
    active: bool
    """Whether the target has work (see ``is_active``)."""
    running: float = 0.0
    """Requests the replicas run (read with a ``queue`` signal)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome: ``desired`` replicas, and why."""

    desired: int
    current: int
    raw: int
    reason: str
    panic: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def direction(self) -> Direction:
        if self.desired > self.current:
            return "up"
        if self.desired < self.current:
            return "down"
        return "none"


def is_active(*, queue: float, running: float, activation_target: float) -> bool:
    """A model is active while its queue is above the activation target or it runs requests."""
    return queue > activation_target or running > 0


def _capacity(state: PolicyState, obs: Observation) -> float | None:
    """A queue signal's per-replica capacity, updated from ``obs`` when replicas are full."""
    if obs.kind != "queue":
        return None
    if obs.value > 0 and obs.running > 0 and obs.current_replicas > 0:
        seen = obs.running / obs.current_replicas
        return seen if state.capacity is None else max(state.capacity, seen)
    return state.capacity


def _raw_recommendation(policy: Policy, obs: Observation,
                        capacity: float | None) -> tuple[int, float | None]:
    """(raw replica count, per-replica ratio to the target or None at zero replicas)."""
    current = obs.current_replicas
    total = obs.kind != "average"
    if current == 0:
        raw = math.ceil(obs.value / policy.target) if total else 0
        return (max(raw, 1) if obs.active else 0), None
    per_replica = obs.value / current if total else obs.value
    ratio = per_replica / policy.target
    if capacity is not None:
        # Whole replicas for the running work (a hair of float noise is not one more).
        busy = math.ceil(obs.running / capacity - 1e-9)
        return busy + math.ceil(obs.value / policy.target), ratio
    if abs(ratio - 1.0) <= policy.tolerance:
        return current, ratio
    if total:
        return math.ceil(obs.value / policy.target), ratio
    return math.ceil(current * obs.value / policy.target), ratio


def _rate_limited(policy: Policy, state: PolicyState, current: int, wanted: int,
                  now: float) -> int:
    if wanted > current:
        added = sum(e.change for e in state.events
                    if e.change > 0 and now - e.time < policy.scale_up_period)
        start = current - added
        ceiling = max(math.ceil(start * (1 + policy.scale_up_percent / 100)),
                      start + policy.scale_up_pods)
        return min(wanted, max(ceiling, current))
    if wanted < current:
        removed = -sum(e.change for e in state.events
                       if e.change < 0 and now - e.time < policy.scale_down_period)
        start = current + removed
        floor_ = min(math.ceil(start * (1 - policy.scale_down_percent / 100)),
                     start - policy.scale_down_pods)
        return max(wanted, min(floor_, current))
    return wanted


def decide(policy: Policy, state: PolicyState, obs: Observation,
           now: float) -> tuple[Decision, PolicyState]:
    """Decide the replicas for ``obs`` at time ``now``; return the decision and the next state.

    The next state assumes the decision is applied; a caller that fails to
    apply it keeps the previous state.
    """
    if not (math.isfinite(obs.value) and obs.value >= 0):
        raise ValueError(f"value must be a finite number >= 0, got {obs.value!r}")
    if not (math.isfinite(obs.running) and obs.running >= 0):
        raise ValueError(f"running must be a finite number >= 0, got {obs.running!r}")
    if obs.current_replicas < 0:
        raise ValueError(f"current_replicas must be >= 0, got {obs.current_replicas}")
    current = obs.current_replicas
    notes: list[str] = []

    last_active = now if (obs.active or state.last_active is None) else state.last_active
    capacity = _capacity(state, obs)
    raw, ratio = _raw_recommendation(policy, obs, capacity)

    panic_until = state.panic_until
    if policy.panic_window > 0 and ratio is not None and ratio >= policy.panic_threshold:
        # A new trigger extends a panic under way, never shortens it.
        panic_until = max(now + policy.panic_window, panic_until or now)
    panicking = panic_until is not None and now < panic_until

    horizon = now - policy.stabilization_window
    # A first observation counts the current replicas as a recommendation, so a
    # restarted scaler waits out the window before it scales down.
    seed = () if state.recommendations else ((now, current),)
    recommendations = (*((t, r) for t, r in state.recommendations if t > horizon),
                       *seed, (now, raw))

    if panicking:
        wanted = max(current, raw)
        desired = wanted
        if raw < current:
            notes.append("panic: no scale-down")
    elif raw >= current:
        desired = _rate_limited(policy, state, current, raw, now)
    else:
        wanted = min(current, max(r for _, r in recommendations))
        if wanted > raw:
            notes.append(f"stabilised at {wanted} (window {policy.stabilization_window:g}s)")
        desired = _rate_limited(policy, state, current, wanted, now)
    if desired != raw and not notes:
        notes.append(f"rate-limited to {desired}")
    if capacity is not None:
        notes.append(f"running work needs {math.ceil(obs.running / capacity - 1e-9)} at "
                     f"{capacity:g} per replica")

    lower = policy.min_replicas
    reason = ""
    if lower == 0:
        cooled = not obs.active and now - last_active >= policy.scale_to_zero_cooldown
        if current == 0 and not obs.active:
            desired, reason = 0, "inactive at zero"
        elif cooled:
            desired, reason = 0, "inactive for the cooldown: scale to zero"
        else:
            lower = 1
            if not obs.active and desired > current:
                desired = current  # no work worth a new replica: never up while inactive
                notes.append("inactive: no scale-up")
    if not reason:
        if desired < lower:
            desired = lower
            notes.append(f"at min {lower}")
        if desired > policy.max_replicas:
            desired = policy.max_replicas
            notes.append(f"at max {policy.max_replicas}")
        if current == 0 and desired > 0:
            reason = "active: scale from zero"
        elif desired == current:
            reason = "within tolerance" if raw == current else "held"
        else:
            reason = "scale up" if desired > current else "scale down"

    keep = max(policy.scale_up_period, policy.scale_down_period)
    events = tuple(e for e in state.events if now - e.time < keep)
    if desired != current:
        events = (*events, ScaleEvent(now, desired - current))
    next_state = replace(state, recommendations=recommendations, events=events,
                         last_active=last_active,
                         panic_until=panic_until if panicking else None, capacity=capacity)
    decision = Decision(desired=desired, current=current, raw=raw, reason=reason,
                        panic=panicking, notes=tuple(notes))
    return decision, next_state
