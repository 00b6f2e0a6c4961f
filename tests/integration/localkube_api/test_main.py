"""``python -m localkube``: ready line, kubeconfig, port 0, a busy port, stopping."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
import yaml

from localkube.api import audit
from tests.helpers.localkube import admin_http, anonymous_http, kubectl, start_localkube
from tests.helpers.procs import ProcessGroup
from tests.integration.localkube_api.conftest import eventually


def test_ready_line_kubeconfig_and_clean_stop(procs: ProcessGroup, tmp_path: Path) -> None:
    proc, kubeconfig = start_localkube(procs, tmp_path / "state", node=False)
    assert proc.url is not None
    assert proc.url.startswith("https://127.0.0.1:")
    cfg = yaml.safe_load(kubeconfig.read_text())
    assert cfg["current-context"] == "localkube"
    assert cfg["clusters"][0]["cluster"]["server"] == proc.url
    assert kubeconfig.stat().st_mode & 0o077 == 0  # only the owner may read it
    with anonymous_http(kubeconfig) as anonymous:
        assert anonymous.get("/readyz").text == "ok"  # public, as Kubernetes' health checks
        assert anonymous.get("/api/v1/namespaces").status_code == 401
    assert proc.stop() == 0


def test_a_busy_port_is_a_clear_error(procs: ProcessGroup, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = procs.start([sys.executable, "-m", "localkube", "--port", str(port),
                            "--state-dir", str(tmp_path / "state"), "--no-node"],
                           name="localkube-busy", ready=None)
        assert proc.popen.wait(30) == 1
    proc.wait_for(rf"could not listen on 127\.0\.0\.1:{port}.*--port")


def test_bad_settings_are_refused_with_their_names(procs: ProcessGroup, tmp_path: Path) -> None:
    proc = procs.start([sys.executable, "-m", "localkube", "--port", "0", "--state-dir",
                        str(tmp_path / "state"), "--watch-history", "many"],
                       name="localkube-bad", ready=None)
    assert proc.popen.wait(30) == 2
    proc.wait_for("--watch-history / BRIX_WATCH_HISTORY")


def test_settings_from_the_environment(procs: ProcessGroup, tmp_path: Path) -> None:
    proc = procs.start([sys.executable, "-m", "localkube"], name="localkube-env",
                       env={"BRIX_PORT": "0", "BRIX_STATE_DIR": str(tmp_path / "envstate"),
                            "BRIX_NODE": "false", "BRIX_PERSIST": "false"})
    assert proc.url is not None
    assert (tmp_path / "envstate" / "kubeconfig").exists()
    assert proc.stop() == 0
    assert not (tmp_path / "envstate" / "objects.json").exists()


def test_events_expire_after_their_time_to_live(procs: ProcessGroup, tmp_path: Path,
                                                request: pytest.FixtureRequest) -> None:
    _, kc = start_localkube(procs, tmp_path / "state", node=False,
                            extra_args=["--event-ttl", "1"])
    base = "/api/v1/namespaces/default"
    http = admin_http(kc)
    request.addfinalizer(http.close)
    http.post(f"{base}/events", json={"metadata": {"name": "e"}, "reason": "Test",
                                      "involvedObject": {"kind": "Pod", "name": "p"}})
    http.post(f"{base}/configmaps", json={"metadata": {"name": "kept"}})
    eventually(lambda: http.get(f"{base}/events/e").status_code == 404, timeout=20)
    assert http.get(f"{base}/configmaps/kept").status_code == 200


def test_stopping_ends_open_watches(procs: ProcessGroup, tmp_path: Path) -> None:
    proc, kc = start_localkube(procs, tmp_path / "state", node=False)
    with admin_http(kc, timeout=30) as c, c.stream(
            "GET", "/api/v1/configmaps", params={"watch": "1"}) as watch:
        assert watch.status_code == 200
        assert proc.stop(timeout=10) == 0
        assert list(watch.iter_lines()) == []  # the stream ended cleanly


def test_the_audit_log_records_who_did_what(procs: ProcessGroup, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    _, kc = start_localkube(procs, tmp_path / "state", node=False,
                            extra_args=["--audit-log", str(log)])
    kubectl(kc, "create", "serviceaccount", "bot")
    token = kubectl(kc, "create", "token", "bot").stdout.strip()
    with admin_http(kc) as admin:
        admin.get("/api/v1/namespaces/default/configmaps")
        assert admin.get("/api/v1/namespaces/default/configmaps/absent").status_code == 404
    with anonymous_http(kc) as anonymous:
        anonymous.get("/api/v1/namespaces/default/secrets")
        anonymous.delete("/api/v1/namespaces/default/pods/p",
                         headers={"Authorization": f"Bearer {token}"})
    records = [{k: r.get(k) for k in ("user", "verb", "resource", "subresource", "namespace",
                                      "name", "code", "decision")} for r in audit.read(log)]
    assert {"user": "kubernetes-admin", "verb": "list", "resource": "configmaps",
            "subresource": "", "namespace": "default", "name": "", "code": 200,
            "decision": "allow"} in records
    assert {"user": "kubernetes-admin", "verb": "get", "resource": "configmaps",
            "subresource": "", "namespace": "default", "name": "absent", "code": 404,
            "decision": "allow"} in records
    assert {"user": "kubernetes-admin", "verb": "create", "resource": "serviceaccounts",
            "subresource": "token", "namespace": "default", "name": "bot", "code": 201,
            "decision": "allow"} in records
    assert {"user": "system:serviceaccount:default:bot", "verb": "delete", "resource": "pods",
            "subresource": "", "namespace": "default", "name": "p", "code": 403,
            "decision": "forbid"} in records
    assert any(r["code"] == 401 and r["decision"] == "unauthenticated" for r in records)
    with admin_http(kc) as admin, admin.stream("GET", "/api/v1/namespaces/default/pods",
                                               params={"watch": "1"}) as watch:
        assert watch.status_code == 200
        # recorded while the stream is open, not when it ends
        assert any(r["verb"] == "watch" and r["resource"] == "pods" for r in audit.read(log))
