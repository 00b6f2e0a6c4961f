"""The gRPC servicer forgets a ScaledObject KEDA stopped calling about.

KEDA has no call for a deleted ScaledObject; the servicer keeps what it learnt
per ScaledObject (the ``slo`` policy's state, its ``brix_scaler_*`` series)
only while KEDA keeps calling about it or holds a stream open for it. The
servicer's RPC methods are called in this process with a clock of the test's;
Prometheus is replaced by fixed answers: what is under test is the servicer's
memory, not the query (tests/integration/scaler covers that).
"""

from __future__ import annotations

from typing import Any, NoReturn

import pytest

from scaler.keda import ExternalScaler
from scaler.metrics import ScalerMetrics
from scaler.prometheus import MetricsSource
from scaler.signals import ModelSample, SourceKey
from scaler.slo_signal import SloSample
from tests.helpers.scaler import get_metrics_request, scaled_object_ref

pytestmark = pytest.mark.unit

# 10 requests/s through one pod, first tokens at 1 s: a 2 s target is met, so the
# policy learns its capacity upwards from the 1/s prior decision by decision.
MET = SloSample(rate=10.0, ttft=1.0, waiting=0.0, pending=0.0, running=2.0, pods=1.0)
SLO = {"model": "m", "signal": "slo", "ttft": "2", "utilization": "0.5",
       "initialCapacity": "1", "maxReplicas": "100", "podStartSeconds": "0"}
FORGET_AFTER = 600.0


class Answers(MetricsSource):
    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9")

    async def slo_sample(self, key: SourceKey, attainment: float, *,
                         max_age: float | None = None) -> SloSample:
        return MET

    async def model_sample(self, key: SourceKey, *,
                           max_age: float | None = None) -> ModelSample:
        return ModelSample(waiting=0.0, pending=0.0, running=2.0, pods=1.0)


class Context:
    async def abort(self, code: Any, details: str) -> NoReturn:
        raise AssertionError(f"aborted: {code}: {details}")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def servicer(clock: Clock) -> tuple[ExternalScaler, ScalerMetrics]:
    metrics = ScalerMetrics()
    return ExternalScaler(Answers(), metrics, forget_after=FORGET_AFTER, clock=clock), metrics


async def desired(scaler: ExternalScaler, name: str) -> int:
    response = await scaler.GetMetrics(get_metrics_request(name=name, namespace="ns", **SLO),
                                       Context())  # type: ignore[arg-type]
    (value,) = response.metricValues
    return int(value.metricValue)


def series(metrics: ScalerMetrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(
        "brix_scaler_desired_replicas", {"namespace": "ns", "deployment": name})


async def learn(scaler: ExternalScaler, clock: Clock, name: str) -> int:
    """The HPA asks every 15 s for five minutes; the first answer."""
    first = await desired(scaler, name)
    for _ in range(20):
        clock.now += 15
        await desired(scaler, name)
    return first


async def test_after_a_silence_longer_than_the_limit_it_decides_afresh() -> None:
    clock = Clock()
    scaler, _ = servicer(clock)
    first = await learn(scaler, clock, "so")
    clock.now += FORGET_AFTER + 1  # deleted, then created again under the same name
    assert await desired(scaler, "so") == first


async def test_calls_about_it_keep_what_it_learnt() -> None:
    # The control of the test above: the same silence for GetMetrics, but KEDA
    # asks for the spec meanwhile, so the learnt capacity stands (a lower answer).
    clock = Clock()
    scaler, _ = servicer(clock)
    first = await learn(scaler, clock, "so")
    for _ in range(round((FORGET_AFTER + 1) / 30)):
        clock.now += 30
        await scaler.GetMetricSpec(scaled_object_ref(name="so", namespace="ns", **SLO),
                                   Context())  # type: ignore[arg-type]
    clock.now += 1
    assert await desired(scaler, "so") < first


async def test_a_deleted_scaledobjects_series_go_once_others_are_asked_about() -> None:
    clock = Clock()
    scaler, metrics = servicer(clock)
    await desired(scaler, "gone")
    await desired(scaler, "kept")
    assert series(metrics, "gone") is not None
    clock.now += FORGET_AFTER
    await desired(scaler, "kept")
    assert series(metrics, "gone") is not None  # at the limit itself: kept
    clock.now += 1
    await desired(scaler, "kept")
    assert series(metrics, "gone") is None
    assert series(metrics, "kept") is not None


async def test_an_open_stream_keeps_it_until_it_closes() -> None:
    clock = Clock()
    scaler, metrics = servicer(clock)
    stream = scaler.StreamIsActive(scaled_object_ref(name="pushed", namespace="ns", **SLO),
                                   Context())  # type: ignore[arg-type]
    try:
        assert (await anext(stream)).result  # two running: active
        await desired(scaler, "pushed")
        clock.now += 3 * FORGET_AFTER
        await desired(scaler, "other")
        assert series(metrics, "pushed") is not None
    finally:
        await stream.aclose()
        await scaler.close()
    clock.now += FORGET_AFTER + 1
    await desired(scaler, "other")
    assert series(metrics, "pushed") is None
