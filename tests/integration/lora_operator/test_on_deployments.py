"""The operator against localkube, with Deployments of sim engines and their sidecars.

The kubelet runs each pod's containers as processes; the operator is a real
process too, and the tests speak kubectl and the sidecars' HTTP API. One
localkube and one operator serve the module; each test has its own namespace.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers.localkube import kubectl, start_localkube
from tests.helpers.operator import (
    adapter_status,
    adapter_yaml,
    get_object,
    install_crds,
    make_adapter_dir,
    ready_pods,
    sidecar_url,
    sim_model_yaml,
    start_operator,
    wait_for,
)
from tests.helpers.procs import ProcessGroup

MODEL = "m"


@dataclass
class Cluster:
    kubeconfig: Path
    adapters: Path
    operator_url: str


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("operator-cluster")
    group = ProcessGroup(log_dir=root / "logs")
    try:
        _, kubeconfig = start_localkube(group, root / "kube")
        install_crds(kubeconfig)
        op = start_operator(group, kubeconfig=kubeconfig)
        assert op.url is not None
        yield Cluster(kubeconfig, root / "adapters", op.url)
    finally:
        group.stop_all()


_namespaces = itertools.count()


@dataclass
class Model:
    """A namespace with a Deployment of model ``m`` (sim engines with sidecars)."""

    kubeconfig: Path
    namespace: str
    adapters: Path

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return kubectl(self.kubeconfig, "-n", self.namespace, *args, input=input).stdout

    def apply_adapter(self, name: str, **kw: object) -> None:
        source = kw.pop("source", None) or f"file://{make_adapter_dir(self.adapters, name)}"
        self.kubectl("apply", "-f", "-", input=adapter_yaml(
            name, base_model=MODEL, source=str(source), namespace=self.namespace, **kw))

    def status(self, name: str) -> dict[str, object]:
        return adapter_status(self.kubeconfig, self.namespace, name)

    def pods(self) -> list[dict[str, object]]:
        return ready_pods(self.kubeconfig, self.namespace, MODEL)

    def holding(self, adapter: str) -> set[str]:
        """The Ready pods whose sidecar lists ``adapter`` (asked directly)."""
        names = set()
        for pod in self.pods():
            listed = httpx.get(sidecar_url(pod) + "/v1/adapters", timeout=10).json()["data"]
            if any(a["name"] == adapter for a in listed):
                names.add(pod["metadata"]["name"])  # type: ignore[index]
        return names

    def scale(self, replicas: int) -> None:
        self.kubectl("scale", f"deployment/{MODEL}", "--replicas", str(replicas))
        wait_for(lambda: len(self.pods()) == replicas, what=f"{replicas} Ready pods",
                 timeout=90)

    def wait_status(self, name: str, what: str, check: object, timeout: float = 60) -> None:
        assert callable(check)
        wait_for(lambda: check(self.status(name)), what=f"{name}: {what}", timeout=timeout,
                 describe=lambda: self.status(name))


@pytest.fixture
def model(cluster: Cluster) -> Iterator[Model]:
    ns = f"t{next(_namespaces)}"
    kubectl(cluster.kubeconfig, "apply", "-f", "-",
            input=f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n")
    m = Model(cluster.kubeconfig, ns, cluster.adapters / ns)
    m.adapters.mkdir(parents=True)
    m.kubectl("apply", "-f", "-", input=sim_model_yaml(MODEL, adapter_root=m.adapters,
                                                       namespace=ns, replicas=1))
    wait_for(lambda: len(m.pods()) == 1, what="the model's pod Ready", timeout=90)
    try:
        yield m
    finally:
        # Leave nothing running for the next test: adapters first (their finalizers
        # need the sidecars), then the pods.
        kubectl(cluster.kubeconfig, "-n", ns, "delete", "loraadapters", "--all",
                "--timeout=60s", check=False)
        kubectl(cluster.kubeconfig, "-n", ns, "delete", "deployment", MODEL, "--timeout=60s",
                check=False)
        wait_for(lambda: not m.kubectl("get", "pods", "-o", "name").strip(),
                 what="the model's pods gone", timeout=60)


def _loaded_names(status: dict[str, object]) -> set[str]:
    return {p["name"] for p in status.get("loadedPods") or []}  # type: ignore[attr-defined,index]


def test_apply_loads_on_every_pod_and_new_pods_get_it(model: Model) -> None:
    model.apply_adapter("sql")
    model.wait_status("sql", "Ready 1/1", lambda s: s.get("phase") == "Ready"
                      and s.get("ready") == "1/1")
    assert model.holding("sql") == {p["metadata"]["name"] for p in model.pods()}  # type: ignore[index]
    table = model.kubectl("get", "lora")
    assert table.split("\n")[0].split() == ["NAME", "BASEMODEL", "PHASE", "READY", "AGE"]
    assert table.split("\n")[1].split()[:4] == ["sql", MODEL, "Ready", "1/1"]

    model.scale(3)
    model.wait_status("sql", "Ready 3/3", lambda s: s.get("ready") == "3/3"
                      and s.get("phase") == "Ready")
    pods = {p["metadata"]["name"]: p["status"]["podIP"] for p in model.pods()}  # type: ignore[index]
    assert model.holding("sql") == set(pods)
    status = model.status("sql")
    assert {p["name"]: p["ip"] for p in status["loadedPods"]} == pods  # type: ignore[attr-defined,index]
    obj = get_object(model.kubeconfig, "loraadapters.brix.dev", model.namespace, "sql")
    assert obj is not None
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    events = json.loads(model.kubectl("get", "events", "-o", "json"))["items"]
    loaded = [e for e in events if e.get("reason") == "Loaded"
              and e["involvedObject"].get("name") == "sql"]
    assert {pod for pod in pods if any(pod in e["message"] for e in loaded)} == set(pods)


def test_a_deleted_pod_leaves_the_status_and_its_replacement_gets_it(model: Model) -> None:
    model.scale(2)
    model.apply_adapter("sql")
    model.wait_status("sql", "Ready 2/2", lambda s: s.get("ready") == "2/2")
    victim = model.pods()[0]["metadata"]["name"]  # type: ignore[index]
    model.kubectl("delete", "pod", str(victim), "--wait=false")
    model.wait_status("sql", "the deleted pod out of loadedPods and a new one in",
                      lambda s: victim not in _loaded_names(s) and len(_loaded_names(s)) == 2
                      and s.get("phase") == "Ready", timeout=90)
    assert model.holding("sql") == _loaded_names(model.status("sql"))


def test_replicas_places_on_that_many_pods(model: Model) -> None:
    model.scale(3)
    model.apply_adapter("sql", replicas=1)
    model.wait_status("sql", "Ready 1/1", lambda s: s.get("ready") == "1/1"
                      and s.get("phase") == "Ready")
    first = model.holding("sql")
    assert len(first) == 1
    assert first == _loaded_names(model.status("sql"))

    model.apply_adapter("sql", replicas=2)
    model.wait_status("sql", "Ready 2/2", lambda s: s.get("ready") == "2/2")
    second = model.holding("sql")
    assert len(second) == 2
    assert first <= second  # where it was loaded, it stays

    # The pod holding a copy goes: the copy is placed on another pod.
    lost = sorted(second)[0]
    model.kubectl("delete", "pod", lost, "--wait=false")
    model.wait_status("sql", "2/2 without the deleted pod",
                      lambda s: s.get("ready") == "2/2" and lost not in _loaded_names(s),
                      timeout=90)
    assert len(model.holding("sql")) == 2

    model.apply_adapter("sql", replicas=0)
    model.wait_status("sql", "0/0", lambda s: s.get("ready") == "0/0")
    wait_for(lambda: not model.holding("sql"), what="unloaded from every pod")


def test_kubectl_delete_unloads_everywhere(model: Model) -> None:
    model.scale(2)
    model.apply_adapter("sql")
    model.apply_adapter("chat")
    model.wait_status("sql", "Ready 2/2", lambda s: s.get("ready") == "2/2")
    model.wait_status("chat", "Ready 2/2", lambda s: s.get("ready") == "2/2")
    model.kubectl("delete", "lora", "sql", "--timeout=60s")
    assert get_object(model.kubeconfig, "loraadapters.brix.dev", model.namespace, "sql") is None
    assert model.holding("sql") == set()
    assert len(model.holding("chat")) == 2  # the other adapter is untouched


def test_a_new_source_is_reloaded_on_every_pod(model: Model) -> None:
    model.scale(2)
    model.apply_adapter("sql")
    model.wait_status("sql", "Ready 2/2", lambda s: s.get("ready") == "2/2")
    v2 = make_adapter_dir(model.adapters, "sql-v2")
    model.apply_adapter("sql", source=f"file://{v2}")

    def sources() -> set[str]:
        out = set()
        for pod in model.pods():
            for a in httpx.get(sidecar_url(pod) + "/v1/adapters", timeout=10).json()["data"]:
                if a["name"] == "sql":
                    out.add(a["path"])
        return out

    wait_for(lambda: sources() == {str(v2)}, what="every pod on the new source",
             describe=sources)
    model.wait_status("sql", "Ready 2/2 at generation 2",
                      lambda s: s.get("ready") == "2/2" and s.get("observedGeneration") == 2)


def test_a_source_the_sidecar_refuses_fails_with_its_message(model: Model) -> None:
    model.apply_adapter("sql", source="file:///nowhere/outside/the/roots")
    model.wait_status("sql", "Failed", lambda s: s.get("phase") == "Failed")
    status = model.status("sql")
    assert status["reason"] == "SourceRefused"
    assert "/nowhere/outside/the/roots" in str(status["message"])
    table = model.kubectl("get", "lora", "sql")
    assert table.split("\n")[1].split()[:4] == ["sql", MODEL, "Failed", "0/1"]


def test_the_operator_exports_adapter_phases(cluster: Cluster, model: Model) -> None:
    model.apply_adapter("sql")
    model.wait_status("sql", "Ready", lambda s: s.get("phase") == "Ready")
    text = httpx.get(cluster.operator_url + "/metrics", timeout=10).text
    ns = model.namespace
    assert (f'brix_lora_adapter_phase{{adapter="sql",base_model="{MODEL}",namespace="{ns}",'
            'phase="Ready"} 1.0') in text
    assert (f'brix_lora_adapter_ready_replicas{{adapter="sql",base_model="{MODEL}",'
            f'namespace="{ns}"}} 1.0') in text
