"""The Kubernetes HorizontalPodAutoscaler (autoscaling/v2), as its documentation describes it.

Written from the Kubernetes documentation ("Horizontal Pod Autoscaling", its
algorithm details and "Configurable scaling behavior"), independently of
``scaler.policy``: this is the baseline brix's own policy is measured against.

One ``HpaController`` is one HPA over one External metric with an
``AverageValue`` target (what KEDA creates for a Prometheus trigger). Each sync
(every ``sync_period``, 15 s by default):

1. Bounds first: a target at 0 replicas is left alone (the HPA disables itself
   at zero; KEDA brings it back); above ``max_replicas`` it goes to the max,
   below ``min_replicas`` to the min.
2. The raw recommendation: ``usage_ratio = value / (target * replicas)``; within
   ``tolerance`` of 1.0 the replicas are kept, else ``ceil(value / target)``
   (the same as ``ceil(replicas * usage_ratio)``). For an External metric the
   divisor is the target's pod count (its scale status), not the ready pods:
   the HPA's not-ready and missing-pod corrections apply to per-pod (Resource
   and Pods) metrics only. A metric that cannot be read holds the replicas.
3. Stabilisation: every recommendation is recorded; a scale-up takes the
   lowest recommendation of the scale-up window (0 s by default: the newest),
   a scale-down the highest of the scale-down window (300 s).
4. Scaling policies: each policy allows a change relative to the replicas at
   the start of its period (the current count less the changes made within
   the period). ``Pods`` adds or removes ``value`` pods; ``Percent`` multiplies
   by ``1 + value/100`` (rounded up) or by ``1 - value/100`` (rounded down, so
   the pods removed are rounded up). ``select=max`` takes the policy allowing
   the biggest change, ``min`` the smallest, ``disabled`` forbids the
   direction. Defaults: up max(100 %, 4 pods) per 15 s; down 100 % per 15 s.
5. ``min_replicas``/``max_replicas`` bound the result.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "DEFAULT_SCALE_DOWN",
    "DEFAULT_SCALE_UP",
    "HpaController",
    "ScalingPolicy",
    "ScalingRules",
    "replicas_for_ratio",
]

Select = Literal["max", "min", "disabled"]


@dataclass(frozen=True)
class ScalingPolicy:
    """One ``behavior.scaleUp/scaleDown.policies`` entry."""

    kind: Literal["Pods", "Percent"]
    value: int
    period: float
    """``periodSeconds``: how far back the changes it allows are counted."""

    def __post_init__(self) -> None:
        if self.value <= 0:
            raise ValueError(f"scaling policy {self.kind}: value must be > 0, got {self.value}")
        if self.period <= 0:
            raise ValueError(f"scaling policy {self.kind}: period must be > 0, got {self.period}")


@dataclass(frozen=True)
class ScalingRules:
    """``behavior.scaleUp`` or ``behavior.scaleDown``."""

    stabilization_window: float
    policies: tuple[ScalingPolicy, ...]
    select: Select = "max"

    def __post_init__(self) -> None:
        if self.stabilization_window < 0:
            raise ValueError("stabilization window must be >= 0, "
                             f"got {self.stabilization_window}")
        if not self.policies and self.select != "disabled":
            raise ValueError("scaling rules need at least one policy unless disabled")


DEFAULT_SCALE_UP = ScalingRules(0.0, (ScalingPolicy("Percent", 100, 15.0),
                                      ScalingPolicy("Pods", 4, 15.0)))
"""The HPA's default ``scaleUp``: no stabilisation, double or add 4 pods per 15 s."""
DEFAULT_SCALE_DOWN = ScalingRules(300.0, (ScalingPolicy("Percent", 100, 15.0),))
"""The HPA's default ``scaleDown``: a 300 s window, then down to the minimum at once."""


def replicas_for_ratio(current: int, ratio: float, tolerance: float) -> int:
    """``ceil(current * ratio)``, or ``current`` while ``ratio`` is within tolerance of 1."""
    if abs(1.0 - ratio) <= tolerance:
        return current
    # A hair of float noise (ratio 2.0000000001) is not one more pod.
    return math.ceil(current * ratio - 1e-9)


@dataclass
class _Event:
    time: float
    change: int


