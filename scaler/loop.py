"""The fallback loop: scale annotated Deployments from PromQL when KEDA is not there.

Every ``loop_interval`` seconds the Lease holder (``scaler.leader``) re-reads
the world and converges it (level-triggered, like an HPA's sync):

1. list Deployments annotated ``brix.dev/autoscale: "true"``
   (``scaler.targets``) and the HPAs; skip every Deployment an HPA targets
   (KEDA's included), so the two never fight;
2. measure each one's signal through the shared Prometheus cache;
3. ``scaler.policy.decide`` (the same core as everywhere), or ``scaler.slo`` for
   ``signal: slo``, with per Deployment state kept in memory for one term of
   leadership: each term (``LeaderElector.term``) starts afresh, the queue
   policy waiting out its windows and the SLO policy from its prior capacity,
   since another replica may have scaled on what it saw in between;
4. apply a change through the ``deployments/scale`` subresource and record an
   Event with the inputs and the decision; export ``brix_scaler_*``.

Prometheus down (or any unmeasurable signal) holds the replicas as they are,
with a Warning Event (once per problem) and ``brix_scaler_errors_total``; each
held interval counts as recommending the replicas held (``policy.hold``), so
after the outage a scale-down waits a full stabilisation window of fresh data.
The first decision after a Warning records a Normal Event ``ValidMetricFound``
(the HPA's word for the same), so the Events say when a hold ended as well as
when it began: a view of the latest Events (``brix up``'s) does not show a
cleared problem as the scaler's latest word.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kubernetes import client

from scaler.kube import DeploymentInfo, Kube, KubeError
from scaler.leader import LeaderElector
from scaler.measure import Measurement, measure
from scaler.metrics import ScalerMetrics
from scaler.policy import Decision, Observation, Policy, PolicyState, decide, hold
from scaler.prometheus import MetricsSource
from scaler.settings import ScalerSettings
from scaler.signals import MetadataError, SignalError
from scaler.slo import SloDecision
from scaler.slo_run import SloRunner
from scaler.targets import AnnotationError, ScaleTarget, read_target, wants_autoscaling

log = logging.getLogger(__name__)

Key = tuple[str, str]


@dataclass
class _Tracked:
    """What the loop remembers about one Deployment."""

    state: PolicyState = field(default_factory=PolicyState)
    problem: str | None = None  # the last Warning recorded, so it is recorded once
    problem_reason: str = ""  # its Event reason


class FallbackLoop:
    """Scales annotated Deployments while it holds the Lease."""

    def __init__(self, settings: ScalerSettings, api: client.ApiClient, *,
                 source: MetricsSource, metrics: ScalerMetrics,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._kube = Kube(api)
        self._source = source
        self._metrics = metrics
        self._clock = clock
        self._tracked: dict[Key, _Tracked] = {}
        self._slo = SloRunner(source, clock=clock)
        self.elector = LeaderElector(
            self._kube, namespace=settings.lease_namespace, name=settings.lease_name,
            identity=settings.identity, duration=settings.lease_duration, clock=clock)
        self._last_pass: float | None = None
        self._term = 0  # the elector's term the state below was learnt in

    # --- running -----------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        elector = asyncio.create_task(self.elector.run(stop), name="leader election")
        try:
            while not stop.is_set():
                if self.elector.is_leader():
                    if self._term != self.elector.term:
                        self._forget_all()  # a new term starts afresh
                        self._term = self.elector.term
                    try:
                        await self.reconcile()
                    except Exception:  # a bug or an odd object: log it, try next pass
                        log.exception("fallback loop: the pass failed")
                else:
                    self._forget_all()
                self._last_pass = self._clock()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._settings.loop_interval)
        finally:
            stop.set()
            await elector

    def _forget_all(self) -> None:
        """Drop what was learnt about every Deployment (the queue policy's windows, the
        SLO policy's capacity, trend and windows): while this replica did not lead,
        another may have scaled them on what it saw, so a later term starts afresh."""
        if self._tracked:
            log.info("fallback loop: not leading; forgetting the state of %d Deployment(s)",
                     len(self._tracked))
        self._tracked.clear()
        self._slo.clear()

    def healthy(self) -> tuple[bool, str]:
        """Alive while passes keep coming (a stuck loop fails the liveness probe)."""
        if self._last_pass is None:
            return True, "starting"
        age = self._clock() - self._last_pass
        limit = 3 * self._settings.loop_interval + 30
        if age > limit:
            return False, f"no pass of the fallback loop for {age:.0f}s"
        role = "leader" if self.elector.is_leader() else "follower"
        return True, f"ok ({role})"

    # --- one pass ----------------------------------------------------------

    async def reconcile(self) -> None:
        settings = self._settings
        try:
            deployments = await asyncio.to_thread(self._kube.deployments, settings.namespace)
            wanted = [d for d in deployments if wants_autoscaling(d.annotations)]
            hpas = (await asyncio.to_thread(self._kube.hpa_targets, settings.namespace)
                    if wanted else {})
        except KubeError as exc:
            self._metrics.error("kubernetes")
            log.warning("fallback loop: %s", exc)
            return
        jobs: list[tuple[DeploymentInfo, _Tracked]] = []
        for d in wanted:
            key = (d.namespace, d.name)
            hpa = hpas.get(key)
            if hpa is not None:
                if key in self._tracked:
                    log.info("%s/%s: HPA %s targets it now; leaving it alone", *key, hpa)
                continue
            jobs.append((d, self._tracked.setdefault(key, _Tracked())))
        for key in set(self._tracked) - {(d.namespace, d.name) for d, _ in jobs}:
            del self._tracked[key]
            self._slo.forget(key)
            self._metrics.forget(namespace=key[0], deployment=key[1])
        # Measure every target at once (a slow Prometheus costs one timeout per pass,
        # not one per Deployment), then decide and apply one by one.
        measured = await asyncio.gather(*(self._measure(d, tracked) for d, tracked in jobs))
        for (d, tracked), found in zip(jobs, measured, strict=True):
            if found is None:
                continue
            if not self.elector.is_leader():
                return  # lost the Lease mid-pass: stop acting at once
            await self._apply(d, tracked, *found)

    async def _measure(self, d: DeploymentInfo, tracked: _Tracked
                       ) -> tuple[ScaleTarget, Measurement | SloDecision] | None:
        """The target and its measurement, or None after reporting why there is none."""
        try:
            target = read_target(namespace=d.namespace, labels=d.labels,
                                 annotations=d.annotations,
                                 default_max=self._settings.default_max_replicas)
        except AnnotationError as exc:
            self._metrics.error("annotation")
            await self._warn(d, tracked, "InvalidAutoscaleAnnotation", str(exc))
            return None
        try:
            if target.trigger.slo is not None:
                return target, await self._slo.decide((d.namespace, d.name), target.trigger,
                                                      replicas=d.replicas)
            return target, await measure(self._source, target.trigger)
        except MetadataError as exc:  # the SLO policy cannot work with its settings yet
            self._metrics.error("annotation")
            await self._warn(d, tracked, "InvalidAutoscaleAnnotation",
                             f"holding {d.replicas} replica(s): {exc}")
            return None
        except SignalError as exc:
            self._metrics.error(exc.kind)
            tracked.state = hold(self._policy(target), tracked.state, d.replicas, self._clock())
            await self._warn(d, tracked, "MetricsUnavailable",
                             f"holding {d.replicas} replica(s): {exc}")
            return None
        except Exception as exc:  # a defect must not stop the pass for every other target
            log.exception("%s/%s: measuring failed", d.namespace, d.name)
            self._metrics.error("data")
            await self._warn(d, tracked, "MetricsUnavailable",
                             f"holding {d.replicas} replica(s): {type(exc).__name__}: {exc}")
            return None

    async def _apply(self, d: DeploymentInfo, tracked: _Tracked, target: ScaleTarget,
                     m: Measurement | SloDecision) -> None:
        if isinstance(m, SloDecision):
            await self._apply_slo(d, tracked, m)
            return
        policy = self._policy(target)
        decision, state = decide(policy, tracked.state, Observation(
            value=m.value, kind=m.kind, current_replicas=d.replicas,
            active=m.active(policy.activation_target), running=m.running), self._clock())
        self._metrics.decision(namespace=d.namespace, deployment=d.name,
                               signal=target.trigger.signal, value=m.value,
                               desired=decision.desired, direction=decision.direction)
        if decision.desired != d.replicas:
            message = describe(target, m.value, m.queue, m.running, decision)
            if not await self._scale(d, decision.desired, message):
                return  # not applied: keep the previous state
            log.info("%s/%s: %s", d.namespace, d.name, message)
        tracked.state = state
        await self._cleared(d, tracked, describe(target, m.value, m.queue, m.running, decision))

    async def _apply_slo(self, d: DeploymentInfo, tracked: _Tracked,
                         decision: SloDecision) -> None:
        """The SLO policy's decision (``scaler.slo_run`` keeps its state): every one
        logged with its arithmetic, a change applied with an Event saying the same."""
        self._metrics.decision(namespace=d.namespace, deployment=d.name, signal="slo",
                               value=decision.desired, desired=decision.desired,
                               direction=decision.direction)
        log.info("%s/%s: slo %s", d.namespace, d.name, decision.reason)
        if (decision.desired != d.replicas
                and not await self._scale(d, decision.desired, f"slo: {decision.reason}")):
            return
        await self._cleared(d, tracked, f"slo: {decision.reason}")

    async def _scale(self, d: DeploymentInfo, desired: int, message: str) -> bool:
        """Set ``d``'s replicas and say why in a Scaled Event; False when the API refused."""
        try:
            await asyncio.to_thread(self._kube.scale, d.namespace, d.name, desired)
        except KubeError as exc:
            self._metrics.error("kubernetes")
            log.warning("fallback loop: %s", exc)
            return False
        await self._event(d, "Scaled", message, warning=False)
        return True

    def _policy(self, target: ScaleTarget) -> Policy:
        s = self._settings
        return Policy(
            target=target.trigger.target, min_replicas=target.min_replicas,
            max_replicas=target.max_replicas, activation_target=target.trigger.activation_target,
            stabilization_window=s.stabilization_window,
            scale_to_zero_cooldown=s.scale_to_zero_cooldown,
            scale_up_period=s.scale_period, scale_down_period=s.scale_period,
            panic_window=s.panic_window)

    async def _warn(self, d: DeploymentInfo, tracked: _Tracked, reason: str,
                    message: str) -> None:
        log.warning("%s/%s: %s", d.namespace, d.name, message)
        if tracked.problem != message:
            tracked.problem, tracked.problem_reason = message, reason
            await self._event(d, reason, message, warning=True)

    async def _cleared(self, d: DeploymentInfo, tracked: _Tracked, decision: str) -> None:
        """A decision was made: a problem recorded before has cleared; say so once."""
        if tracked.problem is None:
            return
        reason = tracked.problem_reason
        tracked.problem, tracked.problem_reason = None, ""
        message = f"measuring again ({reason} has cleared): {decision}"
        log.info("%s/%s: %s", d.namespace, d.name, message)
        await self._event(d, "ValidMetricFound", message, warning=False)

    async def _event(self, d: DeploymentInfo, reason: str, message: str, *,
                     warning: bool) -> None:
        try:
            await asyncio.to_thread(self._kube.event, d, reason=reason, message=message,
                                    warning=warning, instance=self._settings.identity)
        except KubeError as exc:
            self._metrics.error("kubernetes")
            log.warning("fallback loop: %s", exc)


def describe(target: ScaleTarget, value: float, queue: float, running: float,
             decision: Decision) -> str:
    """The Event's message: inputs and decision, one line."""
    t = target.trigger
    notes = f" ({'; '.join(decision.notes)})" if decision.notes else ""
    return (f"{decision.current} -> {decision.desired} replicas: {decision.reason}{notes}. "
            f"model {t.model}, {t.signal} = {value:g} (target {t.target:g} per replica; "
            f"queue {queue:g}, running {running:g}; min {target.min_replicas}, "
            f"max {target.max_replicas}; raw {decision.raw})")
