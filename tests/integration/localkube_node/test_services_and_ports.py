"""Endpoints and EndpointSlices follow readiness; hostPorts and NodePorts on 127.0.0.1."""

from __future__ import annotations

import socket
import sys
import urllib.request
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.helpers.procs import free_port
from tests.integration.localkube_node.conftest import (
    Cluster,
    http_server_deployment,
    is_ready,
    wait_until,
)


def get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return int(resp.status)


def endpoint_ips(cluster: Cluster, ns: str, name: str) -> tuple[set[str], set[str]]:
    """(ready, not ready) addresses of the Service's Endpoints."""
    ep = cluster.core.read_namespaced_endpoints(name, ns)
    ready: set[str] = set()
    not_ready: set[str] = set()
    for subset in ep.subsets or []:
        ready |= {a.ip for a in subset.addresses or []}
        not_ready |= {a.ip for a in subset.not_ready_addresses or []}
    return ready, not_ready


def slice_ready(cluster: Cluster, ns: str, name: str) -> dict[str, bool]:
    discovery: Any = client.DiscoveryV1Api(cluster.api)
    slices = discovery.list_namespaced_endpoint_slice(
        ns, label_selector=f"kubernetes.io/service-name={name}").items
    return {e.addresses[0]: bool(e.conditions.ready) for s in slices for e in s.endpoints or []}


def test_endpoints_follow_readiness(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    gate = tmp_path / "gate"  # an emptyDir linked here; a file in it makes the pod ready
    probe = [sys.executable, "-c",
             f"import os, sys; sys.exit(0 if os.path.exists({str(gate / 'ready')!r}) else 1)"]
    cluster.core.create_namespaced_pod(namespace, {
        "metadata": {"name": "gated", "labels": {"app": "gated"}},
        "spec": {"terminationGracePeriodSeconds": 1,
                 "volumes": [{"name": "gate", "emptyDir": {}}],
                 "containers": [{
                     "name": "main", "image": "unused",
                     "command": [sys.executable, "-c", "import time; time.sleep(600)"],
                     "ports": [{"name": "http", "containerPort": 8000}],
                     "volumeMounts": [{"name": "gate", "mountPath": str(gate)}],
                     "readinessProbe": {"exec": {"command": probe}, "periodSeconds": 1},
                 }]},
    })
    cluster.core.create_namespaced_service(namespace, {
        "metadata": {"name": "gated"},
        "spec": {"selector": {"app": "gated"}, "ports": [{"port": 80, "targetPort": "http"}]},
    })
    ip = wait_until(lambda: cluster.core.read_namespaced_pod("gated", namespace).status.pod_ip,
                    what="the pod's address")
    assert wait_until(lambda: endpoint_ips(cluster, namespace, "gated") == (set(), {ip}),
                      what="the unready pod under notReadyAddresses")
    assert wait_until(lambda: slice_ready(cluster, namespace, "gated") == {ip: False},
                      what="an unready endpoint in the slice")

    (gate / "ready").write_text("yes")
    wait_until(lambda: endpoint_ips(cluster, namespace, "gated") == ({ip}, set()),
               what="the ready pod under addresses")
    wait_until(lambda: slice_ready(cluster, namespace, "gated") == {ip: True},
               what="a ready endpoint in the slice")
    ep = cluster.core.read_namespaced_endpoints("gated", namespace)
    assert ep.subsets[0].ports[0].port == 8000

    (gate / "ready").unlink()
    wait_until(lambda: endpoint_ips(cluster, namespace, "gated") == (set(), {ip}),
               what="the pod out of addresses again")
    assert not is_ready(cluster.core.read_namespaced_pod("gated", namespace))


def test_host_port_reaches_the_pod_on_127_0_0_1(cluster: Cluster, namespace: str) -> None:
    port = free_port()
    cluster.apps.create_namespaced_deployment(
        namespace, http_server_deployment("front", 1, host_port=port))
    wait_until(lambda: _answers(f"http://127.0.0.1:{port}/"),
               what=f"an answer on 127.0.0.1:{port}")


def test_node_port_service_reaches_ready_pods(cluster: Cluster, namespace: str) -> None:
    node_port = _free_node_port()
    cluster.apps.create_namespaced_deployment(namespace, http_server_deployment("np", 2))
    cluster.core.create_namespaced_service(namespace, {
        "metadata": {"name": "np"},
        "spec": {"type": "NodePort", "selector": {"app": "np"},
                 "ports": [{"port": 80, "targetPort": "http", "nodePort": node_port}]},
    })
    wait_until(lambda: _answers(f"http://127.0.0.1:{node_port}/"),
               what=f"an answer on the NodePort {node_port}")
    wait_until(lambda: len(endpoint_ips(cluster, namespace, "np")[0]) == 2,
               what="both pods ready behind the Service")
    for i in range(6):  # connections go round-robin over the ready pods
        assert get(f"http://127.0.0.1:{node_port}/?round={i}") == 200
    pods = cluster.core.list_namespaced_pod(namespace).items
    for pod in pods:
        logs = cluster.kubectl("-n", namespace, "logs", pod.metadata.name)
        assert "round=" in logs, f"{pod.metadata.name} got no request through the NodePort"
    # Scaled to zero, nothing is behind the port: connections are closed, not hung.
    cluster.kubectl("-n", namespace, "scale", "deployment/np", "--replicas=0")
    wait_until(lambda: not cluster.core.list_namespaced_pod(namespace).items,
               what="the pods gone")
    wait_until(lambda: not _answers(f"http://127.0.0.1:{node_port}/"),
               what="no answer with no pod")


def test_load_balancer_service_is_exposed_at_its_port(cluster: Cluster,
                                                     namespace: str) -> None:
    port = free_port()
    cluster.apps.create_namespaced_deployment(namespace, http_server_deployment("lb", 1))
    cluster.core.create_namespaced_service(namespace, {
        "metadata": {"name": "lb"},
        "spec": {"type": "LoadBalancer", "selector": {"app": "lb"},
                 "ports": [{"port": port, "targetPort": "http"}]},
    })
    wait_until(lambda: _answers(f"http://127.0.0.1:{port}/"),
               what=f"an answer on the LoadBalancer port {port}")

    def ingress() -> Any:
        status = cluster.core.read_namespaced_service("lb", namespace).status
        return status.load_balancer and status.load_balancer.ingress
    (entry,) = wait_until(ingress, what="the Service's load balancer ingress")
    assert entry.ip == "127.0.0.1"


def _answers(url: str) -> bool:
    try:
        return get(url) == 200
    except OSError:
        return False


def _free_node_port() -> int:
    for port in range(30000 + free_port() % 2000, 32767):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in the NodePort range")

