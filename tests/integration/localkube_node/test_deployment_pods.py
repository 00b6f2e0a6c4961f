"""A Deployment of small HTTP servers: pods Ready on distinct addresses that answer; scaling
with kubectl; a rolling update; the Deployment's status."""

from __future__ import annotations

import os
import urllib.request
from typing import Any

from tests.integration.localkube_node.conftest import (
    Cluster,
    http_server_deployment,
    is_ready,
    wait_until,
)


def ready_pods(cluster: Cluster, ns: str, app: str, count: int) -> list[Any]:
    def probe() -> list[Any] | None:
        pods = cluster.core.list_namespaced_pod(ns, label_selector=f"app={app}").items
        live = [p for p in pods if not p.metadata.deletion_timestamp]
        if len(live) == count and len(pods) == count and all(is_ready(p) for p in live):
            return live
        return None
    return wait_until(probe, what=f"{count} ready pods of {app}")


def answers(ip: str) -> int:
    with urllib.request.urlopen(f"http://{ip}:8000/", timeout=5) as resp:
        return int(resp.status)


def test_pods_are_ready_on_distinct_addresses_that_answer(cluster: Cluster,
                                                           namespace: str) -> None:
    cluster.apps.create_namespaced_deployment(namespace, http_server_deployment("web", 2))
    pods = ready_pods(cluster, namespace, "web", 2)
    ips = [p.status.pod_ip for p in pods]
    assert len(set(ips)) == 2
    for pod in pods:
        ip = pod.status.pod_ip
        assert ip.startswith("127.0.")
        assert int(ip.split(".")[3]) >= 10
        assert pod.status.host_ip == "127.0.0.1"
        assert pod.spec.node_name == "localkube"
        assert answers(ip) == 200
        # Name, labels and owner as a Deployment's pods have them.
        (owner,) = pod.metadata.owner_references
        assert (owner.kind, owner.name, owner.controller) == ("Deployment", "web", True)
        template_hash = pod.metadata.labels["pod-template-hash"]
        assert pod.metadata.name.startswith(f"web-{template_hash}-")
        (status,) = pod.status.container_statuses
        assert status.ready
        assert status.state.running is not None
        assert status.restart_count == 0


def test_kubectl_scale_2_4_1_and_status_follows(cluster: Cluster, namespace: str) -> None:
    cluster.apps.create_namespaced_deployment(namespace, http_server_deployment("web", 2))
    ready_pods(cluster, namespace, "web", 2)
    for replicas in (4, 1):
        cluster.kubectl("-n", namespace, "scale", "deployment/web", f"--replicas={replicas}")
        pods = ready_pods(cluster, namespace, "web", replicas)
        assert len({p.status.pod_ip for p in pods}) == replicas
        for pod in pods:
            assert answers(pod.status.pod_ip) == 200

        def status_settled(n: int = replicas) -> Any:
            dep = cluster.apps.read_namespaced_deployment("web", namespace)
            s = dep.status
            ok = (s.observed_generation == dep.metadata.generation and s.replicas == n
                  and s.ready_replicas == n and s.available_replicas == n
                  and s.updated_replicas == n)
            return s if ok else None
        status = wait_until(status_settled, what=f"deployment status at {replicas}")
        conditions = {c.type: c for c in status.conditions}
        assert conditions["Available"].status == "True"
        assert conditions["Progressing"].reason == "NewReplicaSetAvailable"


def test_a_template_change_rolls_every_pod_over(cluster: Cluster, namespace: str) -> None:
    cluster.apps.create_namespaced_deployment(namespace, http_server_deployment("web", 3))
    before = ready_pods(cluster, namespace, "web", 3)
    old_hash = before[0].metadata.labels["pod-template-hash"]
    cluster.kubectl("-n", namespace, "set", "env", "deployment/web", "COLOUR=blue")
    cluster.kubectl("-n", namespace, "rollout", "status", "deployment/web", "--timeout=120s")
    after = ready_pods(cluster, namespace, "web", 3)
    hashes = {p.metadata.labels["pod-template-hash"] for p in after}
    assert len(hashes) == 1
    assert old_hash not in hashes
    assert not {p.metadata.uid for p in before} & {p.metadata.uid for p in after}
    env = {e.name: e.value for e in after[0].spec.containers[0].env}
    assert env["COLOUR"] == "blue"


def test_scaling_down_stops_every_container_process(cluster: Cluster, namespace: str) -> None:
    """Repeatedly, while readiness probes run: every process goes with its pod."""
    cluster.apps.create_namespaced_deployment(namespace, http_server_deployment("churn", 0))
    for _ in range(3):
        cluster.kubectl("-n", namespace, "scale", "deployment/churn", "--replicas=8")
        pods = ready_pods(cluster, namespace, "churn", 8)
        pids = [int(p.status.container_statuses[0].container_id.removeprefix("localkube://"))
                for p in pods]
        cluster.kubectl("-n", namespace, "scale", "deployment/churn", "--replicas=0")
        wait_until(lambda: not cluster.core.list_namespaced_pod(namespace).items,
                   what="every pod gone")
        wait_until(lambda pids=pids: not [pid for pid in pids if _alive(pid)],
                   what="every container process gone", timeout=10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
