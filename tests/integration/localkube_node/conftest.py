"""One localkube (API server and node) for this folder's tests; each test uses its own
namespace. Also polling and client helpers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tests.helpers.localkube import kubectl, start_localkube
from tests.helpers.procs import ProcessGroup
from tests.helpers.wait import wait_until

T = TypeVar("T")


@dataclass
class Cluster:
    kubeconfig: Path
    state_dir: Path
    api: Any  # kubernetes.client.ApiClient
    core: Any  # CoreV1Api
    apps: Any  # AppsV1Api

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return kubectl(self.kubeconfig, *args, input=input, check=check).stdout


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("localkube")
    group = ProcessGroup(log_dir=base / "proc-logs")
    try:
        _, kubeconfig = start_localkube(group, base / "state")
        api = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig))
        yield Cluster(kubeconfig=kubeconfig, state_dir=base / "state", api=api,
                      core=client.CoreV1Api(api), apps=client.AppsV1Api(api))
        api.close()
    finally:
        group.stop_all()


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.core.create_namespace({"metadata": {"name": name}})
    yield name
    # Delete what the test made so that its processes stop before the next test.
    for dep in cluster.apps.list_namespaced_deployment(name).items:
        cluster.apps.delete_namespaced_deployment(dep.metadata.name, name)
    for pod in cluster.core.list_namespaced_pod(name).items:
        try:
            cluster.core.delete_namespaced_pod(pod.metadata.name, name, grace_period_seconds=1)
        except ApiException as exc:
            if exc.status != 404:  # already gone with its Deployment
                raise
    wait_until(lambda: not cluster.core.list_namespaced_pod(name).items,
               what=f"pods of {name} gone", timeout=60)




def http_server_deployment(name: str, replicas: int, *, extra_env: dict[str, str] | None = None,
                           host_port: int | None = None) -> dict[str, Any]:
    """A Deployment of ``python -m http.server`` bound to the pod's own address."""
    port: dict[str, Any] = {"name": "http", "containerPort": 8000}
    if host_port:
        port["hostPort"] = host_port
    env = [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    env += [{"name": k, "value": v} for k, v in (extra_env or {}).items()]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
                    "name": "web", "image": "python:3.11",
                    "command": ["python", "-m", "http.server", "--bind", "$(POD_IP)", "8000"],
                    "env": env, "ports": [port],
                    "readinessProbe": {"httpGet": {"path": "/", "port": "http"},
                                       "periodSeconds": 1},
                }]},
            },
        },
    }


def is_ready(pod: Any) -> bool:
    if pod.metadata.deletion_timestamp:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
