"""KEDA driving an HPA: activation, scale to and from zero, and the HPA for 1..N.

Written from KEDA's documentation (ScaledObject spec; the Prometheus scaler),
independently of ``scaler.policy``. A ScaledObject makes KEDA do two things:

- Every ``pollingInterval`` KEDA's operator asks its scaler whether the target
  is *active*: the metric is above ``activationThreshold`` (default 0). Active
  at 0 replicas, it scales the target to ``max(minReplicaCount, 1)``; inactive
  with ``minReplicaCount`` 0, it scales to 0 once ``cooldownPeriod`` has passed
  since it was last active (a target never seen active goes to 0 at once,
  after ``initialCooldownPeriod``, default 0).

  A lab run starts mid-operation (``active_at_start``, the default): the
  Deployment's initial replicas under a ``minReplicaCount`` 0 ScaledObject mean
  KEDA saw the target active within its cooldown (it would have scaled it to
  zero otherwise), and the trace's traffic begins at 0, so the cooldown counts
  from 0. Modelled as a ScaledObject created over an idle target instead, its
  first poll reads the scrape before the trace (the idle fleet) and scales to
  zero just as the trace begins: on the Azure hour with the scrape 7.5 s
  before the decisions that cost ``brix-keda`` 9 failed requests and 4.2x the
  replica-hours (4.46 against 1.06), a start-up artefact no cluster in
  operation has.
- It creates an HPA with ``minReplicas = max(minReplicaCount, 1)`` over the
  metric as External ``AverageValue`` = ``threshold``; the HPA syncs every
  15 s and reads the metric through KEDA's metrics adapter, which queries the
  scaler then (so the HPA sees the metric as Prometheus has it at its sync,
  not at KEDA's last poll). ``lab.policies.hpa`` is that HPA.

The Prometheus scaler's ``ignoreNullValues`` defaults to true: an empty answer
(no series, e.g. no pods yet) reads as 0. With it false an empty answer is an
error: the HPA holds and KEDA's operator neither activates nor deactivates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from lab.policies.base import MetricsView
from lab.policies.hpa import DEFAULT_SCALE_DOWN, DEFAULT_SCALE_UP, HpaController, ScalingRules

__all__ = ["KedaHpa"]

Query = Callable[[MetricsView], float | None]
Activity = Callable[[MetricsView], bool | None]


@dataclass
class KedaHpa:
    """One ScaledObject with one trigger, and the HPA KEDA makes for it."""

    query: Query
    """The trigger's metric as Prometheus answers it (None: an empty answer)."""
    threshold: float = 5.0
    activity: Activity | None = None
    """Whether the scaler reports the target active (None: it errs). Unset: the metric
    (after ``ignoreNullValues``) is above ``activation_threshold``, as KEDA's own scalers."""
    activation_threshold: float = 0.0
    polling_interval: float = 30.0
    """KEDA's default is 30 s; configurations set their own."""
    cooldown_period: float = 300.0
    initial_cooldown_period: float = 0.0
    active_at_start: bool = True
    """The target counts as last active at 0 (the run starts mid-operation); False: the
    ScaledObject is created at 0 and a target not yet seen active goes to zero at the
    first poll after ``initial_cooldown_period``."""
    min_replicas: int = 0
    max_replicas: int = 100
    ignore_null_values: bool = True
    sync_period: float = 15.0
    """The HPA controller's ``--horizontal-pod-autoscaler-sync-period``."""
    tolerance: float = 0.1
    scale_up: ScalingRules = DEFAULT_SCALE_UP
    scale_down: ScalingRules = DEFAULT_SCALE_DOWN
    interval: float = field(init=False)
    hpa: HpaController = field(init=False)
    _last_active: float | None = field(default=None, init=False)
    _next_poll: float = field(default=0.0, init=False)
    _next_sync: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        for name in ("threshold", "polling_interval", "sync_period"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be > 0, got {value}")
        for name in ("activation_threshold", "cooldown_period", "initial_cooldown_period"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be >= 0, got {value}")
        if self.min_replicas < 0:
            raise ValueError(f"min_replicas must be >= 0, got {self.min_replicas}")
        if self.max_replicas < max(1, self.min_replicas):
            raise ValueError(f"max_replicas must be >= 1 and >= min_replicas, "
                             f"got {self.max_replicas}")
        # Called at the finer of the two clocks; each acts on its own schedule.
        self.interval = min(self.polling_interval, self.sync_period)
        self.hpa = HpaController(target=self.threshold, min_replicas=max(1, self.min_replicas),
                                 max_replicas=self.max_replicas, tolerance=self.tolerance,
                                 scale_up=self.scale_up, scale_down=self.scale_down)
        self._next_poll = self.polling_interval
        self._next_sync = self.sync_period
        if self.active_at_start:
            self._last_active = 0.0

    def _read(self, metrics: MetricsView) -> float | None:
        value = self.query(metrics)
        if value is None and self.ignore_null_values:
            return 0.0
        return value

    def _active(self, metrics: MetricsView) -> bool | None:
        if self.activity is not None:
            return self.activity(metrics)
        value = self._read(metrics)
        return None if value is None else value > self.activation_threshold

    def _due(self, now: float, at: float) -> bool:
        return now >= at - 1e-6  # float time: 14.999999 is the 15 s tick

    def decide(self, *, now: float, metrics: MetricsView, replicas: int, ready: int) -> int:
        desired = replicas
        if self._due(now, self._next_poll):
            self._next_poll = now + self.polling_interval
            desired = self._poll(now, self._active(metrics), desired)
        if desired == replicas and self._due(now, self._next_sync):
            self._next_sync = now + self.sync_period
            desired = self.hpa.sync(now=now, value=self._read(metrics), replicas=desired)
        return desired

    def _poll(self, now: float, active: bool | None, replicas: int) -> int:
        """KEDA's operator loop: activation and scale to/from zero."""
        if active is None:
            return replicas  # the scaler errs: no activity decision
        if active:
            self._last_active = now
            return max(1, self.min_replicas) if replicas == 0 else replicas
        if self.min_replicas > 0 or replicas == 0:
            return replicas
        if self._last_active is None:  # never active: to zero once the initial cooldown ends
            return 0 if now >= self.initial_cooldown_period else replicas
        return 0 if now - self._last_active >= self.cooldown_period else replicas
