"""Running the SLO policy for KEDA and the loop: measure, decide, remember the state.

``scaler.slo.decide`` is pure and needs its previous ``SloState``; this keeps
one per scaled object (a ScaledObject for KEDA, a Deployment for the loop),
in memory: a restarted scaler starts afresh (the trend and the scale-down
window refill within their windows, and the capacity starts from the prior).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import replace

from scaler.prometheus import MetricsSource
from scaler.signals import MetadataError, Trigger
from scaler.slo import SloDecision, SloError, SloState, decide
from scaler.slo_signal import slo_load


class SloRunner:
    """``decide`` for ``slo`` triggers, with each scaled object's state."""

    def __init__(self, source: MetricsSource, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._source = source
        self._clock = clock
        self._states: dict[Hashable, SloState] = {}

    async def decide(self, key: Hashable, trigger: Trigger, *,
                     replicas: int | None = None) -> SloDecision:
        """The decision for ``trigger`` now; ``SignalError`` when it cannot be made
        (``MetadataError`` naming the key for a setting the policy cannot work with).

        ``replicas``: the Deployment's count when the caller knows it (the loop);
        otherwise the pods Prometheus sees stand for it (KEDA passes no count).
        """
        assert trigger.slo is not None
        assert trigger.model is not None
        sample = await self._source.slo_sample(trigger.source, trigger.slo.slo.attainment)
        load = slo_load(sample, model=trigger.model, namespace=trigger.namespace)
        if replicas is not None:
            load = replace(load, replicas=replicas)
        try:
            decision, state = decide(trigger.slo, self._states.get(key, SloState()), load,
                                     self._clock())
        except SloError as exc:
            raise MetadataError(exc.key, str(exc).partition(": ")[2]) from None
        self._states[key] = state
        return decision

    def forget(self, key: Hashable) -> None:
        self._states.pop(key, None)
