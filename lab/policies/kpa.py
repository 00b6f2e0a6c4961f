"""The KPA: Knative's pod autoscaler as AIBrix ships it (stable and panic windows).

Written from Knative's autoscaling documentation and AIBrix's
``pkg/controller/podautoscaler`` (its KPA algorithm and configuration defaults),
independently of ``scaler.policy``. AIBrix's defaults, used here:

- stable window 60 s, panic window 6 s (``autoscaling.aibrix.ai/stable-window``,
  ``panic-window``); panic threshold 2.0, i.e. 200 % (``panic-threshold``);
- max scale-up rate 2.0 and max scale-down rate 2.0 per decision (a decision
  at most doubles, or halves, the ready pods: ``max-scale-up-rate``,
  ``max-scale-down-rate``);
- scale-down cooldown window 300 s (``scale-down-cooldown-window``): a
  scale-down applies the highest count decided over that window (Knative's
  scale-down delay);
- activation scale 1; scale to zero off (``scale-to-zero``, and only with
  ``minReplicas`` 0);
- the metric of AIBrix's KPA example, ``gpu_cache_usage_perc`` at a target of
  0.5 per pod (vLLM now calls it ``vllm:kv_cache_usage_perc``); ``running``
  (``vllm:num_requests_running``, Knative's concurrency) or ``waiting`` may be
  chosen instead.

Each decision (every ``interval``; AIBrix reconciles periodically, the lab
uses the scrape interval) records the metric summed over the pods, as
Prometheus last scraped it, into the KPA's own sliding window, like AIBrix's
collector. The stable value is the mean over the stable window, the panic
value the mean over the panic window (at the lab's 15 s scrape only the last
sample falls in 6 s). With ``ready`` pods (at least 1):

- ``dspc = ceil(stable / target)``, ``dppc = ceil(panic / target)``, each kept
  within ``[floor(ready / down_rate), ceil(ready * up_rate)]``;
- panic starts when ``dppc / ready >= panic_threshold`` and lasts until the
  panic condition has been false for a stable window; while panicking the
  count is ``max(stable, panic)`` and never decreases;
- then the scale-down delay, then ``min``/``max``.

From zero (scale to zero on) the KPA comes back to the activation scale when
the gateway holds requests for the model (``brix_gateway_requests_pending``),
the part Knative's activator plays; that is the lab's choice, AIBrix has no
activator.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Final

from lab.policies.base import MetricsView

__all__ = ["KPA_METRICS", "Kpa"]

KPA_METRICS: Final[dict[str, str]] = {
    "kv_cache": "vllm:kv_cache_usage_perc",
    "running": "vllm:num_requests_running",
    "waiting": "vllm:num_requests_waiting",
}
PENDING: Final = "brix_gateway_requests_pending"


@dataclass
class Kpa:
    """One KPA PodAutoscaler over one Deployment."""

    target: float = 0.5
    metric: str = "kv_cache"
    stable_window: float = 60.0
    panic_window: float = 6.0
    panic_threshold: float = 2.0
    max_scale_up_rate: float = 2.0
    max_scale_down_rate: float = 2.0
    scale_down_delay: float = 300.0
    activation_scale: int = 1
    scale_to_zero: bool = False
    min_replicas: int = 1
    max_replicas: int = 100
    interval: float = 15.0
    in_panic: bool = field(init=False, default=False)
    """Whether the last decision was made in panic mode."""
    _samples: deque[tuple[float, float]] = field(init=False, default_factory=deque)
    _decided: deque[tuple[float, int]] = field(init=False, default_factory=deque)
    _panic_since: float | None = field(init=False, default=None)
    _panic_seen: float | None = field(init=False, default=None)
    _max_panic_pods: int = field(init=False, default=0)
    _started: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        if self.metric not in KPA_METRICS:
            raise ValueError(f"metric must be one of {', '.join(KPA_METRICS)}, got {self.metric!r}")
        checks = {"target": self.target, "stable_window": self.stable_window,
                  "panic_window": self.panic_window, "interval": self.interval}
        for name, value in checks.items():
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be > 0, got {value}")
        if self.panic_window > self.stable_window:
            raise ValueError(f"panic_window {self.panic_window} exceeds stable_window "
                             f"{self.stable_window}")
        if not 1.0 <= self.panic_threshold <= 10.0:  # AIBrix's accepted range
            raise ValueError(f"panic_threshold must be within [1, 10], got {self.panic_threshold}")
        for name in ("max_scale_up_rate", "max_scale_down_rate"):
            if not getattr(self, name) > 1.0:
                raise ValueError(f"{name} must be > 1, got {getattr(self, name)}")
        if self.scale_down_delay < 0:
            raise ValueError(f"scale_down_delay must be >= 0, got {self.scale_down_delay}")
        if self.activation_scale < 1:
            raise ValueError(f"activation_scale must be >= 1, got {self.activation_scale}")
        if self.min_replicas < 0:
            raise ValueError(f"min_replicas must be >= 0, got {self.min_replicas}")
        if self.max_replicas < max(1, self.min_replicas):
            raise ValueError(f"max_replicas must be >= 1 and >= min_replicas, "
                             f"got {self.max_replicas}")

    @property
    def lowest(self) -> int:
        """The fewest replicas it sets: 0 only with scale to zero on and min 0."""
        return 0 if (self.scale_to_zero and self.min_replicas == 0) else max(1, self.min_replicas)

    def _window_mean(self, now: float, window: float) -> float:
        values = [v for t, v in self._samples if t > now - window]
        return sum(values) / len(values) if values else 0.0

    def decide(self, *, now: float, metrics: MetricsView, replicas: int, ready: int) -> int:
        if not self._started:
            self._started = True
            if ready > 1:  # Knative starts panicking above one pod: no scale-down on no data
                self._panic_since = self._panic_seen = now
                self._max_panic_pods = ready
        value = metrics.sum(KPA_METRICS[self.metric])
        if value is None:
            if replicas == 0:
                pending = metrics.sum(PENDING) or 0.0
                return self._bound(self.activation_scale) if pending > 0 else 0
            return replicas  # pods but no series yet (starting): hold, as a failed fetch does
        self._samples.append((now, value))
        while self._samples and self._samples[0][0] <= now - self.stable_window:
            self._samples.popleft()
        return self._scale(now, replicas, ready)

    def _scale(self, now: float, replicas: int, ready: int) -> int:
        stable = self._window_mean(now, self.stable_window)
        panic = self._window_mean(now, self.panic_window)
        pods = max(1, ready)
        up_limit = math.ceil(self.max_scale_up_rate * pods)
        down_limit = math.floor(pods / self.max_scale_down_rate)
        dspc = math.ceil(stable / self.target - 1e-9)
        dppc = math.ceil(panic / self.target - 1e-9)
        want_stable = min(max(dspc, down_limit), up_limit)
        want_panic = min(max(dppc, down_limit), up_limit)
        if self.activation_scale > 1:
            want_stable = max(want_stable, self.activation_scale) if want_stable else 0
            want_panic = max(want_panic, self.activation_scale) if want_panic else 0

        over = dppc / pods >= self.panic_threshold
        if over:
            self._panic_seen = now
            if self._panic_since is None:
                self._panic_since = now
        elif (self._panic_since is not None and self._panic_seen is not None
              and now - self._panic_seen > self.stable_window):
            self._panic_since = self._panic_seen = None
            self._max_panic_pods = 0
        self.in_panic = self._panic_since is not None

        desired = want_stable
        if self.in_panic:
            desired = max(desired, want_panic, self._max_panic_pods)
            self._max_panic_pods = desired
        if self.scale_down_delay > 0:
            self._decided.append((now, desired))
            while self._decided and self._decided[0][0] <= now - self.scale_down_delay:
                self._decided.popleft()
            desired = max(d for _, d in self._decided)
        return self._bound(desired)

    def _bound(self, desired: int) -> int:
        return max(self.lowest, min(self.max_replicas, desired))
