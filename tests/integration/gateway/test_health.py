"""``GET /health``: 200 while the gateway can route, 503 (OpenAI's shape) before."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.helpers.gateway import start_gateway
from tests.helpers.localkube import kubectl, start_localkube
from tests.helpers.procs import REPO, ProcessGroup, free_port
from tests.helpers.sim import FAST, start_sim

pytestmark = pytest.mark.integration


def test_health_is_200_with_configured_routes(procs: ProcessGroup) -> None:
    engine = start_sim(procs, name="m1", extra_args=FAST)
    gw = start_gateway(procs, extra_args=["--static-routes", f"m1={engine.url}"])
    r = httpx.get(f"{gw.url}/health", timeout=10)
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok"}


def test_health_is_503_until_discovery_has_listed_the_cluster(
    procs: ProcessGroup, tmp_path: Path,
) -> None:
    # A kubeconfig whose API server is not there: the gateway is alive, cannot route.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "http://127.0.0.1:{free_port()}"}}}}]
users: [{{name: u, user: {{}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
""")
    gw = start_gateway(procs, kubeconfig=kubeconfig)
    assert httpx.get(f"{gw.url}/healthz", timeout=10).status_code == 200
    r = httpx.get(f"{gw.url}/health", timeout=10)
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert error["code"] == "not_ready"
    assert error["type"] == "service_unavailable"
    assert "pods" in error["message"]

    _, live = start_localkube(procs, tmp_path / "kube", node=False)
    kubectl(live, "apply", "-f", str(REPO / "k8s" / "crds" / "loraadapter.yaml"))
    gw2 = start_gateway(procs, kubeconfig=live)
    deadline = time.monotonic() + 30
    while (code := httpx.get(f"{gw2.url}/health", timeout=10).status_code) != 200:
        assert code == 503
        assert time.monotonic() < deadline, "the gateway never listed the cluster"
        time.sleep(0.1)
