"""A restart of localkube keeps the objects (state dir persistence)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml

from tests.helpers.localkube import admin_http, kubeconfig_parts, kubectl, start_localkube
from tests.helpers.procs import ProcessGroup
from tests.integration.localkube_api.conftest import eventually
from tests.integration.localkube_api.test_kubectl import CRD, gadget


def test_objects_survive_a_restart(procs: ProcessGroup, tmp_path: Path,
                                   request: pytest.FixtureRequest) -> None:
    state = tmp_path / "state"
    proc, kc = start_localkube(procs, state, node=False)
    kubectl(kc, "apply", "-f", "-", input=CRD)
    kubectl(kc, "create", "namespace", "keep")
    kubectl(kc, "apply", "-f", "-", input=gadget("g", "keep", size=2))
    kubectl(kc, "create", "configmap", "c", "-n", "keep", "--from-literal=a=b")
    with admin_http(kc) as http:
        before = http.get("/api/v1/namespaces/keep/configmaps/c").json()
    assert proc.stop() == 0
    assert (state / "objects.json").exists()

    _, kc2 = start_localkube(procs, state, node=False)
    assert kubeconfig_parts(kc2) == kubeconfig_parts(kc)  # the same token and CA
    http = admin_http(kc2)
    request.addfinalizer(http.close)
    after = http.get("/api/v1/namespaces/keep/configmaps/c").json()
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["data"] == {"a": "b"}
    lines = kubectl(kc2, "get", "gadgets", "-n", "keep").stdout.splitlines()
    assert lines[1].split()[:2] == ["g", "2"]
    created = http.post("/api/v1/namespaces/keep/configmaps",
                        json={"metadata": {"name": "new"}}).json()
    assert int(created["metadata"]["resourceVersion"]) > int(
        before["metadata"]["resourceVersion"])
    # The history of changes is not kept: a watch from an older point must relist.
    with http.stream("GET", "/api/v1/namespaces/keep/configmaps",
                     params={"watch": "1", "timeoutSeconds": "1", "resourceVersion": "1"}) as r:
        first = next(line for line in r.iter_lines() if line)
    assert '"code":410' in first


def test_no_persist_starts_empty(procs: ProcessGroup, tmp_path: Path,
                                 request: pytest.FixtureRequest) -> None:
    state = tmp_path / "state"
    proc, kc = start_localkube(procs, state, node=False, extra_args=["--no-persist"])
    kubectl(kc, "create", "configmap", "c", "--from-literal=a=b")
    with admin_http(kc) as http:
        seen = http.get("/api/v1/namespaces/default/configmaps/c").json()[
            "metadata"]["resourceVersion"]
    proc.stop()
    _, kc2 = start_localkube(procs, state, node=False, extra_args=["--no-persist"])
    assert kubectl(kc2, "get", "configmaps", "-o", "name").stdout.strip() == ""
    assert not (state / "objects.json").exists()
    # It says it lost them: a watch from a number of the first run is answered 410 (the
    # client lists again), even after the new run made more changes than the first one
    # (its 4 namespaces and the ConfigMap).
    http = admin_http(kc2)
    request.addfinalizer(http.close)
    for i in range(20):
        assert http.post("/api/v1/namespaces/default/configmaps",
                         json={"metadata": {"name": f"n{i}"}}).status_code == 201
    with http.stream("GET", "/api/v1/namespaces/default/configmaps",
                     params={"watch": "1", "timeoutSeconds": "1", "resourceVersion": seen}) as r:
        first = next(line for line in r.iter_lines() if line)
    assert '"code":410' in first


def test_a_corrupt_state_file_is_kept_aside(procs: ProcessGroup, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "objects.json").write_text("{not json")
    _, kc = start_localkube(procs, state, node=False)
    assert kubectl(kc, "get", "namespaces", "-o", "name").stdout.split() == [
        "namespace/default", "namespace/kube-node-lease", "namespace/kube-public",
        "namespace/kube-system"]
    assert (state / "objects.broken.json").read_text() == "{not json"


SERVER = ("import http.server, os; http.server.HTTPServer((os.environ['BIND_HOST'], 9300), "
          "http.server.SimpleHTTPRequestHandler).serve_forever()")


def test_pods_run_again_after_a_restart(procs: ProcessGroup, tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc, kc = start_localkube(procs, state)
    kubectl(kc, "apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "srv"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "srv"}},
                 "template": {"metadata": {"labels": {"app": "srv"}}, "spec": {"containers": [{
                     "name": "s", "image": "unused", "command": ["python", "-c", SERVER],
                     "readinessProbe": {"tcpSocket": {"port": 9300}, "periodSeconds": 1}}]}}},
    }))

    def answering_pod(kubeconfig: Path) -> str | None:
        with admin_http(kubeconfig) as http:
            pods = http.get("/api/v1/namespaces/default/pods",
                            params={"labelSelector": "app=srv"}).json()["items"]
        ready = [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                        for c in p.get("status", {}).get("conditions", []))]
        if len(ready) != 1:
            return None
        ip = ready[0]["status"]["podIP"]
        try:
            httpx.get(f"http://{ip}:9300/", timeout=2)
        except httpx.HTTPError:
            return None
        return str(ready[0]["metadata"]["uid"])

    assert proc.url is not None
    before = eventually(lambda: answering_pod(kc), timeout=60)
    assert proc.stop() == 0
    _, kc2 = start_localkube(procs, state)
    after = eventually(lambda: answering_pod(kc2), timeout=60)
    assert after == before  # the same pod object, running again
