"""The ``slo`` signal through KEDA's gRPC API: the scaler answers the SLO policy's replicas.

A real Prometheus scrapes an exporter of this test that serves a model's
traffic as the gateway and a sidecar would (request and token counters, the
TTFT and TPOT histograms, queue gauges) while a thread keeps the traffic flowing at a
known rate; the scaler, a real process, is asked as KEDA asks.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from scaler.slo_signal import read_slo_sample, slo_load, slo_query
from tests.helpers.procs import ProcessGroup
from tests.helpers.prometheus import query, start_prometheus
from tests.helpers.scaler import (
    ScalerProc,
    get_metrics_request,
    scaled_object_ref,
    scaler_stub,
    scrape_config,
    start_scaler,
)
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.integration

MODEL = "m-slo"
RATE = 10.0  # requests/s the traffic thread sends
PROMPT, OUTPUT = 100, 50  # tokens per request
TPOT = 0.04  # seconds per output token of every finished request


class Traffic:
    """One engine pod of ``model`` and the gateway in front of it, serving ``RATE``/s,
    every first token ``ttft`` seconds after arrival."""

    def __init__(self, ttft: float, *, model: str = MODEL, namespace: str = "default") -> None:
        self.registry = CollectorRegistry()
        labels = ["model", "namespace", "pod"]
        r = self.registry
        self.requests = Counter("brix_gateway_requests", "answered", labels, registry=r)
        self.prompt = Counter("brix_engine_prompt_tokens", "prompt", labels, registry=r)
        self.output = Counter("brix_engine_generation_tokens", "output", labels, registry=r)
        self.ttft = Histogram("brix_engine_time_to_first_token_seconds", "ttft", labels,
                              buckets=(0.25, 0.5, 1, 2, 4, 8), registry=r)
        # vLLM's bounds around TPOT (0.025, 0.05): the quantile lands in that bucket.
        self.tpot = Histogram("brix_engine_time_per_output_token_seconds", "tpot", labels,
                              buckets=(0.01, 0.025, 0.05, 0.075, 0.1), registry=r)
        gauges = {name: Gauge(name, name, labels, registry=r) for name in (
            "brix_engine_up", "brix_engine_requests_waiting", "brix_engine_requests_running",
            "brix_gateway_requests_pending")}
        pod = {"model": model, "namespace": namespace, "pod": "engine-0"}
        gauges["brix_engine_up"].labels(**pod).set(1)
        gauges["brix_engine_requests_waiting"].labels(**pod).set(0)
        gauges["brix_engine_requests_running"].labels(**pod).set(2)
        self._pod = pod
        self._first_token = ttft
        self._stop = threading.Event()
        self._server, self._http = start_http_server(0, addr="127.0.0.1", registry=r)
        self.target = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        gateway = {**self._pod, "pod": "gateway-0"}
        last = time.monotonic()
        while not self._stop.wait(0.1):
            # By the time passed, not the ticks: the rate holds on a loaded machine.
            now = time.monotonic()
            done, last = RATE * (now - last), now
            self.requests.labels(**gateway).inc(done)
            self.prompt.labels(**self._pod).inc(done * PROMPT)
            self.output.labels(**self._pod).inc(done * OUTPUT)
            self.ttft.labels(**self._pod).observe(self._first_token)
            self.tpot.labels(**self._pod).observe(TPOT)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def traffic() -> Iterator[Traffic]:
    # First tokens at 3 s miss a 2 s target: the capacity is not learnt upwards,
    # so the answer is the prior's arithmetic.
    t = Traffic(ttft=3.0)
    try:
        yield t
    finally:
        t.close()


@pytest.fixture(scope="module")
def prom(module_procs: ProcessGroup, traffic: Traffic,
         tmp_path_factory: pytest.TempPathFactory) -> str:
    _, url = start_prometheus(module_procs, tmp_path_factory.mktemp("prom"),
                              scrape_config(traffic.target))
    return url


@pytest.fixture(scope="module")
def scaler(module_procs: ProcessGroup, prom: str) -> ScalerProc:
    return start_scaler(module_procs, prometheus_url=prom, extra_args=["--cache-ttl", "0.5"])


@pytest.fixture
def stub(scaler: ScalerProc) -> Iterator[Any]:
    with scaler.channel() as channel:
        yield scaler_stub(channel)




def measured_rate(prom: str, model: str = MODEL) -> float:
    result = query(prom, f'sum(rate(brix_gateway_requests_total{{model="{model}"}}[1m]))')
    return float(result[0]["value"][1]) if result else 0.0


def desired(stub: Any, name: str, **metadata: str) -> int:
    response = stub.GetMetrics(get_metrics_request(name=name, model=MODEL, signal="slo",
                                                   **metadata))
    (value,) = response.metricValues
    assert value.metricValue == value.metricValueFloat
    return int(value.metricValue)


def rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def some_traffic(prom: str) -> None:
    # rate() over a minute ramps up over the first minute of samples; the answers
    # are compared with the rate Prometheus gives around them, so a part will do.
    wait_until(lambda: measured_rate(prom) > 3, "a request rate in Prometheus", timeout=60)


def test_answers_the_slo_policys_replicas(stub: Any, prom: str) -> None:
    some_traffic(prom)
    # One replica serves 1 request/s, planned at half: a rate r needs ceil(2 r) replicas.
    before = measured_rate(prom)
    low = desired(stub, "so-1", ttft="2", initialCapacity="1", utilization="0.5",
                  maxReplicas="100", podStartSeconds="0")
    after = measured_rate(prom)
    assert math.ceil(2 * before) - 1 <= low <= math.ceil(2 * after) + 1, (before, low, after)
    # Twice the capacity: half the replicas.
    high = desired(stub, "so-2", ttft="2", initialCapacity="2", utilization="0.5",
                   maxReplicas="100", podStartSeconds="0")
    assert 1.6 <= low / high <= 2.5, (low, high)
    # Bounded by maxReplicas.
    assert desired(stub, "so-3", ttft="2", initialCapacity="1", maxReplicas="3") == 3


def test_a_profile_gives_the_capacity_from_the_measured_lengths(stub: Any, prom: str) -> None:
    some_traffic(prom)
    # 1000 prompt tokens/s of prefill and a decode of 1 token per 10 ms for 1 sequence:
    # 100 prompt + 50 output tokens take 0.1 + 0.5 s, so one replica serves 1/0.6 requests/s.
    profile = ('{"prefill_tokens_per_s": 1000, "decode_ms_per_token": 10, '
               '"decode_ms_per_token_per_seq": 0, "max_num_seqs": 1}')
    before = measured_rate(prom)
    value = desired(stub, "so-profile", ttft="2", profile=profile, utilization="1",
                    maxReplicas="100", podStartSeconds="0")
    after = measured_rate(prom)
    assert math.ceil(0.6 * before) - 1 <= value <= math.ceil(0.6 * after) + 1, (
        before, value, after)


def test_the_query_reads_the_engines_ttft_and_tpot_quantiles_from_prometheus(prom: str) -> None:
    some_traffic(prom)
    # The scaler's own PromQL, asked of the real Prometheus that scrapes the traffic.
    sample = read_slo_sample(query(prom, slo_query("default", MODEL, 0.99)), model=MODEL)
    assert sample.ttft is not None
    assert 2 < sample.ttft <= 4  # every first token at 3 s
    assert sample.tpot is not None
    assert 0.025 < sample.tpot <= 0.05  # every TPOT 0.04 s
    load = slo_load(sample, model=MODEL, namespace="default")
    assert load.tpot == sample.tpot
    assert load.prompt_tokens == pytest.approx(PROMPT, rel=0.05)
    assert load.output_tokens == pytest.approx(OUTPUT, rel=0.05)


def test_the_spec_asks_for_an_average_of_one(stub: Any) -> None:
    spec = stub.GetMetricSpec(scaled_object_ref(model=MODEL, signal="slo", ttft="2",
                                                initialCapacity="1"))
    (metric,) = spec.metricSpecs
    assert metric.targetSizeFloat == 1.0
    assert metric.metricName == f"brix-slo-{MODEL}"


@pytest.mark.parametrize(("metadata", "key"), [
    ({"initialCapacity": "1"}, "ttft"),
    ({"ttft": "0", "initialCapacity": "1"}, "ttft"),
    ({"ttft": "-2", "initialCapacity": "1"}, "ttft"),
    ({"ttft": "fast", "initialCapacity": "1"}, "ttft"),
    ({"ttft": "2", "tpot": "0", "initialCapacity": "1"}, "tpot"),
    ({"ttft": "2", "attainment": "1.5", "initialCapacity": "1"}, "attainment"),
    ({"ttft": "2", "attainment": "0", "initialCapacity": "1"}, "attainment"),
    ({"ttft": "2"}, "initialCapacity"),
    ({"ttft": "2", "initialCapacity": "0"}, "initialCapacity"),
    ({"ttft": "2", "profile": "{not json"}, "profile"),
    ({"ttft": "2", "profile": '{"prefill_tokens_per_s": 1}'}, "profile"),
    ({"ttft": "2", "initialCapacity": "1", "podStartSeconds": "-1"}, "podStartSeconds"),
    ({"ttft": "2", "initialCapacity": "1", "maxReplicas": "0"}, "maxReplicas"),
    ({"ttft": "2", "initialCapacity": "1", "utilization": "2"}, "utilization"),
    ({"ttft": "2", "initialCapacity": "1", "scaleDownTolerance": "1"}, "scaleDownTolerance"),
    ({"ttft": "2", "initialCapacity": "1", "scaleDownTolerance": "-0.5"},
     "scaleDownTolerance"),
    ({"ttft": "2", "initialCapacity": "1", "scaleDownWhileRising": "maybe"},
     "scaleDownWhileRising"),
])
def test_bad_metadata_is_invalid_argument_naming_the_key(
        stub: Any, metadata: dict[str, str], key: str) -> None:
    error = rpc_error(lambda: stub.GetMetrics(get_metrics_request(
        model=MODEL, signal="slo", **metadata)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{key}:" in (error.details() or "")


def test_a_model_at_zero_with_nothing_waiting_stays_at_zero(stub: Any) -> None:
    response = stub.GetMetrics(get_metrics_request(model="m-slo-never", signal="slo",
                                                   ttft="2", initialCapacity="1"))
    (value,) = response.metricValues
    assert value.metricValueFloat == 0.0


def test_a_lower_answer_waits_out_the_policys_scale_down_window(stub: Any, prom: str) -> None:
    # One engine pod serves, as when the pods the HPA was told to add are still
    # starting. The policy asked for many; then (a capacity ten times higher:
    # demand now needs one) the answer must hold for the policy's window, not
    # read as "up from the one pod" and reach the HPA at once.
    some_traffic(prom)
    settings = {"ttft": "2", "utilization": "0.5", "maxReplicas": "100",
                "podStartSeconds": "0"}
    many = desired(stub, "so-window", initialCapacity="1", **settings)
    assert many > 2
    assert desired(stub, "so-window", initialCapacity="100", **settings) == many
    # Without a window the same answer drops at once: the hold above is the window's.
    assert desired(stub, "so-nowindow", initialCapacity="1", scaleDownWindow="0",
                   **settings) > 2
    assert desired(stub, "so-nowindow", initialCapacity="100", scaleDownWindow="0",
                   **settings) == 1
    # A scale-down tolerance of 0.99 holds any step that keeps a replica of a hundred.
    held = desired(stub, "so-tolerant", initialCapacity="1", scaleDownWindow="0",
                   scaleDownTolerance="0.99", **settings)
    assert held > 2
    assert desired(stub, "so-tolerant", initialCapacity="100", scaleDownWindow="0",
                   scaleDownTolerance="0.99", **settings) == held