@dataclass
class HpaController:
    """One HPA's state and sync, for an External ``AverageValue`` metric."""

    target: float
    """``target.averageValue``: the metric one replica should carry (> 0)."""
    min_replicas: int = 1
    max_replicas: int = 10
    tolerance: float = 0.1
    scale_up: ScalingRules = DEFAULT_SCALE_UP
    scale_down: ScalingRules = DEFAULT_SCALE_DOWN
    _recommendations: deque[tuple[float, int]] = field(default_factory=deque, repr=False)
    _events: list[_Event] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.target) and self.target > 0):
            raise ValueError(f"target must be > 0, got {self.target}")
        if self.min_replicas < 1:
            raise ValueError(f"the HPA's min_replicas must be >= 1, got {self.min_replicas}")
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas {self.max_replicas} is below min_replicas "
                             f"{self.min_replicas}")
        if not (math.isfinite(self.tolerance) and self.tolerance >= 0):
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance}")

    def raw(self, value: float, replicas: int) -> int:
        """Step 2: the recommendation for ``value`` at ``replicas`` (> 0), before behaviour."""
        return replicas_for_ratio(replicas, value / (self.target * replicas), self.tolerance)

    def sync(self, *, now: float, value: float | None, replicas: int) -> int:
        """One sync: the replicas the HPA sets (``replicas`` when it holds)."""
        if replicas <= 0:
            return replicas  # scaling is disabled at zero
        if replicas > self.max_replicas:
            desired = self.max_replicas
        elif replicas < self.min_replicas:
            desired = self.min_replicas
        elif value is None:
            return replicas  # the metric cannot be read: no change
        else:
            desired = self._normalize(now, self.raw(value, replicas), replicas)
        if desired != replicas:
            self._events.append(_Event(now, desired - replicas))
        return desired

    # --- behaviour ---------------------------------------------------------

    def _stabilize(self, now: float, raw: int, current: int) -> int:
        if not self._recommendations and self.scale_down.stabilization_window > 0:
            # A new HPA counts the current replicas as recommended (just before now).
            self._recommendations.append((now - 1e-6, current))
        up_cut = now - self.scale_up.stabilization_window
        down_cut = now - self.scale_down.stabilization_window
        # Each window holds what was recommended after its cut-off, and now's.
        up = min([raw, *(r for t, r in self._recommendations if t > up_cut)])
        down = max([raw, *(r for t, r in self._recommendations if t > down_cut)])
        self._recommendations.append((now, raw))
        keep = max(self.scale_up.stabilization_window, self.scale_down.stabilization_window)
        while self._recommendations and self._recommendations[0][0] <= now - keep:
            self._recommendations.popleft()
        # Up only as far as every recommendation of the up window agrees; down
        # only as far as every one of the down window does.
        return min(max(current, up), down)

    def _changed_within(self, now: float, period: float, sign: int) -> int:
        return sum(abs(e.change) for e in self._events
                   if now - e.time < period and e.change * sign > 0)

    def _period_start(self, now: float, period: float, current: int) -> int:
        return (current - self._changed_within(now, period, +1)
                + self._changed_within(now, period, -1))

    def _up_limit(self, now: float, current: int) -> int:
        rules = self.scale_up
        if rules.select == "disabled":
            return current
        limits = []
        for p in rules.policies:
            start = self._period_start(now, p.period, current)
            limits.append(start + p.value if p.kind == "Pods"
                          else math.ceil(start * (1 + p.value / 100) - 1e-9))
        return max(limits) if rules.select == "max" else min(limits)

    def _down_limit(self, now: float, current: int) -> int:
        rules = self.scale_down
        if rules.select == "disabled":
            return current
        limits = []
        for p in rules.policies:
            start = self._period_start(now, p.period, current)
            limits.append(start - p.value if p.kind == "Pods"
                          else math.floor(start * (1 - p.value / 100) + 1e-9))
        # The biggest change is the lowest floor.
        return min(limits) if rules.select == "max" else max(limits)

    def _normalize(self, now: float, raw: int, current: int) -> int:
        desired = self._stabilize(now, raw, current)
        if desired > current:
            ceiling = min(self.max_replicas, max(self._up_limit(now, current), current))
            desired = min(desired, ceiling)
        elif desired < current:
            floor_ = max(self.min_replicas, min(self._down_limit(now, current), current))
            desired = max(desired, floor_)
        horizon = max((p.period for p in (*self.scale_up.policies, *self.scale_down.policies)),
                      default=0.0)
        self._events = [e for e in self._events if now - e.time < horizon]
        return max(self.min_replicas, min(self.max_replicas, desired))
