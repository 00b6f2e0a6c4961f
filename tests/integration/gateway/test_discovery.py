"""Discovery against localkube's API server: Pods, Deployments and LoraAdapters.

The pods here are API objects whose status the test writes through the status
subresource (localkube runs with no node), each pointing at a sim engine that
the test started: so readiness, scale and adapter placement change exactly
when the test says.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import openai
import pytest
from kubernetes import client, config
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.gateway import start_gateway
from tests.helpers.localkube import kubectl, start_localkube
from tests.helpers.procs import REPO, Proc, ProcessGroup
from tests.helpers.sidecar import start_sidecar
from tests.helpers.sim import FAST, slow, start_sim

T = TypeVar("T")
CRD = REPO / "k8s" / "crds" / "loraadapter.yaml"


def wait_for(fn: Callable[[], T | None], what: str, timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.05)


@dataclass
class Kube:
    kubeconfig: Path
    core: Any
    apps: Any
    custom: Any
    engines: list[Proc]


@pytest.fixture(scope="module")
def kube(module_procs: ProcessGroup, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    _, kubeconfig = start_localkube(module_procs, tmp_path_factory.mktemp("kube"), node=False)
    kubectl(kubeconfig, "apply", "-f", str(CRD))
    kubectl(kubeconfig, "wait", "--for=condition=Established", "--timeout=30s",
            "crd/loraadapters.brix.dev")
    engines = [start_sim(module_procs, name="m1", extra_args=FAST) for _ in range(2)]
    api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    yield Kube(kubeconfig, client.CoreV1Api(api), client.AppsV1Api(api),
               client.CustomObjectsApi(api), engines)
    api.close()


@pytest.fixture
def ns(kube: Kube) -> str:
    name = f"gw-{uuid.uuid4().hex[:8]}"
    kube.core.create_namespace({"metadata": {"name": name}})
    return name


def port_of(engine: Proc) -> int:
    assert engine.url is not None
    return int(engine.url.rsplit(":", 1)[1])


def make_pod(kube: Kube, ns: str, name: str, model: str, engine: Proc, *, ready: bool) -> None:
    kube.core.create_namespaced_pod(ns, {
        "metadata": {"name": name, "labels": {"brix.dev/model": model}},
        "spec": {"nodeName": "elsewhere", "containers": [{
            "name": "engine", "image": "brix/engine", "ports": [
                {"name": "http", "containerPort": port_of(engine)},
            ]}]},
    })
    set_ready(kube, ns, name, ready)


def set_ready(kube: Kube, ns: str, name: str, ready: bool) -> None:
    kube.core.patch_namespaced_pod_status(name, ns, {"status": {
        "phase": "Running", "podIP": "127.0.0.1",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }})


def make_adapter(kube: Kube, ns: str, name: str, base: str) -> None:
    kube.custom.create_namespaced_custom_object("brix.dev", "v1alpha1", ns, "loraadapters", {
        "apiVersion": "brix.dev/v1alpha1", "kind": "LoraAdapter",
        "metadata": {"name": name}, "spec": {"baseModel": base, "source": "file:///adapters/x"},
    })


def set_loaded(kube: Kube, ns: str, name: str, pods: list[str]) -> None:
    kube.custom.patch_namespaced_custom_object_status(
        "brix.dev", "v1alpha1", ns, "loraadapters", name,
        {"status": {"phase": "Ready" if pods else "Pending",
                    "loadedPods": [{"name": p, "ip": "127.0.0.1"} for p in pods]}})


def models(gw: Proc) -> dict[str, str | None]:
    data = httpx.get(f"{gw.url}/v1/models", timeout=10).json()["data"]
    return {m["id"]: m["parent"] for m in data}


def pods_answering(gw: Proc, model: str, n: int = 12) -> set[str]:
    seen = set()
    with httpx.Client(timeout=30) as c:
        for _ in range(n):
            r = c.post(f"{gw.url}/v1/completions", headers={"x-brix-routing": "round-robin"},
                       json={"model": model, "prompt": "x", "max_tokens": 1})
            assert r.status_code == 200, r.text
            seen.add(r.headers["x-brix-pod"])
    return seen


def pending(gw: Proc, model: str) -> float:
    text = httpx.get(f"{gw.url}/metrics", timeout=10).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "brix_gateway_requests_pending" and s.labels.get("model") == model)


def test_pods_come_and_go_with_scale_and_readiness(
    kube: Kube, ns: str, procs: ProcessGroup,
) -> None:
    gw = start_gateway(procs, kubeconfig=kube.kubeconfig, extra_args=["--namespaces", ns])
    make_pod(kube, ns, "m1-a", "m1", kube.engines[0], ready=True)
    wait_for(lambda: "m1" in models(gw), "m1 listed")
    assert pods_answering(gw, "m1") == {"m1-a"}
    # Scale up: a second pod, first not ready, then ready.
    make_pod(kube, ns, "m1-b", "m1", kube.engines[1], ready=False)
    assert pods_answering(gw, "m1") == {"m1-a"}
    set_ready(kube, ns, "m1-b", True)
    wait_for(lambda: pods_answering(gw, "m1") == {"m1-a", "m1-b"}, "both pods used")
    # Readiness lost: no more requests to it.
    set_ready(kube, ns, "m1-a", False)
    wait_for(lambda: pods_answering(gw, "m1") == {"m1-b"}, "only the ready pod used")
    # Scale down: the pod is deleted.
    set_ready(kube, ns, "m1-a", True)
    wait_for(lambda: pods_answering(gw, "m1") == {"m1-a", "m1-b"}, "m1-a back")
    kube.core.delete_namespaced_pod("m1-b", ns, grace_period_seconds=0)
    wait_for(lambda: pods_answering(gw, "m1") == {"m1-a"}, "m1-b gone")
    kube.core.delete_namespaced_pod("m1-a", ns, grace_period_seconds=0)
    wait_for(lambda: "m1" not in models(gw), "m1 no longer listed")
    r = httpx.post(f"{gw.url}/v1/completions", json={"model": "m1", "prompt": "x"}, timeout=10)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"


def test_an_adapter_routes_where_its_status_says_it_is_loaded(
    kube: Kube, ns: str, procs: ProcessGroup, tmp_path: Path,
) -> None:
    for engine in kube.engines[:2]:  # the sims must know the adapter to answer for it
        r = httpx.post(f"{engine.url}/v1/load_lora_adapter",
                       json={"lora_name": "sql", "lora_path": str(tmp_path)}, timeout=10)
        assert r.status_code == 200, r.text
    gw = start_gateway(procs, kubeconfig=kube.kubeconfig,
                       extra_args=["--namespaces", ns, "--hold-timeout", "0.5"])
    make_pod(kube, ns, "m1-a", "m1", kube.engines[0], ready=True)
    make_pod(kube, ns, "m1-b", "m1", kube.engines[1], ready=True)
    make_adapter(kube, ns, "sql", "m1")
    wait_for(lambda: "m1" in models(gw), "m1 listed")
    # Known but loaded nowhere: held, then 503 (not 404).
    r = httpx.post(f"{gw.url}/v1/completions", json={"model": "sql", "prompt": "x"}, timeout=10)
    assert r.status_code == 503, r.text
    assert "sql" not in models(gw)
    set_loaded(kube, ns, "sql", ["m1-b"])
    wait_for(lambda: models(gw).get("sql") == "m1", "sql listed with its parent")
    assert pods_answering(gw, "sql") == {"m1-b"}
    set_loaded(kube, ns, "sql", ["m1-a", "m1-b"])
    wait_for(lambda: pods_answering(gw, "sql") == {"m1-a", "m1-b"}, "sql on both pods")
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0) as oc:
        listed = {m.id: getattr(m, "parent", None) for m in oc.models.list()}
        assert listed == {"m1": None, "sql": "m1"}
        assert oc.completions.create(model="sql", prompt="SELECT", max_tokens=2).model == "sql"
    kube.custom.delete_namespaced_custom_object("brix.dev", "v1alpha1", ns, "loraadapters", "sql")
    wait_for(lambda: "sql" not in models(gw), "sql gone with its object")


def test_a_request_for_a_scaled_to_zero_model_is_held_and_released(
    kube: Kube, ns: str, procs: ProcessGroup,
) -> None:
    gw = start_gateway(procs, kubeconfig=kube.kubeconfig,
                       extra_args=["--namespaces", ns, "--hold-timeout", "60"])
    kube.apps.create_namespaced_deployment(ns, {
        "metadata": {"name": "cold", "labels": {"brix.dev/model": "cold"}},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"brix.dev/model": "cold"}},
                 "template": {"metadata": {"labels": {"brix.dev/model": "cold"}},
                              "spec": {"containers": [{"name": "engine", "image": "x"}]}}},
    })
    answers: list[httpx.Response] = []

    def ask() -> None:
        answers.append(httpx.post(f"{gw.url}/v1/completions", timeout=90,
                                  json={"model": "cold", "prompt": "x", "max_tokens": 1}))

    # The Deployment may not be in the table yet: until it is, "cold" is unknown (404).
    def held() -> bool:
        answers.clear()
        thread = threading.Thread(target=ask)
        thread.start()
        try:
            wait_for(lambda: pending(gw, "cold") == 1 or not thread.is_alive(), "held or answered")
        except AssertionError:
            return False
        if pending(gw, "cold") == 1:
            held_threads.append(thread)
            return True
        thread.join()
        assert answers[0].status_code == 404
        return False

    held_threads: list[threading.Thread] = []
    wait_for(held, "a request held for cold")
    assert not answers
    engine = start_sim(procs, name="cold", extra_args=FAST)  # the pod starts
    make_pod(kube, ns, "cold-a", "cold", engine, ready=True)
    held_threads[0].join(30)
    assert answers, "the held request was not released"
    assert answers[0].status_code == 200, answers[0].text
    assert answers[0].headers["x-brix-pod"] == "cold-a"
    assert pending(gw, "cold") == 0


def test_known_endpoints_survive_an_api_server_outage(
    procs: ProcessGroup, kube: Kube, tmp_path: Path,
) -> None:
    # An API server of its own, to stop and start again on the same port.
    state = tmp_path / "kube"
    lk, kubeconfig = start_localkube(procs, state, node=False)
    assert lk.url is not None
    port = lk.url.rsplit(":", 1)[1]
    api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    core: Any = client.CoreV1Api(api)
    try:
        core.create_namespace({"metadata": {"name": "models"}})
        local = Kube(kubeconfig, core, None, None, kube.engines)
        make_pod(local, "models", "m1-a", "m1", kube.engines[0], ready=True)
        gw = start_gateway(procs, kubeconfig=kubeconfig)  # all namespaces
        wait_for(lambda: "m1" in models(gw), "m1 listed")
        lk.stop()
        # The API server is gone; what the gateway knew still routes.
        assert pods_answering(gw, "m1", 4) == {"m1-a"}
        start_localkube(procs, state, node=False, extra_args=["--port", port])
        make_pod(local, "models", "m1-b", "m1", kube.engines[1], ready=True)
        wait_for(lambda: pods_answering(gw, "m1") == {"m1-a", "m1-b"},
                 "the watch resumed and saw m1-b", timeout=60)
    finally:
        api.close()


def test_least_queue_follows_what_the_sidecars_report(
    kube: Kube, ns: str, procs: ProcessGroup,
) -> None:
    # Pod "busy": an engine that runs one sequence at a time, with a queue that
    # other clients (not through this gateway) filled; pod "idle": an idle engine.
    busy = start_sim(procs, name="m1", extra_args=slow(ms_per_token=50, max_num_seqs=1))
    idle = start_sim(procs, name="m1", extra_args=FAST)
    pods: dict[str, tuple[Proc, Proc]] = {}
    for name, engine in (("busy", busy), ("idle", idle)):
        assert engine.url is not None
        pods[name] = (engine, start_sidecar(procs, engine_url=engine.url))
    for name, (engine, sidecar) in pods.items():
        assert sidecar.url is not None
        kube.core.create_namespaced_pod(ns, {
            "metadata": {"name": name, "labels": {"brix.dev/model": "m1"}},
            "spec": {"nodeName": "elsewhere", "containers": [{
                "name": "engine", "image": "brix/engine", "ports": [
                    {"name": "http", "containerPort": port_of(engine)},
                    {"name": "sidecar", "containerPort": int(sidecar.url.rsplit(":", 1)[1])},
                ]}]},
        })
        set_ready(kube, ns, name, True)
    gw = start_gateway(procs, kubeconfig=kube.kubeconfig, extra_args=[
        "--namespaces", ns, "--sidecar-poll-interval", "0.2"])
    wait_for(lambda: "m1" in models(gw), "m1 listed")
    long_body = {"model": "m1", "prompt": "x", "max_tokens": 200, "ignore_eos": True}

    def fill() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the engine is stopped after the test
            httpx.post(f"{busy.url}/v1/completions", json=long_body, timeout=120)

    for _ in range(4):
        threading.Thread(target=fill, daemon=True).start()
    sidecar_url = str(pods["busy"][1].url)

    def queued() -> bool:
        text = httpx.get(f"{sidecar_url}/metrics", timeout=10).text
        return 'brix_engine_requests_waiting{model="m1"} 3.0' in text
    wait_for(queued, "the busy engine's queue in its sidecar's metrics")

    def all_to_idle() -> bool:
        with httpx.Client(timeout=httpx.Timeout(10, read=2.0)) as c:
            for _ in range(6):
                try:
                    r = c.post(f"{gw.url}/v1/completions",
                               headers={"x-brix-routing": "least-queue"},
                               json={"model": "m1", "prompt": "x", "max_tokens": 1})
                except httpx.ReadTimeout:
                    return False  # it went to the busy pod before the poll saw the queue
                if r.headers["x-brix-pod"] != "idle":
                    return False
        return True
    wait_for(all_to_idle, "least-queue sending everything to the idle pod")
