"""The fallback loop against localkube's API, with a real Prometheus and known values.

localkube runs without its node: the loop needs Deployments, their scale
subresource, HPAs, Leases and Events, not running pods, since the metric
source is this test's own exporter. Each test has its own namespace (and
Lease), and starts its own scaler(s) with shortened windows.
"""

from __future__ import annotations

import itertools
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client

from brix.contract import (
    AUTOSCALE_ANNOTATION,
    AUTOSCALE_MAX_ANNOTATION,
    AUTOSCALE_MIN_ANNOTATION,
    AUTOSCALE_TARGET_ANNOTATION,
    MODEL_LABEL,
)
from tests.helpers.localkube import kubectl, service_account_kubeconfig
from tests.helpers.manifests import render
from tests.helpers.procs import ProcessGroup
from tests.helpers.prometheus import query, start_prometheus
from tests.helpers.scaler import ScalerProc, StaticExporter, start_scaler
from tests.helpers.wait import wait_until

_names = itertools.count()


@pytest.fixture
def namespace(api: client.ApiClient) -> str:
    name = f"scaler-{next(_names)}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    return name


FAST = ("--loop-interval", "0.5", "--lease-duration", "3", "--scale-period", "1",
        "--cache-ttl", "0.5", "--scale-to-zero-cooldown", "3")


def loop_scaler(procs: ProcessGroup, *, prom: str, kubeconfig: Path, namespace: str,
                window: float = 3, identity: str = "", extra: tuple[str, ...] = ()) -> ScalerProc:
    args = [*FAST, "--kubeconfig", str(kubeconfig), "--namespace", namespace,
            "--lease-namespace", namespace, "--stabilization-window", str(window), *extra]
    if identity:
        args += ["--identity", identity]
    return start_scaler(procs, prometheus_url=prom, mode="loop", extra_args=args,
                        name=identity or "scaler")


def deployment(api: client.ApiClient, namespace: str, name: str, *, model: str,
               replicas: int = 1, target: str = "2", min_: str = "1", max_: str = "8",
               annotate: bool = True) -> None:
    annotations = {AUTOSCALE_ANNOTATION: "true", AUTOSCALE_TARGET_ANNOTATION: target,
                   AUTOSCALE_MIN_ANNOTATION: min_, AUTOSCALE_MAX_ANNOTATION: max_}
    labels = {MODEL_LABEL: model, "app": name}
    client.AppsV1Api(api).create_namespaced_deployment(namespace, {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels,
                     "annotations": annotations if annotate else {}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                     {"name": "engine", "image": "brix/engine:test"}]}}},
    })


def replicas(api: client.ApiClient, namespace: str, name: str) -> int:
    scale = client.AppsV1Api(api).read_namespaced_deployment_scale(name, namespace)
    return int(scale.spec.replicas or 0)


def events(api: client.ApiClient, namespace: str, name: str) -> list[Any]:
    items = client.CoreV1Api(api).list_namespaced_event(namespace).items
    return [e for e in items if e.involved_object.name == name]




def scraped(prom: str, promql: str, expected: float) -> None:
    def holds() -> bool:
        result = query(prom, promql)
        return len(result) == 1 and float(result[0]["value"][1]) == expected
    wait_until(holds, f"{promql} == {expected} in Prometheus")


def scaler_metric(scaler: ScalerProc, name: str, **labels: str) -> float | None:
    text = httpx.get(scaler.http_url + "/metrics").text
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_load_up_then_down_after_the_window(
        procs: ProcessGroup, api: client.ApiClient, kubeconfig: Path, prom: str,
        exporter: StaticExporter, namespace: str) -> None:
    model = f"{namespace}-m"
    deployment(api, namespace, "engine", model=model, replicas=1, target="2")
    exporter.pod(model, "p0", namespace=namespace, waiting=8)
    scraped(prom, f'sum(brix_engine_requests_waiting{{model="{model}"}})', 8)
    scaler = loop_scaler(procs, prom=prom, kubeconfig=kubeconfig, namespace=namespace,
                         window=10)

    wait_until(lambda: replicas(api, namespace, "engine") == 4, "scaled up to ceil(8/2)")

    def scaled_events() -> list[Any]:
        return [e for e in events(api, namespace, "engine") if e.reason == "Scaled"]
    wait_until(lambda: bool(scaled_events()), "the Event that follows the change")
    scaled = scaled_events()
    assert len(scaled) == 1
    assert "1 -> 4 replicas" in scaled[0].message
    assert "queue = 8" in scaled[0].message
    assert scaler_metric(scaler, "brix_scaler_desired_replicas", deployment="engine") == 4
    assert (scaler_metric(scaler, "brix_scaler_decisions_total", deployment="engine",
                          direction="up") or 0) >= 1

    exporter.pod(model, "p0", namespace=namespace, waiting=0)
    wait_until(lambda: scaler_metric(scaler, "brix_scaler_metric_value",
                                     deployment="engine") == 0, "the loop sees no load")
    assert replicas(api, namespace, "engine") == 4  # the window holds the replicas
    wait_until(lambda: replicas(api, namespace, "engine") == 1, "down to min after the window")
    wait_until(lambda: any("4 -> 1" in e.message for e in events(api, namespace, "engine")),
               "the Event of the scale-down")


