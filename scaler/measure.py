"""A trigger's measurement: its signal value and the activity inputs, from one query."""

from __future__ import annotations

from dataclasses import dataclass

from scaler.policy import SignalKind, is_active
from scaler.prometheus import MetricsSource
from scaler.signals import ModelSample, Trigger, queue_and_running, signal_value

Raw = ModelSample | float


@dataclass(frozen=True, slots=True)
class Measurement:
    """What a trigger reads: the value KEDA's HPA divides by the target, and activity."""

    value: float
    queue: float
    running: float
    kind: SignalKind

    def active(self, activation_target: float) -> bool:
        return is_active(queue=self.queue, running=self.running,
                         activation_target=activation_target)


def from_raw(trigger: Trigger, raw: Raw) -> Measurement:
    """Interpret a source's answer for ``trigger`` (pure; ``DataError`` when unusable)."""
    if isinstance(raw, ModelSample):
        assert trigger.model is not None
        where = {"model": trigger.model, "namespace": trigger.namespace}
        value = signal_value(raw, trigger.signal, **where)
        queue, running = queue_and_running(raw, **where)
        kinds: dict[str, SignalKind] = {"kv_cache": "average", "queue": "queue"}
        kind = kinds.get(trigger.signal, "total")
        return Measurement(value=value, queue=queue, running=running, kind=kind)
    return Measurement(value=raw, queue=raw, running=0.0, kind="total")


async def fetch_raw(source: MetricsSource, trigger: Trigger, *,
                    max_age: float | None = None) -> Raw:
    """The (cached) answer of the one query behind ``trigger``."""
    key = trigger.source
    if key.query is not None:
        return await source.query_value(key, max_age=max_age)
    return await source.model_sample(key, max_age=max_age)


async def measure(source: MetricsSource, trigger: Trigger) -> Measurement:
    return from_raw(trigger, await fetch_raw(source, trigger))
