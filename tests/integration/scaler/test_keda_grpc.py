"""The KEDA external scaler, called as KEDA calls it: a client generated from the proto.

A real Prometheus scrapes a metrics endpoint of this test every second, so the
values every RPC should answer are known. One Prometheus and one scaler serve
the module; tests use their own model names so they do not see each other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.helpers.procs import ProcessGroup
from tests.helpers.prometheus import query, start_prometheus
from tests.helpers.scaler import (
    ScalerProc,
    StaticExporter,
    get_metrics_request,
    scaled_object_ref,
    scaler_stub,
    scrape_config,
    start_scaler,
)
from tests.helpers.wait import wait_until


@pytest.fixture(scope="module")
def scaler(module_procs: ProcessGroup, prom: str) -> ScalerProc:
    return start_scaler(module_procs, prometheus_url=prom,
                        extra_args=["--cache-ttl", "0.5", "--stream-interval", "0.5"])


@pytest.fixture
def stub(scaler: ScalerProc) -> Iterator[Any]:
    with scaler.channel() as channel:
        yield scaler_stub(channel)




def scraped(prom: str, promql: str, expected: float) -> None:
    """Wait until Prometheus holds ``expected`` for ``promql`` (the exporter was set before)."""
    def holds() -> bool:
        result = query(prom, promql)
        return len(result) == 1 and float(result[0]["value"][1]) == expected
    wait_until(holds, f"{promql} == {expected} in Prometheus")


def metric_value(stub: Any, **metadata: str) -> float:
    response = stub.GetMetrics(get_metrics_request(**metadata))
    (value,) = response.metricValues
    return float(value.metricValueFloat)


def rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


# --- values --------------------------------------------------------------------------


def test_queue_is_engine_waiting_plus_gateway_pending(
        stub: Any, exporter: StaticExporter, prom: str) -> None:
    exporter.pod("m-queue", "a", waiting=3, running=1)
    exporter.pod("m-queue", "b", waiting=4, running=2)
    exporter.pending("m-queue", 2)
    exporter.pod("m-queue", "other-ns", namespace="elsewhere", waiting=100)
    scraped(prom, 'sum(brix_gateway_requests_pending{model="m-queue"})', 2)
    scraped(prom, 'sum(brix_engine_requests_waiting{model="m-queue",namespace="default"})', 7)

    response = stub.GetMetrics(get_metrics_request(model="m-queue", target="5",
                                                   scalerAddress="scaler:9100"))
    (value,) = response.metricValues
    assert value.metricValueFloat == 9.0
    assert value.metricValue == 9
    assert value.metricName == "brix-queue-m-queue"
    assert metric_value(stub, model="m-queue", signal="running", target="1") == 3.0


def test_kv_cache_is_the_mean_ratio(stub: Any, exporter: StaticExporter, prom: str) -> None:
    exporter.pod("m-kv", "a", kv_cache=0.2)
    exporter.pod("m-kv", "b", kv_cache=0.6)
    scraped(prom, 'count(brix_engine_kv_cache_usage_ratio{model="m-kv"})', 2)
    value = metric_value(stub, model="m-kv", signal="kv_cache", target="0.5")
    assert value == pytest.approx(0.4)


def test_metric_spec_names_the_metric_and_target(stub: Any) -> None:
    response = stub.GetMetricSpec(scaled_object_ref(model="Llama/3.1 8B", signal="kv_cache",
                                                    target="0.75"))
    (spec,) = response.metricSpecs
    assert spec.targetSizeFloat == 0.75
    assert spec.targetSize == 1
    assert spec.metricName.startswith("brix-kv-cache-llama-3-1-8b-")
    other = stub.GetMetricSpec(scaled_object_ref(model="Llama/3.1 8B", target="2"))
    assert other.metricSpecs[0].metricName != spec.metricName


def test_metrics_accepts_the_name_keda_asks_for(stub: Any, exporter: StaticExporter,
                                                prom: str) -> None:
    exporter.pod("m-name", "a", waiting=1)
    scraped(prom, 'sum(brix_engine_requests_waiting{model="m-name"})', 1)
    for asked in ("brix-queue-m-name", "s0-brix-queue-m-name", ""):
        assert metric_value(stub, model="m-name", target="1", metric_name=asked) == 1.0
    error = rpc_error(lambda: stub.GetMetrics(get_metrics_request(
        model="m-name", target="1", metric_name="brix-running-m-name")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "metricName" in error.details()


def test_no_series_and_no_pods_is_zero(stub: Any) -> None:
    assert metric_value(stub, model="m-never-deployed", target="1") == 0.0
    assert stub.IsActive(scaled_object_ref(model="m-never-deployed", target="1")).result is False


def test_gateway_pending_alone_activates_a_model_at_zero(
        stub: Any, exporter: StaticExporter, prom: str) -> None:
    # The gateway runs in its own namespace; its count still belongs to the model.
    exporter.pending("m-cold", 3, namespace="brix-system")
    scraped(prom, 'sum(brix_gateway_requests_pending{model="m-cold"})', 3)
    assert metric_value(stub, model="m-cold", target="1") == 3.0
    assert stub.IsActive(scaled_object_ref(model="m-cold", target="1")).result is True
    assert stub.IsActive(scaled_object_ref(model="m-cold", target="1",
                                           activationTarget="5")).result is False


def errors_counted(scaler: ScalerProc, kind: str) -> float:
    for line in httpx.get(scaler.http_url + "/metrics").text.splitlines():
        if line.startswith(f'brix_scaler_errors_total{{kind="{kind}"}}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no brix_scaler_errors_total for kind {kind}")


def test_no_series_while_pods_exist_is_an_error(
        stub: Any, exporter: StaticExporter, prom: str, scaler: ScalerProc) -> None:
    exporter.pod("m-blind", "a", waiting=None, running=None, kv_cache=None)
    scraped(prom, 'count(brix_engine_up{model="m-blind"})', 1)
    data_errors = errors_counted(scaler, "data")
    error = rpc_error(lambda: stub.GetMetrics(get_metrics_request(model="m-blind", target="1")))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "brix_engine_requests_waiting" in error.details()
    assert "m-blind" in error.details()
    assert errors_counted(scaler, "data") == data_errors + 1


def test_raw_query(stub: Any, exporter: StaticExporter, prom: str) -> None:
    exporter.pod("m-raw", "a", waiting=5)
    exporter.pod("m-raw", "b", waiting=6)
    scraped(prom, 'sum(brix_engine_requests_waiting{model="m-raw"})', 11)
    q = 'sum(brix_engine_requests_waiting{model="m-raw"})'
    assert metric_value(stub, query=q, target="1") == 11.0
    assert metric_value(stub, query="2 * 3", target="1") == 6.0  # a scalar is one sample

    many = rpc_error(lambda: stub.GetMetrics(get_metrics_request(
        query='brix_engine_requests_waiting{model="m-raw"}', target="1")))
    assert many.code() == grpc.StatusCode.INTERNAL
    assert "exactly one sample" in many.details()

    broken = rpc_error(lambda: stub.GetMetrics(get_metrics_request(query="sum(", target="1")))
    assert broken.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "refused the query" in broken.details()

    nan = rpc_error(lambda: stub.GetMetrics(get_metrics_request(query="0/0", target="1")))
    assert nan.code() == grpc.StatusCode.INTERNAL
    assert "NaN" in nan.details()


# --- activity ------------------------------------------------------------------------


def test_is_active_follows_the_queue_and_running(
        stub: Any, exporter: StaticExporter, prom: str) -> None:
    exporter.pod("m-act", "a", waiting=0, running=0)
    scraped(prom, 'sum(brix_engine_requests_waiting{model="m-act"})', 0)
    ref = scaled_object_ref(model="m-act", target="2", activationTarget="1")
    assert stub.IsActive(ref).result is False
    exporter.pod("m-act", "a", waiting=2, running=0)
    scraped(prom, 'sum(brix_engine_requests_waiting{model="m-act"})', 2)
    wait_until(lambda: stub.IsActive(ref).result is True, "IsActive true")
    exporter.pod("m-act", "a", waiting=0, running=1)
    scraped(prom, 'sum(brix_engine_requests_running{model="m-act"})', 1)
    scraped(prom, 'sum(brix_engine_requests_waiting{model="m-act"})', 0)
    assert stub.IsActive(ref).result is True  # requests in flight keep it active


def test_stream_sends_the_state_at_once_then_changes(
        stub: Any, exporter: StaticExporter, prom: str) -> None:
    exporter.pod("m-stream", "a", waiting=0, running=0)
    scraped(prom, 'count(brix_engine_up{model="m-stream"})', 1)
    streams = [stub.StreamIsActive(scaled_object_ref(name=f"so{i}", model="m-stream",
                                                     target="1"))
               for i in range(3)]
    try:
        for stream in streams:
            assert next(stream).result is False
        exporter.pod("m-stream", "a", waiting=4, running=0)
        for stream in streams:
            assert next(stream).result is True  # blocks until the change
        exporter.pod("m-stream", "a", waiting=0, running=0)
        for stream in streams:
            assert next(stream).result is False
    finally:
        for stream in streams:
            stream.cancel()


def test_a_model_at_zero_wakes_its_stream_despite_a_long_cache(
        exporter: StaticExporter, prom: str, procs: ProcessGroup) -> None:
    # An hour of cache: only the fresh reads of a model without pods can see the change.
    slow_cache = start_scaler(procs, prometheus_url=prom, name="scaler-long-cache",
                              extra_args=["--cache-ttl", "3600", "--stream-interval", "0.5"])
    with slow_cache.channel() as channel:
        stub = scaler_stub(channel)
        stream = stub.StreamIsActive(scaled_object_ref(model="m-wake", target="1"), timeout=60)
        try:
            assert next(stream).result is False
            exporter.pending("m-wake", 2)
            assert next(stream).result is True
        finally:
            stream.cancel()


def test_stream_with_bad_metadata_fails(stub: Any) -> None:
    stream = stub.StreamIsActive(scaled_object_ref(model="m", target="zero"))
    error = rpc_error(lambda: next(stream))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "target" in error.details()


def test_metric_spec_stream_sends_the_spec_at_once(stub: Any) -> None:
    stream = stub.StreamMetricSpec(scaled_object_ref(model="m-spec", target="3"))
    try:
        (spec,) = next(stream).metricSpecs
        assert spec.targetSizeFloat == 3.0
    finally:
        stream.cancel()


# --- bad metadata ----------------------------------------------------------------------


@pytest.mark.parametrize(("metadata", "key"), [
    ({"target": "1"}, "model"),
    ({"model": "m", "query": "up", "target": "1"}, "query"),
    ({"model": "m", "signal": "tokens", "target": "1"}, "signal"),
    ({"model": "m"}, "target"),
    ({"model": "m", "target": "abc"}, "target"),
    ({"model": "m", "target": "0"}, "target"),
    ({"model": "m", "target": "-1"}, "target"),
    ({"model": "m", "target": "1", "activationTarget": "x"}, "activationTarget"),
    ({"model": "m", "target": "1", "prometheusAddress": "ftp://p"}, "prometheusAddress"),
])
def test_bad_metadata_is_invalid_argument_naming_the_key(
        stub: Any, metadata: dict[str, str], key: str) -> None:
    ref = scaled_object_ref(**metadata)
    for call in (lambda: stub.GetMetricSpec(ref), lambda: stub.IsActive(ref),
                 lambda: stub.GetMetrics(get_metrics_request(**metadata))):
        error = rpc_error(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"{key}:" in error.details()


def test_every_key_keda_passes_is_tolerated(stub: Any) -> None:
    response = stub.GetMetricSpec(scaled_object_ref(
        model="m-keys", target="2", scalerAddress="brix-scaler.brix:9100", enableTLS="false",
        caCert="", tlsClientCert="", tlsClientKey="", unsafeSsl="false", somethingNew="x"))
    assert response.metricSpecs[0].targetSizeFloat == 2.0


# --- Prometheus gone ----------------------------------------------------------------


def test_prometheus_stopped_is_an_error_not_zero(
        stub: Any, exporter: StaticExporter, procs: ProcessGroup, tmp_path: Path,
        scaler: ScalerProc) -> None:
    exporter.pod("m-down", "a", waiting=2)
    proc, url = start_prometheus(procs, tmp_path / "prom2", scrape_config(exporter.target))
    scraped(url, 'sum(brix_engine_requests_waiting{model="m-down"})', 2)
    meta = {"model": "m-down", "target": "1", "prometheusAddress": url}
    assert metric_value(stub, **meta) == 2.0
    proc.stop()

    failures: list[grpc.RpcError] = []

    def failed() -> bool:
        try:
            stub.GetMetrics(get_metrics_request(**meta))
        except grpc.RpcError as exc:
            failures.append(exc)
            return True
        return False  # still the cached answer of the last interval
    wait_until(failed, "GetMetrics fails once Prometheus is gone")
    assert failures[0].code() == grpc.StatusCode.UNAVAILABLE
    assert "unreachable" in failures[0].details()
    assert errors_counted(scaler, "prometheus") >= 1
    error = rpc_error(lambda: stub.IsActive(scaled_object_ref(**meta)))
    assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_stream_ends_with_an_error_when_prometheus_is_unreachable(stub: Any) -> None:
    stream = stub.StreamIsActive(scaled_object_ref(
        model="m-gone", target="1", prometheusAddress="http://127.0.0.1:9"))
    error = rpc_error(lambda: next(stream))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "unreachable" in error.details()


# --- serving -------------------------------------------------------------------------


def test_health_and_metrics_endpoints(scaler: ScalerProc, stub: Any) -> None:
    with scaler.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "externalscaler.ExternalScaler"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
    rpc_error(lambda: stub.GetMetricSpec(scaled_object_ref(target="1")))
    assert httpx.get(scaler.http_url + "/healthz").status_code == 200
    text = httpx.get(scaler.http_url + "/metrics").text
    errors = [line for line in text.splitlines()
              if line.startswith('brix_scaler_errors_total{kind="metadata"}')]
    assert errors
    assert float(errors[0].split()[-1]) >= 1
    assert httpx.get(scaler.http_url + "/nope").status_code == 404


def test_many_scaled_objects_cost_one_query_per_model_and_interval(
        exporter: StaticExporter, procs: ProcessGroup, tmp_path: Path) -> None:
    exporter.pod("m-many-0", "a", waiting=1)
    exporter.pod("m-many-1", "a", waiting=2)
    _, url = start_prometheus(procs, tmp_path / "prom", scrape_config(exporter.target))
    scraped(url, 'count(brix_engine_up{model=~"m-many-.*"})', 2)
    own = start_scaler(procs, prometheus_url=url, name="scaler-cache",
                       extra_args=["--cache-ttl", "3600"])

    def queries() -> float:  # Prometheus' own count of the query API calls
        text = httpx.get(f"{url}/metrics").text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("prometheus_http_requests_total{")
                   and 'handler="/api/v1/query"' in line)

    before = queries()
    with own.channel() as channel:
        stub = scaler_stub(channel)
        calls = [stub.GetMetrics.future(get_metrics_request(
            name=f"so-{i}", model=f"m-many-{i % 2}", target="1",
            signal=("queue", "running", "kv_cache")[i % 3])) for i in range(200)]
        values = {(c.result().metricValues[0].metricName, c.result().metricValues[0]
                   .metricValueFloat) for c in calls}
        stub.IsActive(scaled_object_ref(model="m-many-0", target="1"))
    assert ("brix-queue-m-many-0", 1.0) in values
    assert queries() - before == 2  # one per model, however many objects and signals