def test_from_zero_on_gateway_pending(
        procs: ProcessGroup, api: client.ApiClient, kubeconfig: Path, prom: str,
        exporter: StaticExporter, namespace: str) -> None:
    model = f"{namespace}-cold"
    deployment(api, namespace, "cold", model=model, replicas=0, target="5", min_="0")
    scaler = loop_scaler(procs, prom=prom, kubeconfig=kubeconfig, namespace=namespace)
    wait_until(lambda: scaler_metric(scaler, "brix_scaler_decisions_total", deployment="cold",
                                     direction="none") is not None, "a first decision")
    assert replicas(api, namespace, "cold") == 0  # nothing waits: stays at zero

    exporter.pending(model, 3, namespace=namespace)
    wait_until(lambda: replicas(api, namespace, "cold") == 1, "from zero on pending requests")

    exporter.pending(model, 0, namespace=namespace)  # served: nothing waits any more
    wait_until(lambda: replicas(api, namespace, "cold") == 0, "back to zero after the cooldown")
    wait_until(lambda: any("scale to zero" in e.message for e in events(api, namespace, "cold")),
               "the Event of the scale to zero")


def test_hpa_targeted_deployment_is_left_alone(
        procs: ProcessGroup, api: client.ApiClient, kubeconfig: Path, prom: str,
        exporter: StaticExporter, namespace: str) -> None:
    model = f"{namespace}-m"
    deployment(api, namespace, "keda-owned", model=model, replicas=1, target="1")
    deployment(api, namespace, "loop-owned", model=model, replicas=1, target="1")
    client.AutoscalingV2Api(api).create_namespaced_horizontal_pod_autoscaler(namespace, {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "keda-hpa-keda-owned"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                    "name": "keda-owned"},
                 "minReplicas": 1, "maxReplicas": 5},
    })
    exporter.pod(model, "p0", namespace=namespace, waiting=3)
    loop_scaler(procs, prom=prom, kubeconfig=kubeconfig, namespace=namespace)
    wait_until(lambda: replicas(api, namespace, "loop-owned") == 3, "the control scaled up")
    assert replicas(api, namespace, "keda-owned") == 1
    assert events(api, namespace, "keda-owned") == []


def test_two_scalers_one_acts_and_the_other_takes_over(
        procs: ProcessGroup, api: client.ApiClient, kubeconfig: Path, prom: str,
        exporter: StaticExporter, namespace: str) -> None:
    model = f"{namespace}-m"
    deployment(api, namespace, "engine", model=model, replicas=1, target="1")
    exporter.pod(model, "p0", namespace=namespace, waiting=2)
    scalers = {name: loop_scaler(procs, prom=prom, kubeconfig=kubeconfig, namespace=namespace,
                                 identity=name, window=1)
               for name in ("scaler-a", "scaler-b")}
    leases = client.CoordinationV1Api(api)

    def holder() -> str:
        try:
            return str(leases.read_namespaced_lease("brix-scaler", namespace).spec.holder_identity)
        except client.ApiException:
            return ""
    wait_until(lambda: holder() in scalers, "one scaler holds the Lease")
    leader = holder()
    follower = next(n for n in scalers if n != leader)
    wait_until(lambda: replicas(api, namespace, "engine") == 2, "the leader scaled")

    def decisions(name: str) -> float:
        return sum(scaler_metric(scalers[name], "brix_scaler_decisions_total",
                                 deployment="engine", direction=d) or 0
                   for d in ("up", "down", "none"))
    assert decisions(leader) >= 1
    assert decisions(follower) == 0
    assert holder() == leader
    wait_until(lambda: bool(events(api, namespace, "engine")), "the leader's Event")
    assert {e.reporting_instance for e in events(api, namespace, "engine")} == {leader}

    scalers[leader].proc.signal(signal.SIGKILL)  # dies without handing the Lease back
    wait_until(lambda: holder() == follower, "the follower takes the expired Lease")
    exporter.pod(model, "p0", namespace=namespace, waiting=5)
    wait_until(lambda: replicas(api, namespace, "engine") == 5, "the new leader scales")
    assert decisions(follower) >= 1
    # No two acted at once: by their Events, the old leader's scalings all come
    # before the new one's, and only the Lease holders of the time made any.
    scaled = sorted((e for e in events(api, namespace, "engine") if e.reason == "Scaled"),
                    key=lambda e: e.first_timestamp)
    by = [e.reporting_instance for e in scaled]
    assert set(by) <= {leader, follower}, by
    assert by == sorted(by, key=lambda name: name == follower), by
    assert by[-1] == follower, by


