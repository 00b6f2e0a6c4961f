"""brix's own autoscaling, as it runs in a cluster: the fallback loop, and its signal through KEDA.

``BrixLoop`` is the fallback loop (``scaler.loop``): every ``loop_interval``
it measures the model's ``queue`` signal (engine waiting requests plus the
requests the gateway holds for the model) and the running requests, and calls
the real ``scaler.policy.decide`` with the loop's defaults (read from
``scaler.settings.ScalerSettings``) and the target of the sim-model manifest
(``k8s/models/sim-model/deployment.yaml``: queue, 4 per replica, min 1).

``brix_keda`` is the ScaledObject of ``k8s/overlays/keda/scaledobjects.yaml``
for sim-model (queue, target 4, activation 0, pollingInterval 5, cooldown
300, scale-down stabilisation 300, min 0) through the KEDA + HPA model of
``lab.policies.keda``: brix's scaler answers GetMetrics with the queue and
reports the model active while its queue is above the activation target or
it runs requests (``scaler.policy.is_active``). In the cluster that trigger is
``external-push`` (activity is pushed within ``stream_interval``, 1.5 s); here
it is polled every ``pollingInterval``: the scrape interval (15 s) bounds how
fresh either can be.

The lab's metrics are vLLM's names for what brix's sidecar exports as
``brix_engine_*``: ``vllm:num_requests_waiting`` and ``vllm:num_requests_running``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from lab.policies.base import MetricsView
from lab.policies.hpa import DEFAULT_SCALE_DOWN, DEFAULT_SCALE_UP, ScalingRules
from lab.policies.keda import KedaHpa
from scaler.policy import Observation, Policy, PolicyState, decide, is_active
from scaler.settings import ScalerSettings

__all__ = ["SIM_MODEL_TARGET", "BrixLoop", "brix_keda", "queue_and_running"]

WAITING = "vllm:num_requests_waiting"
RUNNING = "vllm:num_requests_running"
PENDING = "brix_gateway_requests_pending"

SIM_MODEL_TARGET = 4.0
"""``brix.dev/autoscale-target`` of sim-model, and its ScaledObject's ``target``."""

_LOOP: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(ScalerSettings)}


def queue_and_running(metrics: MetricsView) -> tuple[float, float]:
    """brix's ``queue`` signal and the running requests, as the scaler's one query reads them.

    With no engine series (no pods) the engine parts are 0; the gateway's pending
    count still counts, which is what brings a model back from zero.
    """
    waiting = metrics.sum(WAITING) or 0.0
    pending = metrics.sum(PENDING) or 0.0
    running = metrics.sum(RUNNING) or 0.0
    return waiting + pending, running


@dataclass
class BrixLoop:
    """The fallback loop over one annotated Deployment, deciding with ``scaler.policy``."""

    target: float = SIM_MODEL_TARGET
    min_replicas: int = 1
    max_replicas: int = 100
    activation_target: float = 0.0
    interval: float = float(_LOOP["loop_interval"])
    stabilization_window: float = float(_LOOP["stabilization_window"])
    scale_to_zero_cooldown: float = float(_LOOP["scale_to_zero_cooldown"])
    scale_period: float = float(_LOOP["scale_period"])
    panic_window: float = float(_LOOP["panic_window"])
    policy: Policy = field(init=False)
    state: PolicyState = field(init=False, default_factory=PolicyState)
    last_reason: str = field(init=False, default="")
    """The last decision's reason and notes (what the loop's Event would say)."""

    def __post_init__(self) -> None:
        if not self.interval > 0:
            raise ValueError(f"interval must be > 0, got {self.interval}")
        # Policy validates the rest and names the field.
        self.policy = Policy(
            target=self.target, min_replicas=self.min_replicas, max_replicas=self.max_replicas,
            activation_target=self.activation_target,
            stabilization_window=self.stabilization_window,
            scale_to_zero_cooldown=self.scale_to_zero_cooldown,
            scale_up_period=self.scale_period, scale_down_period=self.scale_period,
            panic_window=self.panic_window)

    def decide(self, *, now: float, metrics: MetricsView, replicas: int, ready: int) -> int:
        queue, running = queue_and_running(metrics)
        active = is_active(queue=queue, running=running,
                           activation_target=self.policy.activation_target)
        decision, self.state = decide(self.policy, self.state, Observation(
            value=queue, kind="queue", current_replicas=replicas, active=active,
            running=running), now)
        notes = f" ({'; '.join(decision.notes)})" if decision.notes else ""
        self.last_reason = f"{decision.reason}{notes}"
        return decision.desired


def brix_keda(*, target: float = SIM_MODEL_TARGET, activation_target: float = 0.0,
              polling_interval: float = 5.0, cooldown_period: float = 300.0,
              stabilization_window: float = 300.0, min_replicas: int = 0,
              max_replicas: int = 100, tolerance: float = 0.1,
              active_at_start: bool = True) -> KedaHpa:
    """sim-model's ScaledObject: brix's queue signal through KEDA and the HPA."""

    def queue(metrics: MetricsView) -> float:
        return queue_and_running(metrics)[0]

    def active(metrics: MetricsView) -> bool:
        q, running = queue_and_running(metrics)
        return is_active(queue=q, running=running, activation_target=activation_target)

    down = ScalingRules(stabilization_window, DEFAULT_SCALE_DOWN.policies,
                        DEFAULT_SCALE_DOWN.select)
    return KedaHpa(query=queue, activity=active, threshold=target,
                   activation_threshold=activation_target, polling_interval=polling_interval,
                   cooldown_period=cooldown_period, min_replicas=min_replicas,
                   max_replicas=max_replicas, tolerance=tolerance, scale_up=DEFAULT_SCALE_UP,
                   scale_down=down, active_at_start=active_at_start)
