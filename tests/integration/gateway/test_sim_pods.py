"""The gateway in front of real sim-engine pods that localkube's kubelet runs.

A Deployment of sim engines labelled ``brix.dev/model``: the gateway finds its
pods as they become Ready, follows scale up and down, holds a request while
the model is scaled to zero and sends it when a pod is Ready, and when a pod's
process is killed mid-stream that stream ends with an error event while new
requests go to the pod that is left.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import pytest
from kubernetes import client, config
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.gateway import start_gateway
from tests.helpers.localkube import start_localkube
from tests.helpers.procs import Proc, ProcessGroup
from tests.helpers.sim import sim_deployment

T = TypeVar("T")
SIM_FLAGS = ["--prefill-tokens-per-s", "1000000", "--decode-ms-per-token", "40",
             "--decode-ms-per-token-per-seq", "0", "--log-level", "warning"]


def wait_for(fn: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.1)


def answering_pods(gw: Proc, n: int = 8) -> set[str]:
    seen = set()
    with httpx.Client(timeout=30) as c:
        for _ in range(n):
            r = c.post(f"{gw.url}/v1/completions", headers={"x-brix-routing": "round-robin"},
                       json={"model": "m1", "prompt": "x", "max_tokens": 1})
            assert r.status_code == 200, r.text
            seen.add(r.headers["x-brix-pod"])
    return seen


def pending(gw: Proc) -> float:
    text = httpx.get(f"{gw.url}/metrics", timeout=10).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "brix_gateway_requests_pending" and s.labels.get("model") == "m1")


@pytest.fixture
def apis(procs: ProcessGroup, tmp_path: Any) -> Any:
    _, kubeconfig = start_localkube(procs, tmp_path / "kube")
    api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    yield kubeconfig, client.CoreV1Api(api), client.AppsV1Api(api)
    api.close()


def test_sim_pods_scale_fail_and_come_back_from_zero(procs: ProcessGroup, apis: Any) -> None:
    kubeconfig, core, apps = apis
    ns = "models"
    core.create_namespace({"metadata": {"name": ns}})
    apps.create_namespaced_deployment(ns, sim_deployment("m1", 2, SIM_FLAGS))
    gw = start_gateway(procs, kubeconfig=kubeconfig, extra_args=["--hold-timeout", "120"])
    both = wait_for(lambda: p if len(p := answering_pods(gw)) == 2 else None,
                    "two sim pods answering through the gateway", timeout=120)

    # A pod's engine dies in the middle of a stream.
    body = {"model": "m1", "prompt": "x", "max_tokens": 500, "stream": True, "ignore_eos": True}
    with httpx.Client(timeout=30) as c, \
            c.stream("POST", f"{gw.url}/v1/completions", json=body,
                     headers={"x-brix-routing": "round-robin"}) as r:
        assert r.status_code == 200
        victim = r.headers["x-brix-pod"]
        lines = (line for line in r.iter_lines() if line.startswith("data: "))
        assert "choices" in json.loads(next(lines).removeprefix("data: "))
        status = core.read_namespaced_pod(victim, ns).status.container_statuses[0]
        os.kill(int(status.container_id.removeprefix("localkube://")), signal.SIGKILL)
        rest = [line.removeprefix("data: ") for line in lines]
    assert rest
    assert json.loads(rest[-1])["error"]["code"] == "upstream_error"
    # Meanwhile every new request is answered (by the other pod, or by the
    # victim once the kubelet restarted it and it is Ready again).
    assert answering_pods(gw, 6) <= both

    # Scale down to one, then to zero: a request is held, then sent when a pod is Ready.
    apps.patch_namespaced_deployment_scale("m1", ns, {"spec": {"replicas": 1}})
    wait_for(lambda: len(answering_pods(gw)) == 1, "one pod left", timeout=60)
    apps.patch_namespaced_deployment_scale("m1", ns, {"spec": {"replicas": 0}})

    def no_pods() -> bool:
        return not core.list_namespaced_pod(ns).items
    wait_for(no_pods, "the pods gone")
    wait_for(lambda: "m1" not in [m["id"] for m in httpx.get(
        f"{gw.url}/v1/models", timeout=10).json()["data"]], "m1 not listed")
    answers: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: answers.append(httpx.post(
        f"{gw.url}/v1/completions", json={"model": "m1", "prompt": "x", "max_tokens": 1},
        timeout=150)))
    thread.start()
    wait_for(lambda: pending(gw) == 1, "the request held")
    assert not answers
    apps.patch_namespaced_deployment_scale("m1", ns, {"spec": {"replicas": 1}})
    thread.join(130)
    assert answers, "the held request was never answered"
    assert answers[0].status_code == 200, answers[0].text
    (pod,) = core.list_namespaced_pod(ns).items
    assert answers[0].headers["x-brix-pod"] == pod.metadata.name
    assert pending(gw) == 0
    apps.delete_namespaced_deployment("m1", ns)
    wait_for(no_pods, "the pods gone at the end")