def test_a_prometheus_outage_holds_every_interval_then_waits_a_window_of_fresh_data(
        procs: ProcessGroup, api: client.ApiClient, kubeconfig: Path, exporter: StaticExporter,
        namespace: str, tmp_path: Path) -> None:
    import grpc

    from tests.helpers.scaler import get_metrics_request, scaler_stub, scrape_config

    window = 4.0
    model = f"{namespace}-m"
    exporter.pod(model, "p0", namespace=namespace, waiting=3)
    prom_proc, prom = start_prometheus(procs, tmp_path / "prom", scrape_config(exporter.target))
    scraped(prom, f'brix_engine_requests_waiting{{model="{model}"}}', 3)
    deployment(api, namespace, "engine", model=model, replicas=3, target="1", min_="0")
    scaler = start_scaler(procs, prometheus_url=prom, mode="both", extra_args=[
        *FAST, "--kubeconfig", str(kubeconfig), "--namespace", namespace,
        "--lease-namespace", namespace, "--stabilization-window", str(window),
        "--scale-to-zero-cooldown", str(window), "--prometheus-timeout", "0.5"])

    def decisions() -> float:
        return scaler_metric(scaler, "brix_scaler_decisions_total") or 0
    wait_until(lambda: decisions() >= 2, "the loop measures the model")
    assert replicas(api, namespace, "engine") == 3

    # Prometheus hangs (SIGSTOP: queries time out) for longer than the window, and
    # the load goes away meanwhile. Every interval, the replicas stay.
    prom_proc.signal(signal.SIGSTOP)
    exporter.pod(model, "p0", namespace=namespace, waiting=0)
    try:
        stopped = time.monotonic()
        while time.monotonic() - stopped < 2 * window:
            assert replicas(api, namespace, "engine") == 3, "scaled while Prometheus was down"
            time.sleep(0.25)
        with scaler.channel() as channel, pytest.raises(grpc.RpcError) as refused:
            scaler_stub(channel).GetMetrics(get_metrics_request(model=model, target="1"),
                                            timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        # It comes back as a restarted Prometheus without its old data would: the
        # first sample after the outage is a fresh one (no load), none from before.
        prom_proc.signal(signal.SIGKILL)
        prom_proc.popen.wait(10)
    start_prometheus(procs, tmp_path / "prom-again", scrape_config(exporter.target),
                     port=int(prom.rsplit(":", 1)[1]))
    # Ready now: its first scrape (the first fresh data) comes at about this moment,
    # and the loop held at its last pass before (one interval, 0.5 s).
    resumed = time.monotonic()
    warning = next(e for e in events(api, namespace, "engine") if e.reason == "MetricsUnavailable")
    assert warning.type == "Warning"
    assert "holding 3 replica(s)" in warning.message
    assert f"Prometheus at {prom}" in warning.message
    assert (scaler_metric(scaler, "brix_scaler_errors_total", kind="prometheus") or 0) >= 1
    # Fresh data says no load, yet for (most of) a window nothing goes down...
    while time.monotonic() - resumed < 0.6 * window:
        assert replicas(api, namespace, "engine") == 3, "scaled down before a window of data"
        time.sleep(0.25)
    scraped(prom, f'brix_engine_requests_waiting{{model="{model}"}}', 0)
    # ...then scaling resumes (to zero, after the cooldown).
    wait_until(lambda: replicas(api, namespace, "engine") == 0, "scaling resumes")
    # The Events say when the hold ended, not only when it began.
    (cleared,) = [e for e in events(api, namespace, "engine") if e.reason == "ValidMetricFound"]
    assert cleared.type == "Normal"
    assert "measuring again (MetricsUnavailable has cleared)" in cleared.message


def test_bad_annotation_is_reported_and_nothing_changes(
        procs: ProcessGroup, api: client.ApiClient, kubeconfig: Path, prom: str,
        namespace: str) -> None:
    deployment(api, namespace, "engine", model=f"{namespace}-m", replicas=2, target="lots")
    scaler = loop_scaler(procs, prom=prom, kubeconfig=kubeconfig, namespace=namespace)

    def reported() -> bool:
        return any(e.reason == "InvalidAutoscaleAnnotation"
                   for e in events(api, namespace, "engine"))
    wait_until(reported, "an InvalidAutoscaleAnnotation Event")
    (warning,) = [e for e in events(api, namespace, "engine")
                  if e.reason == "InvalidAutoscaleAnnotation"]
    assert AUTOSCALE_TARGET_ANNOTATION in warning.message
    assert replicas(api, namespace, "engine") == 2
    assert (scaler_metric(scaler, "brix_scaler_errors_total", kind="annotation") or 0) >= 1
    # Mended, the annotation is read again, and the Events say so once.
    client.AppsV1Api(api).patch_namespaced_deployment(
        "engine", namespace, {"metadata": {"annotations": {AUTOSCALE_TARGET_ANNOTATION: "2"}}})

    def cleared() -> list[Any]:
        return [e for e in events(api, namespace, "engine") if e.reason == "ValidMetricFound"]
    wait_until(lambda: bool(cleared()), "a ValidMetricFound Event")
    (event,) = cleared()
    assert event.type == "Normal"
    assert "measuring again (InvalidAutoscaleAnnotation has cleared)" in event.message


def test_a_stopped_leader_hands_the_lease_over(
        procs: ProcessGroup, api: client.ApiClient, kubeconfig: Path, prom: str,
        namespace: str) -> None:
    # A Lease of 120 s cannot expire within this test: the follower can only get it
    # because the leader hands it back when it stops.
    long_lease = ("--lease-duration", "120")
    first = loop_scaler(procs, prom=prom, kubeconfig=kubeconfig, namespace=namespace,
                        identity="first", extra=long_lease)
    leases = client.CoordinationV1Api(api)

    def holder() -> str:
        try:
            return str(leases.read_namespaced_lease("brix-scaler", namespace).spec.holder_identity)
        except client.ApiException:
            return ""
    wait_until(lambda: holder() == "first", "the first scaler leads")
    loop_scaler(procs, prom=prom, kubeconfig=kubeconfig, namespace=namespace,
                identity="second", extra=long_lease)
    assert first.proc.stop() == 0  # SIGTERM: a clean exit
    wait_until(lambda: holder() == "second", "the second scaler takes the handed-back Lease")


def test_mode_both_serves_keda_and_runs_the_loop(
        procs: ProcessGroup, api: client.ApiClient, kubeconfig: Path, prom: str,
        exporter: StaticExporter, namespace: str) -> None:
    from tests.helpers.scaler import scaled_object_ref, scaler_stub

    model = f"{namespace}-m"
    deployment(api, namespace, "engine", model=model, replicas=1, target="1")
    exporter.pod(model, "p0", namespace=namespace, waiting=2)
    scaler = start_scaler(procs, prometheus_url=prom, mode="both", extra_args=[
        *FAST, "--kubeconfig", str(kubeconfig), "--namespace", namespace,
        "--lease-namespace", namespace])
    with scaler.channel() as channel:
        spec = scaler_stub(channel).GetMetricSpec(scaled_object_ref(model=model, target="1"))
    assert spec.metricSpecs[0].targetSizeFloat == 1.0
    wait_until(lambda: replicas(api, namespace, "engine") == 2, "the loop scaled")
    health = httpx.get(scaler.http_url + "/healthz")
    assert health.status_code == 200
    assert "leader" in health.text


def test_a_permission_the_role_lacks_fails_loudly_with_the_403(
        procs: ProcessGroup, api: client.ApiClient, kubeconfig: Path, prom: str,
        exporter: StaticExporter, namespace: str, tmp_path: Path) -> None:
    """The scaler as its ServiceAccount, with k8s/base's rules less the scale patch."""
    rules = [r for o in render("base") if o["kind"] == "ClusterRole"
             and o["metadata"]["name"] == "brix-scaler" for r in o["rules"]]
    rules += [r for o in render("base") if o["kind"] == "Role"
              and o["metadata"]["name"] == "brix-scaler-leader-election" for r in o["rules"]]
    lacking = [{**r, "verbs": [v for v in r["verbs"] if v != "patch"]}
               if r["resources"] == ["deployments/scale"] else r for r in rules]
    kubectl(kubeconfig, "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "scaler"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "scaler"}, "rules": lacking},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "scaler"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "scaler"},
         "subjects": [{"kind": "ServiceAccount", "name": "scaler", "namespace": namespace}]},
    ]))
    sa_config = service_account_kubeconfig(kubeconfig, namespace, "scaler",
                                           tmp_path / "scaler.kubeconfig")
    model = f"{namespace}-m"
    deployment(api, namespace, "engine", model=model, replicas=1, target="2")
    exporter.pod(model, "p0", namespace=namespace, waiting=8)
    scraped(prom, f'sum(brix_engine_requests_waiting{{model="{model}"}})', 8)
    scaler = loop_scaler(procs, prom=prom, kubeconfig=sa_config, namespace=namespace)
    forbidden = (f'User "system:serviceaccount:{namespace}:scaler" cannot patch resource '
                 '"deployments/scale" in API group "apps"')
    wait_until(lambda: forbidden in scaler.proc.output(), "the 403 in the scaler's log")
    assert replicas(api, namespace, "engine") == 1
