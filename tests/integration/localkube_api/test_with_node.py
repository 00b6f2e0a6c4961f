"""With the node running pods: ``kubectl logs``, and Prometheus finding pods through
localkube's HTTP service discovery (and following a scale-up)."""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.localkube import anonymous_http, kubectl, kubectl_binary, start_localkube
from tests.helpers.procs import ProcessGroup
from tests.helpers.prometheus import query, start_prometheus
from tests.integration.localkube_api.conftest import Localkube, eventually

NS = "demo"
METRICS_SERVER = textwrap.dedent("""\
    import http.server, os, sys
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"demo_requests_total 7\\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass
    print("demo serving on", os.environ["BIND_HOST"], flush=True)
    print("to stderr too", file=sys.stderr, flush=True)
    http.server.HTTPServer((os.environ["BIND_HOST"], 9200), Handler).serve_forever()
    """)


def demo_deployment(replicas: int) -> str:
    return yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "demo", "namespace": NS},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "demo"}},
                 "template": {"metadata": {"labels": {"app": "demo", "brix.dev/model": "m"}},
                              "spec": {"containers": [{
                                  "name": "web", "image": "unused",
                                  "command": ["python", "-c", METRICS_SERVER],
                                  "ports": [{"name": "metrics", "containerPort": 9200}],
                                  "readinessProbe": {
                                      "httpGet": {"path": "/metrics", "port": 9200},
                                      "periodSeconds": 1}}]}}},
    })


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Localkube]:
    state = tmp_path_factory.mktemp("localkube-node")
    group = ProcessGroup(log_dir=state / "test-logs")
    try:
        proc, kubeconfig = start_localkube(group, state / "state", node=True)
        assert proc.url is not None
        kubectl(kubeconfig, "create", "namespace", NS)
        kubectl(kubeconfig, "apply", "-f", "-", input=demo_deployment(2))
        yield Localkube(proc=proc, kubeconfig=kubeconfig, url=proc.url)
    finally:
        group.stop_all()


def sd_targets(kubeconfig: Path) -> list[dict[str, Any]]:
    with anonymous_http(kubeconfig) as anonymous:  # as Prometheus asks: no credentials
        r = anonymous.get("/localkube/v1/prometheus-sd", params={"namespace": NS})
    r.raise_for_status()
    groups: list[dict[str, Any]] = r.json()
    return groups


def ready_pods(kubeconfig: Path) -> list[str]:
    pods = json.loads(kubectl(kubeconfig, "get", "pods", "-n", NS, "-l", "app=demo",
                              "-o", "json").stdout)["items"]
    return [p["metadata"]["name"] for p in pods
            if any(c["type"] == "Ready" and c["status"] == "True"
                   for c in p.get("status", {}).get("conditions", []))
            and not p["metadata"].get("deletionTimestamp")]


def test_kubectl_logs(cluster: Localkube) -> None:
    kc = cluster.kubeconfig
    pod = eventually(lambda: ready_pods(kc), timeout=60)[0]
    out = eventually(lambda: kubectl(kc, "logs", pod, "-n", NS).stdout, timeout=30)
    assert "demo serving on 127.0.0." in out
    assert "to stderr too" in out
    tail = kubectl(kc, "logs", pod, "-n", NS, "--tail=1").stdout
    assert len(tail.strip().splitlines()) == 1
    assert kubectl(kc, "logs", pod, "-n", NS, "-c", "web").stdout == out
    missing = kubectl(kc, "logs", pod, "-n", NS, "-c", "nope", check=False)
    assert missing.returncode != 0
    assert "nope" in missing.stderr


def test_kubectl_logs_follow(cluster: Localkube) -> None:
    kc = cluster.kubeconfig
    pod = eventually(lambda: ready_pods(kc), timeout=60)[0]
    with subprocess.Popen(
        [kubectl_binary(), "--kubeconfig", str(kc), "logs", "-f", pod, "-n", NS],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    ) as follow:
        try:
            assert follow.stdout is not None
            first = follow.stdout.readline()
            assert "demo serving on" in first
            assert follow.poll() is None  # still following
        finally:
            follow.terminate()
            follow.wait(10)


def test_service_discovery_filters(cluster: Localkube) -> None:
    kc = cluster.kubeconfig
    ready = eventually(lambda: ready_pods(kc), timeout=60)

    def sd(**params: str) -> list[dict[str, Any]]:
        with anonymous_http(kc) as anonymous:
            r = anonymous.get("/localkube/v1/prometheus-sd", params=params)
        r.raise_for_status()
        groups: list[dict[str, Any]] = r.json()
        return groups

    def names(groups: list[dict[str, Any]]) -> set[str]:
        return {g["labels"]["__meta_kubernetes_pod_name"] for g in groups}

    assert names(sd(namespace=NS)) == set(ready)
    assert names(sd(labelSelector="app=demo")) == set(ready)
    assert sd(labelSelector="app=other") == []
    assert sd(namespace="default") == []
    assert sd(port="nope") == []
    assert {g["targets"][0].split(":")[1] for g in sd(namespace=NS, port="metrics")} == {"9200"}
    with anonymous_http(kc) as anonymous:
        bad = anonymous.get("/localkube/v1/prometheus-sd",
                            params={"labelSelector": "app in demo"})
    assert bad.status_code == 400


def test_prometheus_scrapes_pods_found_through_http_sd(cluster: Localkube,
                                                       procs: ProcessGroup,
                                                       tmp_path: Path) -> None:
    kc = cluster.kubeconfig
    eventually(lambda: len(ready_pods(kc)) == 2, timeout=60)
    groups = eventually(lambda: (g := sd_targets(kc)) and len(g) == 2 and g,
                        timeout=30)
    ips = {g["labels"]["__meta_kubernetes_pod_ip"] for g in groups}
    assert len(ips) == 2
    assert all(g["labels"]["__meta_kubernetes_pod_container_port_name"] == "metrics"
               for g in groups)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{
            "job_name": "pods",
            "scrape_interval": "1s",
            "http_sd_configs": [{
                "url": f"{cluster.url}/localkube/v1/prometheus-sd?namespace={NS}",
                "tls_config": {"ca_file": str(kc.parent / "tls" / "ca.crt")},
                "refresh_interval": "1s"}],
            "relabel_configs": [
                {"source_labels": ["__meta_kubernetes_pod_label_app"], "regex": "demo",
                 "action": "keep"},
                {"source_labels": ["__meta_kubernetes_pod_container_port_name"],
                 "regex": "metrics", "action": "keep"},
                {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                {"source_labels": ["__meta_kubernetes_pod_label_brix_dev_model"],
                 "target_label": "model"},
            ],
        }],
    }
    _, prom = start_prometheus(procs, tmp_path / "prometheus", config)

    def scraped_pods() -> set[str]:
        return {r["metric"]["pod"] for r in query(prom, 'demo_requests_total{namespace="demo"}')}

    assert eventually(lambda: len(scraped_pods()) == 2 and scraped_pods(),
                      timeout=60) == set(ready_pods(kc))
    result = query(prom, "demo_requests_total")
    assert {r["metric"]["model"] for r in result} == {"m"}

    kubectl(kc, "scale", "deployment/demo", "-n", NS, "--replicas=3")
    eventually(lambda: len(ready_pods(kc)) == 3, timeout=60)
    assert eventually(lambda: len(scraped_pods()) == 3 and scraped_pods(),
                      timeout=60) == set(ready_pods(kc))
