"""The fallback loop on signal slo: annotations in, the SLO policy's replicas out.

localkube (without its node) holds the Deployments; a real Prometheus scrapes
this test's traffic exporter (``test_slo_keda.Traffic``); the scaler is a real
process in loop mode.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from brix.contract import (
    AUTOSCALE_ANNOTATION,
    AUTOSCALE_MAX_ANNOTATION,
    AUTOSCALE_MIN_ANNOTATION,
    AUTOSCALE_SIGNAL_ANNOTATION,
    MODEL_LABEL,
)
from tests.helpers.procs import ProcessGroup
from tests.helpers.prometheus import start_prometheus
from tests.helpers.scaler import scrape_config
from tests.helpers.wait import wait_until
from tests.integration.scaler.test_fallback_loop import (
    events,
    loop_scaler,
    replicas,
    scaler_metric,
)
from tests.integration.scaler.test_slo_keda import Traffic, measured_rate

pytestmark = pytest.mark.integration

NAMESPACE = "slo-loop"
MODEL = "m-slo-loop"


@pytest.fixture(scope="module")
def traffic() -> Any:
    t = Traffic(ttft=3.0, model=MODEL, namespace=NAMESPACE)  # misses 2 s: no learning up
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


def slo_deployment(api: client.ApiClient, namespace: str, name: str,
                   settings: dict[str, str], *, replicas: int = 1) -> None:
    client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    annotations = {AUTOSCALE_ANNOTATION: "true", AUTOSCALE_SIGNAL_ANNOTATION: "slo",
                   AUTOSCALE_MIN_ANNOTATION: "1", AUTOSCALE_MAX_ANNOTATION: "60", **settings}
    labels = {MODEL_LABEL: MODEL, "app": name}
    client.AppsV1Api(api).create_namespaced_deployment(namespace, {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                     {"name": "engine", "image": "brix/engine:test"}]}}},
    })


def test_scales_to_the_policys_replicas_and_says_why(
        module_procs: ProcessGroup, api: client.ApiClient, kubeconfig: Path,
        prom: str) -> None:
    slo_deployment(api, NAMESPACE, "llm", {
        "brix.dev/autoscale-ttft": "2", "brix.dev/autoscale-initial-capacity": "1",
        "brix.dev/autoscale-utilization": "0.5", "brix.dev/autoscale-pod-start-seconds": "0"})
    wait_until(lambda: measured_rate(prom, MODEL) > 3, "a request rate in Prometheus", timeout=60)
    scaler = loop_scaler(module_procs, prom=prom, kubeconfig=kubeconfig, namespace=NAMESPACE)
    # One replica serves 1 request/s planned at half: a rate r needs ceil(2 r).
    wait_until(lambda: replicas(api, NAMESPACE, "llm") >= 6, "a scale-up", timeout=40)
    now, rate = replicas(api, NAMESPACE, "llm"), measured_rate(prom, MODEL)
    assert now <= math.ceil(2 * rate) + 1, (now, rate)
    scaled = [e for e in events(api, NAMESPACE, "llm") if e.reason == "Scaled"]
    assert scaled, "no Scaled event"
    message = scaled[-1].message
    assert message.startswith("slo: 1 -> "), message
    for part in ("demand", "forecast", "capacity 1/s x 0.5", "ceil("):
        assert part in message, message
    wait_until(lambda: scaler_metric(scaler, "brix_scaler_desired_replicas",
                                     namespace=NAMESPACE, deployment="llm") is not None,
               "brix_scaler_desired_replicas")
    assert scaler_metric(scaler, "brix_scaler_decisions_total", namespace=NAMESPACE,
                         deployment="llm", direction="up") == pytest.approx(len(scaled))


@pytest.mark.parametrize(("settings", "named"), [
    ({"brix.dev/autoscale-initial-capacity": "1"}, "brix.dev/autoscale-ttft"),
    ({"brix.dev/autoscale-ttft": "2", "brix.dev/autoscale-attainment": "1.5",
      "brix.dev/autoscale-initial-capacity": "1"}, "brix.dev/autoscale-attainment"),
    ({"brix.dev/autoscale-ttft": "2", "brix.dev/autoscale-initial-capacity": "1",
      "brix.dev/autoscale-scale-down-tolerance": "1"}, "brix.dev/autoscale-scale-down-tolerance"),
    ({"brix.dev/autoscale-ttft": "2"}, "brix.dev/autoscale-initial-capacity"),
])
def test_bad_settings_hold_with_a_warning_naming_the_annotation(
        module_procs: ProcessGroup, api: client.ApiClient, kubeconfig: Path, prom: str,
        settings: dict[str, str], named: str) -> None:
    namespace = f"slo-bad-{named.rsplit('-', 1)[1]}"
    slo_deployment(api, namespace, "llm", settings)
    scaler = loop_scaler(module_procs, prom=prom, kubeconfig=kubeconfig, namespace=namespace,
                         identity=f"bad-{namespace}")

    def warned() -> bool:
        return any(e.type == "Warning" and e.reason == "InvalidAutoscaleAnnotation"
                   for e in events(api, namespace, "llm"))
    wait_until(warned, "a Warning event")
    (warning,) = [e for e in events(api, namespace, "llm") if e.type == "Warning"]
    assert warning.message.startswith(f"{named}: "), warning.message
    assert replicas(api, namespace, "llm") == 1  # held, never a silent 0
    errors = scaler_metric(scaler, "brix_scaler_errors_total", kind="annotation")
    assert errors is not None
    assert errors >= 1


def decision_counts(scaler: Any, namespace: str) -> dict[str, float]:
    """brix_scaler_decisions_total for the Deployment, by direction, from one scrape."""
    counts = {}
    for line in httpx.get(scaler.http_url + "/metrics").text.splitlines():
        if (line.startswith("brix_scaler_decisions_total{") and f'namespace="{namespace}"' in line
                and 'deployment="llm"' in line):
            direction = line.partition('direction="')[2].partition('"')[0]
            counts[direction] = float(line.rsplit(" ", 1)[1])
    return counts


def test_a_fresh_loop_scales_down_only_after_a_window_of_its_own(
        module_procs: ProcessGroup, api: client.ApiClient, kubeconfig: Path,
        prom: str) -> None:
    # 40 replicas where the demand needs about ceil(2 r): a scaler that starts now has
    # not seen the window's demand, so it holds for a window of its own, then steps down.
    namespace = "slo-fresh"
    slo_deployment(api, namespace, "llm", {
        "brix.dev/autoscale-ttft": "2", "brix.dev/autoscale-initial-capacity": "1",
        "brix.dev/autoscale-utilization": "0.5", "brix.dev/autoscale-pod-start-seconds": "0",
        "brix.dev/autoscale-scale-down-window": "10"}, replicas=40)
    wait_until(lambda: measured_rate(prom, MODEL) > 3, "a request rate in Prometheus", timeout=60)
    scaler = loop_scaler(module_procs, prom=prom, kubeconfig=kubeconfig, namespace=namespace,
                         identity="fresh")
    seen: list[dict[str, float]] = []

    def decided() -> bool:
        seen.append(decision_counts(scaler, namespace))
        return sum(seen[-1].values()) > 0
    wait_until(decided, "the first decisions", timeout=40)
    assert seen[-1] == {"none": seen[-1]["none"]}, seen[-1]  # its first decisions held
    wait_until(lambda: replicas(api, namespace, "llm") < 40, "a scale-down", timeout=60)
    scaled = [e.message for e in events(api, namespace, "llm") if e.reason == "Scaled"]
    # Down to the highest desired count of the window (then the tolerance holds steps
    # of less than 35 %): the scale-down itself is what this test is about.
    assert any(m.startswith("slo: 40 -> ") and ": down;" in m for m in scaled), scaled
