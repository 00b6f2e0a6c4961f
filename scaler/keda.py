"""The KEDA external scaler service (``externalscaler.ExternalScaler``) over gRPC.

KEDA calls it with a ``ScaledObjectRef`` whose ``scalerMetadata`` is the
trigger's metadata (see ``scaler.signals.parse_trigger``). Answers come from
Prometheus through the shared cache; a signal that cannot be measured is a
gRPC error (so KEDA's ``fallback`` engages), never a silent zero:

    bad metadata, a query Prometheus refuses        INVALID_ARGUMENT
    Prometheus unreachable or failing, no series    UNAVAILABLE
    NaN, a raw query with several samples, other    INTERNAL

``StreamIsActive`` evaluates every ``stream_interval`` seconds, one shared
evaluation per model; a model with no pods reads Prometheus afresh each time
(activation from zero is quick), one with pods uses the cached answer.

KEDA never says a ScaledObject was deleted (the protocol has no such call):
what is kept per ScaledObject (the SLO policy's state, its ``brix_scaler_*``
series) is forgotten once KEDA has not called about it for ``forget_after``
seconds and holds no stream open for it (``scaler.seen``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Hashable
from typing import NoReturn

import grpc

from scaler._proto import externalscaler_pb2 as pb
from scaler._proto import externalscaler_pb2_grpc as pb_grpc
from scaler.feeds import Feeds
from scaler.measure import Raw, fetch_raw, from_raw, measure
from scaler.metrics import ScalerMetrics
from scaler.prometheus import MetricsSource
from scaler.seen import DEFAULT_FORGET_AFTER, LastSeen
from scaler.signals import MetadataError, ModelSample, SignalError, Trigger, parse_trigger
from scaler.slo_run import SloRunner

log = logging.getLogger(__name__)

_STATUS = {
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "internal": grpc.StatusCode.INTERNAL,
}


class ExternalScaler(pb_grpc.ExternalScalerServicer):
    """IsActive, StreamIsActive, GetMetricSpec, GetMetrics (and StreamMetricSpec)."""

    def __init__(self, source: MetricsSource, metrics: ScalerMetrics, *,
                 stream_interval: float = 1.5, forget_after: float = DEFAULT_FORGET_AFTER,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._source = source
        self._metrics = metrics
        self._stream_interval = stream_interval
        self._feeds: Feeds[Raw] = Feeds(stream_interval)
        self._clock = clock
        self._slo = SloRunner(source, clock=clock)
        self._seen: LastSeen[tuple[str, str]] = LastSeen(forget_after)
        self._slo_keys: dict[tuple[str, str], set[Hashable]] = {}

    async def close(self) -> None:
        await self._feeds.close()

    @property
    def feeds(self) -> Feeds[Raw]:
        return self._feeds

    # --- helpers -----------------------------------------------------------

    @staticmethod
    def _object(ref: pb.ScaledObjectRef) -> tuple[str, str]:
        return ref.namespace or "default", ref.name

    def _heard(self, ref: pb.ScaledObjectRef) -> None:
        """KEDA called about ``ref`` now; forget the ScaledObjects it stopped calling about."""
        now = self._clock()
        self._expire(now)  # first: one back after a longer silence starts afresh too
        self._seen.touch(self._object(ref), now)

    def _expire(self, now: float) -> None:
        for namespace, name in self._seen.expire(now):
            for key in self._slo_keys.pop((namespace, name), ()):
                self._slo.forget(key)
            self._metrics.forget(namespace=namespace, deployment=name)
            log.info("ScaledObject %s/%s: no call for %gs: its state is forgotten",
                     namespace, name, self._seen.forget_after)

    async def _trigger(self, ref: pb.ScaledObjectRef,
                       context: grpc.aio.ServicerContext[object, object]) -> Trigger:
        try:
            return parse_trigger(dict(ref.scalerMetadata), ref.namespace)
        except MetadataError as exc:
            self._metrics.error("metadata")
            await self._abort(context, exc, ref)

    async def _abort(self, context: grpc.aio.ServicerContext[object, object],
                     exc: SignalError, ref: pb.ScaledObjectRef) -> NoReturn:
        if not isinstance(exc, MetadataError):
            self._metrics.error(exc.kind)
        where = f"ScaledObject {ref.namespace or 'default'}/{ref.name or '?'}"
        log.warning("%s: %s", where, exc)
        await context.abort(_STATUS[exc.code], f"{where}: {exc}")
        raise AssertionError("unreachable: abort raises")  # pragma: no cover

    # --- RPCs --------------------------------------------------------------

    async def IsActive(self, request: pb.ScaledObjectRef,
                       context: grpc.aio.ServicerContext[object, object]) -> pb.IsActiveResponse:
        self._heard(request)
        trigger = await self._trigger(request, context)
        try:
            m = await measure(self._source, trigger)
        except SignalError as exc:
            await self._abort(context, exc, request)
        return pb.IsActiveResponse(result=m.active(trigger.activation_target))

    async def StreamIsActive(
        self, request: pb.ScaledObjectRef,
        context: grpc.aio.ServicerContext[object, object],
    ) -> AsyncIterator[pb.IsActiveResponse]:
        self._heard(request)
        trigger = await self._trigger(request, context)
        previous: list[Raw] = []

        async def fetch() -> Raw:
            # A model without pods is read afresh every stream interval, so that it
            # comes back from zero quickly; one with pods costs the cached query.
            cold = not previous or (isinstance(previous[0], ModelSample)
                                    and not previous[0].has_pods)
            raw = await fetch_raw(self._source, trigger,
                                  max_age=self._stream_interval if cold else None)
            previous[:] = [raw]
            return raw

        last: bool | None = None
        self._seen.opened(self._object(request), self._clock())
        try:
            async with self._feeds.listen(trigger.source, fetch) as feed:
                async for outcome in feed.updates():
                    if outcome.error is not None:
                        await self._abort(context, outcome.error, request)
                    assert outcome.value is not None
                    try:
                        active = from_raw(trigger, outcome.value).active(
                            trigger.activation_target)
                    except SignalError as exc:
                        await self._abort(context, exc, request)
                    if active != last:
                        last = active
                        yield pb.IsActiveResponse(result=active)
        finally:
            self._seen.closed(self._object(request), self._clock())

    async def GetMetricSpec(
        self, request: pb.ScaledObjectRef,
        context: grpc.aio.ServicerContext[object, object],
    ) -> pb.GetMetricSpecResponse:
        self._heard(request)
        trigger = await self._trigger(request, context)
        return _spec(trigger)

    async def StreamMetricSpec(
        self, request: pb.ScaledObjectRef,
        context: grpc.aio.ServicerContext[object, object],
    ) -> AsyncIterator[pb.GetMetricSpecResponse]:
        # The spec depends on the metadata alone, which a stream cannot change:
        # send it at once, then hold the stream open until KEDA closes it.
        self._heard(request)
        trigger = await self._trigger(request, context)
        yield _spec(trigger)
        await asyncio.Event().wait()

    async def GetMetrics(
        self, request: pb.GetMetricsRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> pb.GetMetricsResponse:
        ref = request.scaledObjectRef
        self._heard(ref)
        trigger = await self._trigger(ref, context)
        name = trigger.metric_name
        asked = _strip_index(request.metricName)
        if asked and asked != name:
            self._metrics.error("metadata")
            await self._abort(context, MetadataError(
                "metricName", f"{request.metricName!r} is not this trigger's metric; "
                f"GetMetricSpec names it {name!r}"), ref)
        if trigger.slo is not None:
            value = await self._slo_desired(trigger, ref, context)
            return pb.GetMetricsResponse(metricValues=[pb.MetricValue(
                metricName=name, metricValue=value, metricValueFloat=float(value))])
        try:
            m = await measure(self._source, trigger)
        except SignalError as exc:
            await self._abort(context, exc, ref)
        return pb.GetMetricsResponse(metricValues=[pb.MetricValue(
            metricName=name, metricValue=round(m.value), metricValueFloat=m.value)])


    async def _slo_desired(self, trigger: Trigger, ref: pb.ScaledObjectRef,
                           context: grpc.aio.ServicerContext[object, object]) -> int:
        """The SLO policy's replicas for this ScaledObject: with ``metricType:
        AverageValue`` and target 1 the HPA's ``ceil(value / 1)`` reproduces it."""
        namespace = ref.namespace or "default"
        key = (namespace, ref.name, trigger.metric_name)
        self._slo_keys.setdefault((namespace, ref.name), set()).add(key)
        try:
            decision = await self._slo.decide(key, trigger)
        except SignalError as exc:
            if isinstance(exc, MetadataError):
                self._metrics.error("metadata")
            await self._abort(context, exc, ref)
        log.info("ScaledObject %s/%s: %s", namespace, ref.name, decision.reason)
        self._metrics.decision(namespace=namespace, deployment=ref.name, signal="slo",
                               value=decision.desired, desired=decision.desired,
                               direction=decision.direction)
        return decision.desired


def _spec(trigger: Trigger) -> pb.GetMetricSpecResponse:
    return pb.GetMetricSpecResponse(metricSpecs=[pb.MetricSpec(
        metricName=trigger.metric_name,
        targetSize=max(1, math.ceil(trigger.target)),
        targetSizeFloat=trigger.target,
    )])


def _strip_index(metric_name: str) -> str:
    """KEDA names the HPA's metric ``s<index>-<name>``; accept either form."""
    head, sep, rest = metric_name.partition("-")
    if sep and head[:1] == "s" and head[1:].isdigit():
        return rest
    return metric_name
