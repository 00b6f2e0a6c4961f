"""Two operator replicas with Kopf peering: only the one with the higher priority works.

localkube (no node) with Kopf's peering CRDs (k8s/crds); the operator creates
its ClusterKopfPeering object; the adapters' pods are registered by the test
(sim + sidecar).
Which replica works is read from each one's /metrics: only an active replica
reconciles, so only it reports adapters.
Last, a replica bound to a pod's address (not 127.0.0.1) as in a cluster.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.helpers.localkube import kubectl, start_localkube
from tests.helpers.operator import (
    adapter_status,
    adapter_yaml,
    core_api,
    install_crds,
    make_adapter_dir,
    register_pod,
    start_operator,
    wait_for,
)
from tests.helpers.procs import ProcessGroup, free_port
from tests.helpers.sidecar import start_sidecar
from tests.helpers.sim import FAST, start_sim


def reports(url: str, adapter: str) -> bool:
    text = httpx.get(url + "/metrics", timeout=10).text
    return f'adapter="{adapter}"' in text


def test_only_the_leading_replica_reconciles_and_the_other_takes_over(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    _, kubeconfig = start_localkube(procs, tmp_path / "kube", node=False)
    install_crds(kubeconfig, peering=True)  # the operator creates the peering object
    adapters = tmp_path / "adapters"
    engine = start_sim(procs, name="m", extra_args=FAST)
    assert engine.url is not None
    port = free_port()
    start_sidecar(procs, engine_url=engine.url,
                  extra_args=("--port", str(port), "--adapter-roots", str(adapters)))
    register_pod(core_api(kubeconfig), namespace="default", name="pod-a", model="m",
                 sidecar_port=port)

    leader = start_operator(procs, kubeconfig=kubeconfig, standalone=False, name="op-high",
                            extra_args=("--priority", "100", "--resync-interval", "5"))
    follower = start_operator(procs, kubeconfig=kubeconfig, standalone=False, name="op-low",
                              extra_args=("--priority", "10", "--resync-interval", "5"))
    assert leader.url is not None
    assert follower.url is not None
    follower.wait_for("Pausing operations in favour", timeout=60)  # Kopf, as it pauses

    for name in ("one", "two"):
        kubectl(kubeconfig, "apply", "-f", "-", input=adapter_yaml(
            name, base_model="m", source=f"file://{make_adapter_dir(adapters, name)}"))
    wait_for(lambda: adapter_status(kubeconfig, "default", "one").get("phase") == "Ready",
             what="one Ready")
    assert reports(leader.url, "one")
    assert not reports(follower.url, "one")

    leader.stop()  # a graceful exit withdraws it from the peering object
    kubectl(kubeconfig, "apply", "-f", "-", input=adapter_yaml(
        "three", base_model="m", source=f"file://{make_adapter_dir(adapters, 'three')}"))
    wait_for(lambda: adapter_status(kubeconfig, "default", "three").get("phase") == "Ready",
             what="three Ready, by the replica that was paused", timeout=90)
    assert reports(follower.url, "three")


def test_bound_to_a_pod_address_it_announces_itself_and_serves_liveness(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    # In a pod the operator binds the pod's IP, not loopback's 127.0.0.1: its
    # ready line waits on Kopf's liveness endpoint at that same address.
    _, kubeconfig = start_localkube(procs, tmp_path / "kube", node=False)
    install_crds(kubeconfig)
    liveness = free_port()
    op = start_operator(procs, kubeconfig=kubeconfig, env={"BIND_HOST": "127.0.0.3"},
                        extra_args=("--liveness-port", str(liveness)), timeout=60)
    assert op.url is not None
    assert op.url.startswith("http://127.0.0.3:")
    assert httpx.get(f"http://127.0.0.3:{liveness}/healthz", timeout=10).status_code == 200
    assert httpx.get(op.url + "/metrics", timeout=10).status_code == 200
