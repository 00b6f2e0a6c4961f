"""Running the SLO policy for KEDA and the loop: measure, decide, remember the state.

``scaler.slo.decide`` is pure and needs its previous ``SloState``; this keeps
one per scaled object (a ScaledObject for KEDA, a Deployment for the loop),
in memory: a restarted scaler starts afresh (the trend and the scale-down
window refill within their windows, and the capacity starts from the prior).

The replicas a decision starts from. The loop passes the Deployment's spec
replicas. KEDA's GetMetrics carries no replica count, and the pods Prometheus
sees serving are not it: while new pods start (a minute or more) or after a
pod failed, they are fewer than the Deployment has, so a lower desired count
would read as "up" from the pods and reach the HPA at once, skipping the
policy's scale-down window (the ScaledObject's own HPA window is 15 s). So for
KEDA the count is the larger of the pods serving and the last answer given
for that ScaledObject (what the HPA, at ``AverageValue`` 1, set the
Deployment to), while that answer is fresh (``answer_ttl``, default 120 s:
the HPA asks every 15 s; an answer that old means the HPA stopped asking,
e.g. at zero, and the pods stand in again).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import replace

from scaler.prometheus import MetricsSource
from scaler.signals import MetadataError, Trigger
from scaler.slo import SloDecision, SloError, SloState, decide
from scaler.slo_signal import slo_load

DEFAULT_ANSWER_TTL = 120.0


def start_replicas(serving: int, answered: tuple[float, int] | None, now: float,
                   ttl: float) -> int:
    """The replicas a KEDA decision starts from: the pods ``serving``, or the last
    answer ``answered`` (when, desired) if higher and at most ``ttl`` seconds old."""
    if answered is None or now - answered[0] > ttl:
        return serving
    return max(serving, answered[1])


class SloRunner:
    """``decide`` for ``slo`` triggers, with each scaled object's state."""

    def __init__(self, source: MetricsSource, *,
                 clock: Callable[[], float] = time.monotonic,
                 answer_ttl: float = DEFAULT_ANSWER_TTL) -> None:
        if not answer_ttl > 0:
            raise ValueError(f"answer_ttl must be > 0, got {answer_ttl!r}")
        self._source = source
        self._clock = clock
        self._answer_ttl = answer_ttl
        self._states: dict[Hashable, SloState] = {}
        self._answers: dict[Hashable, tuple[float, int]] = {}

    async def decide(self, key: Hashable, trigger: Trigger, *,
                     replicas: int | None = None) -> SloDecision:
        """The decision for ``trigger`` now; ``SignalError`` when it cannot be made
        (``MetadataError`` naming the key for a setting the policy cannot work with).

        ``replicas``: the Deployment's count when the caller knows it (the loop);
        otherwise (KEDA) the larger of the pods Prometheus sees serving and this
        key's last answer while it is fresh (see the module's docstring).
        """
        assert trigger.slo is not None
        assert trigger.model is not None
        sample = await self._source.slo_sample(trigger.source, trigger.slo.slo.attainment)
        load = slo_load(sample, model=trigger.model, namespace=trigger.namespace)
        now = self._clock()
        if replicas is None:
            replicas = start_replicas(load.replicas, self._answers.get(key), now,
                                      self._answer_ttl)
        load = replace(load, replicas=replicas)
        try:
            decision, state = decide(trigger.slo, self._states.get(key, SloState()), load, now)
        except SloError as exc:
            raise MetadataError(exc.key, str(exc).partition(": ")[2]) from None
        self._states[key] = state
        self._answers[key] = (now, decision.desired)
        return decision

    def forget(self, key: Hashable) -> None:
        self._states.pop(key, None)
        self._answers.pop(key, None)

    def clear(self) -> None:
        """Forget every scaled object (the loop, when it stops leading)."""
        self._states.clear()
        self._answers.clear()
