"""``--workers 2`` on Kubernetes discovery: sim pods that localkube's kubelet runs.

The supervisor watches the API once and hands the routing table to every worker:
each worker (told apart by the process holding the gateway's end of a
connection) routes to every Ready pod, follows a scale-up and a scale-down, and
the gateway's log shows one list of the pods, not one per worker.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from typing import Any

import pytest
from kubernetes import client, config

from tests.helpers.gateway import start_gateway
from tests.helpers.gateway_workers import exchange, workers_of
from tests.helpers.localkube import start_localkube
from tests.helpers.procs import Proc, ProcessGroup
from tests.helpers.sim import FAST, sim_deployment
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.integration

PODS_LISTED = re.compile(r"gateway\.discovery: listed \d+ pods")


def pods_per_worker(gw: Proc, pids: set[int], connections: int = 24) -> dict[int, set[str]]:
    """Round-robin requests, each on a new connection: the pods each worker sent them to."""
    assert gw.url is not None
    body = json.dumps({"model": "m1", "prompt": "x", "max_tokens": 1}).encode()
    seen: dict[int, set[str]] = defaultdict(set)
    for _ in range(connections):
        worker, status, headers, data = exchange(gw.url, pids, "POST", "/v1/completions", body)
        assert status == 200, data
        seen[worker].add(headers["x-brix-pod"])
    return seen


def test_every_worker_routes_to_the_pods_one_discovery_finds(
    procs: ProcessGroup, tmp_path: Any,
) -> None:
    _, kubeconfig = start_localkube(procs, tmp_path / "kube")
    api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    try:
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        apps.create_namespaced_deployment(
            "default", sim_deployment("m1", 2, (*FAST, "--log-level", "warning")))
        gw = start_gateway(procs, kubeconfig=kubeconfig, timeout=60, extra_args=[
            "--workers", "2", "--routing", "round-robin"])
        pids = workers_of(gw)
        assert len(pids) == 2

        def names() -> set[str]:
            return {p.metadata.name for p in core.list_namespaced_pod(
                "default", label_selector="brix.dev/model=m1").items}

        def every_worker_routes_to_all(n: int) -> dict[int, set[str]] | None:
            pods = names()
            if len(pods) != n:
                return None
            seen = pods_per_worker(gw, pids)
            return seen if set(seen) == pids and all(s == pods for s in seen.values()) else None

        wait_until(lambda: every_worker_routes_to_all(2),
                   "each worker routing to both pods", timeout=120, interval=0.5)
        apps.patch_namespaced_deployment_scale("m1", "default", {"spec": {"replicas": 3}})
        wait_until(lambda: every_worker_routes_to_all(3),
                   "each worker routing to the third pod too", timeout=120, interval=0.5)
        apps.patch_namespaced_deployment_scale("m1", "default", {"spec": {"replicas": 1}})
        wait_until(lambda: every_worker_routes_to_all(1),
                   "each worker routing to the one pod left only", timeout=120, interval=0.5)
        # One watch of the pods for the whole gateway (the supervisor's), not one a worker.
        listed = PODS_LISTED.findall(gw.output())
        assert len(listed) == 1, listed
    finally:
        api.close()
