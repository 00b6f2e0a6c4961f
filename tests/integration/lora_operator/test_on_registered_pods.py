"""Failures and recoveries, with pods whose processes the test runs itself.

localkube runs without its node here: each "pod" is a Pod object whose status
the test sets (Ready, podIP 127.0.0.1, the sidecar's port as the container
port named ``sidecar``), backed by a sim engine and a sidecar the test starts
and stops. That lets a test take a sidecar down while its pod stays Ready.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.localkube import kubectl, start_localkube
from tests.helpers.operator import (
    adapter_status,
    adapter_yaml,
    core_api,
    get_object,
    install_crds,
    make_adapter_dir,
    register_pod,
    set_pod_ready,
    start_operator,
    wait_for,
)
from tests.helpers.procs import Proc, ProcessGroup, free_port
from tests.helpers.sidecar import start_sidecar
from tests.helpers.sim import FAST, start_sim

NS = "default"


@dataclass
class FakePod:
    name: str
    engine: Proc
    sidecar: Proc | None
    port: int


@dataclass
class Env:
    procs: ProcessGroup
    kubeconfig: Path
    api: Any
    adapters: Path

    def pod(self, name: str, *, model: str = "m", ready: bool = True,
            sidecar_env: dict[str, str] | None = None,
            labels: dict[str, str] | None = None) -> FakePod:
        engine = start_sim(self.procs, name=model, extra_args=FAST)
        port = free_port()
        pod = FakePod(name, engine, None, port)
        self.start_sidecar(pod, env=sidecar_env)
        register_pod(self.api, namespace=NS, name=name, model=model, sidecar_port=port,
                     ready=ready, labels=labels)
        return pod

    def start_sidecar(self, pod: FakePod, env: dict[str, str] | None = None) -> None:
        assert pod.engine.url is not None
        pod.sidecar = start_sidecar(
            self.procs, engine_url=pod.engine.url, env=env,
            extra_args=("--port", str(pod.port), "--adapter-roots", str(self.adapters)))

    def stop_sidecar(self, pod: FakePod) -> None:
        assert pod.sidecar is not None
        pod.sidecar.stop()
        pod.sidecar = None

    def apply(self, name: str, *, model: str = "m", **kw: Any) -> None:
        source = f"file://{make_adapter_dir(self.adapters, name)}"
        kubectl(self.kubeconfig, "apply", "-f", "-",
                input=adapter_yaml(name, base_model=model, source=source, **kw))

    def status(self, name: str) -> dict[str, Any]:
        return adapter_status(self.kubeconfig, NS, name)

    def wait(self, name: str, what: str, check: Any, timeout: float = 60) -> dict[str, Any]:
        wait_for(lambda: check(self.status(name)), what=f"{name}: {what}", timeout=timeout,
                 describe=lambda: self.status(name))
        return self.status(name)


def holds(pod: FakePod, adapter: str, token: str | None = None) -> bool:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    listed = httpx.get(f"http://127.0.0.1:{pod.port}/v1/adapters", headers=headers,
                       timeout=10).json()["data"]
    return any(a["name"] == adapter for a in listed)


@pytest.fixture
def env(procs: ProcessGroup, tmp_path: Path) -> Env:
    _, kubeconfig = start_localkube(procs, tmp_path / "kube", node=False)
    install_crds(kubeconfig)
    start_operator(procs, kubeconfig=kubeconfig)
    adapters = tmp_path / "adapters"
    adapters.mkdir()
    return Env(procs, kubeconfig, core_api(kubeconfig), adapters)


def _loaded(status: dict[str, Any]) -> set[str]:
    return {p["name"] for p in status.get("loadedPods") or []}


def test_a_sidecar_that_is_down_degrades_then_ready_once_back(env: Env) -> None:
    a, b = env.pod("pod-a"), env.pod("pod-b")
    env.apply("sql")
    env.wait("sql", "Ready 2/2", lambda s: s.get("phase") == "Ready" and s.get("ready") == "2/2")

    env.stop_sidecar(b)
    s = env.wait("sql", "Degraded", lambda s: s.get("phase") == "Degraded")
    assert s["reason"] == "SidecarUnreachable"
    assert "pod-b" in s["message"]
    assert _loaded(s) == {"pod-a"}
    assert s["ready"] == "1/2"

    env.stop_sidecar(a)
    s = env.wait("sql", "Failed", lambda s: s.get("phase") == "Failed")
    assert s["reason"] == "SidecarUnreachable"
    assert _loaded(s) == set()

    env.start_sidecar(a)
    env.start_sidecar(b)
    env.wait("sql", "Ready 2/2 again",
             lambda s: s.get("phase") == "Ready" and s.get("ready") == "2/2")
    assert holds(a, "sql")
    assert holds(b, "sql")


def test_no_pod_is_pending_saying_so_and_a_pod_that_turns_ready_gets_it(env: Env) -> None:
    env.apply("sql", model="llama")
    s = env.wait("sql", "Pending", lambda s: s.get("phase") == "Pending")
    assert s["reason"] == "NoPods"
    assert "'llama'" in s["message"]

    pod = env.pod("pod-a", model="llama", ready=False)
    s = env.wait("sql", "Pending: not Ready", lambda s: s.get("reason") == "NoReadyPods")
    assert not holds(pod, "sql")

    set_pod_ready(env.api, namespace=NS, name="pod-a", ready=True)
    env.wait("sql", "Ready 1/1", lambda s: s.get("phase") == "Ready" and s.get("ready") == "1/1")
    assert holds(pod, "sql")


def test_the_sidecar_token_is_read_from_the_secret(env: Env) -> None:
    pod = env.pod("pod-a", sidecar_env={"BRIX_SIDECAR_TOKEN": "s3cret"})
    env.apply("sql")
    s = env.wait("sql", "Failed: unauthorized", lambda s: s.get("phase") == "Failed")
    assert s["reason"] == "SidecarUnauthorized"

    kubectl(env.kubeconfig, "apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "brix-sidecar-token"},
        "stringData": {"token": "s3cret"},
    }))
    env.wait("sql", "Ready 1/1", lambda s: s.get("phase") == "Ready")
    assert holds(pod, "sql", token="s3cret")


def test_delete_gives_up_on_a_pod_that_never_answers(env: Env) -> None:
    a, b = env.pod("pod-a"), env.pod("pod-b")
    env.apply("sql")
    env.wait("sql", "Ready 2/2", lambda s: s.get("ready") == "2/2")
    env.stop_sidecar(b)
    env.wait("sql", "Degraded", lambda s: s.get("phase") == "Degraded")

    # The operator runs with --delete-timeout 8: the delete finishes, never blocked.
    kubectl(env.kubeconfig, "delete", "lora", "sql", "--timeout=60s")
    assert get_object(env.kubeconfig, "loraadapters.brix.dev", NS, "sql") is None
    assert not holds(a, "sql")
    events = json.loads(kubectl(env.kubeconfig, "get", "events", "-o", "json").stdout)["items"]
    abandoned = [e for e in events if e.get("reason") == "UnloadAbandoned"]
    assert abandoned
    assert "pod-b" in abandoned[0]["message"]
    assert abandoned[0]["type"] == "Warning"


def test_pod_selector_and_a_base_model_change_move_the_adapter(env: Env) -> None:
    a = env.pod("pod-a", labels={"zone": "a"})
    b = env.pod("pod-b", labels={"zone": "b"})
    other = env.pod("pod-n", model="llama")
    env.apply("sql", pod_selector={"matchLabels": {"zone": "b"}})
    s = env.wait("sql", "Ready 1/1", lambda s: s.get("phase") == "Ready")
    assert _loaded(s) == {"pod-b"}
    assert (holds(a, "sql"), holds(b, "sql"), holds(other, "sql")) == (False, True, False)

    env.apply("sql", model="llama")  # no podSelector any more, and another base model
    s = env.wait("sql", "on the other model's pod",
                 lambda s: _loaded(s) == {"pod-n"} and s.get("phase") == "Ready")
    assert s["observedGeneration"] == 2
    assert (holds(a, "sql"), holds(b, "sql"), holds(other, "sql")) == (False, False, True)
