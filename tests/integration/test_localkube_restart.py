"""localkube restarted under the running stack: the controllers carry on.

localkube (its state in a directory) serves the LoRA operator and the
scaler's fallback loop; the pods are sims with sidecars that this test runs
and registers (localkube without its node, so the restart stops the API and
nothing else). localkube is then stopped (SIGTERM, or SIGKILL between two
saves of its objects) and started again on the same port with the same state,
and the test checks, through the API and the sidecars:

- no object is lost (every adapter, pod and Deployment, same uid);
- localkube hands out no resourceVersion twice, and the watches from before
  the restart are answered 410 and list again (its log names them);
- the operator and the scaler carry on without a restart of their own: an
  adapter applied after the restart and a pod registered after it converge
  (Ready on every pod), a deletion finishes, and a load change scales the
  Deployment.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from brix.contract import (
    AUTOSCALE_ANNOTATION,
    AUTOSCALE_MAX_ANNOTATION,
    AUTOSCALE_MIN_ANNOTATION,
    AUTOSCALE_TARGET_ANNOTATION,
    LORA_GROUP,
    LORA_PLURAL,
    LORA_VERSION,
    MODEL_LABEL,
)
from tests.helpers.localkube import start_localkube
from tests.helpers.operator import core_api, get_object, install_crds, start_operator, wait_for
from tests.helpers.procs import ProcessGroup
from tests.helpers.prometheus import query, start_prometheus
from tests.helpers.scaler import StaticExporter, scrape_config, start_scaler
from tests.integration.lora_operator.test_on_registered_pods import NS, Env, holds

pytestmark = pytest.mark.integration

MODEL = "m"
SCALER_FLAGS = ("--loop-interval", "0.5", "--lease-duration", "3", "--scale-period", "1",
                "--cache-ttl", "0.5", "--stabilization-window", "3")


@pytest.fixture  # per test (the scaler's modules share one): each case starts from no series
def exporter() -> Iterator[StaticExporter]:
    with StaticExporter() as e:
        yield e


def ready_everywhere(env: Env, name: str, pods: int) -> bool:
    s = env.status(name)
    return s.get("phase") == "Ready" and s.get("ready") == f"{pods}/{pods}"


def inventory(api: client.ApiClient) -> dict[str, str]:
    """kind/name -> uid of what the test made (adapters, pods, the Deployment)."""
    custom = client.CustomObjectsApi(api)
    out = {f"lora/{o['metadata']['name']}": o["metadata"]["uid"] for o in
           custom.list_namespaced_custom_object(LORA_GROUP, LORA_VERSION, NS,
                                                LORA_PLURAL)["items"]}
    out.update({f"pod/{p.metadata.name}": p.metadata.uid
                for p in client.CoreV1Api(api).list_namespaced_pod(NS).items})
    out.update({f"deployment/{d.metadata.name}": d.metadata.uid
                for d in client.AppsV1Api(api).list_namespaced_deployment(NS).items})
    return out


def replicas(api: client.ApiClient) -> int:
    scale = client.AppsV1Api(api).read_namespaced_deployment_scale(MODEL, NS)
    return int(scale.spec.replicas or 0)


def highest_resource_version(api: client.ApiClient) -> int:
    core = client.CoreV1Api(api)
    return max(int(core.list_namespaced_config_map(NS).metadata.resource_version),
               int(core.list_namespaced_pod(NS).metadata.resource_version))


@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_the_stack_carries_on_across_a_localkube_restart(
    procs: ProcessGroup, tmp_path: Path, exporter: StaticExporter, how: str,
) -> None:
    state = tmp_path / "kube"
    lk, kubeconfig = start_localkube(procs, state, node=False)
    assert lk.url is not None
    port = lk.url.rsplit(":", 1)[1]
    install_crds(kubeconfig)
    operator = start_operator(procs, kubeconfig=kubeconfig)
    adapters = tmp_path / "adapters"
    adapters.mkdir()
    env = Env(procs, kubeconfig, core_api(kubeconfig), adapters)
    api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    try:
        client.AppsV1Api(api).create_namespaced_deployment(NS, {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": MODEL, "labels": {MODEL_LABEL: MODEL}, "annotations": {
                AUTOSCALE_ANNOTATION: "true", AUTOSCALE_TARGET_ANNOTATION: "2",
                AUTOSCALE_MIN_ANNOTATION: "1", AUTOSCALE_MAX_ANNOTATION: "8"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {MODEL_LABEL: MODEL}},
                     "template": {"metadata": {"labels": {MODEL_LABEL: MODEL}},
                                  "spec": {"containers": [{"name": "engine",
                                                           "image": "brix/engine:test"}]}}},
        })
        _, prom = start_prometheus(procs, tmp_path / "prom", scrape_config(exporter.target))
        exporter.pod(MODEL, "p0", waiting=4)
        scaler = start_scaler(procs, prometheus_url=prom, mode="loop", extra_args=[
            *SCALER_FLAGS, "--kubeconfig", str(kubeconfig), "--namespace", NS,
            "--lease-namespace", NS])
        pods = [env.pod(f"pod-{i}") for i in range(2)]
        before = [f"a{i}" for i in range(4)]
        for name in before:
            env.apply(name)
        for name in before:
            wait_for(lambda n=name: ready_everywhere(env, n, 2), what=f"{name} Ready 2/2",
                     timeout=90, describe=lambda n=name: env.status(n))
        wait_for(lambda: replicas(api) == 2, what="scaled to ceil(4/2) before the restart",
                 timeout=60)
        time.sleep(2)  # more than a save interval: what is above is on disk
        objects = inventory(api)
        seen_rv = highest_resource_version(api)

        t_stop = time.monotonic()
        if how == "killed":
            lk.signal(signal.SIGKILL)
            lk.popen.wait(10)
        else:
            assert lk.stop() == 0
        time.sleep(3)  # the controllers fail against a closed port meanwhile
        lk2, _ = start_localkube(procs, state, node=False, extra_args=["--port", port])
        outage = time.monotonic() - t_stop

        # Nothing lost, no number handed out twice.
        assert inventory(api) == objects
        assert highest_resource_version(api) > seen_rv

        # The controllers carry on, as the same processes.
        t_back = time.monotonic()
        exporter.pod(MODEL, "p0", waiting=12)
        wait_for(lambda: replicas(api) == 6, what="the load change scaled 2 -> 6", timeout=60)
        t_scaled = time.monotonic() - t_back
        pods.append(env.pod("pod-2"))
        after = [f"b{i}" for i in range(3)]
        for name in after:
            env.apply(name)
        client.CustomObjectsApi(api).delete_namespaced_custom_object(
            LORA_GROUP, LORA_VERSION, NS, LORA_PLURAL, "a0")
        wanted = sorted(before[1:] + after)
        for name in wanted:
            wait_for(lambda n=name: ready_everywhere(env, n, 3), what=f"{name} Ready 3/3",
                     timeout=120, describe=lambda n=name: env.status(n))
        wait_for(lambda: get_object(kubeconfig, "loraadapters.brix.dev", NS, "a0") is None,
                 what="a0 deleted (its finalizer taken off)", timeout=60)
        for pod in pods:
            wait_for(lambda p=pod: not holds(p, "a0"), what=f"a0 unloaded from {pod.name}",
                     timeout=30)
            assert all(holds(pod, n) for n in wanted), pod.name
        t_converged = time.monotonic() - t_back
        assert operator.popen.poll() is None, "the operator exited"
        assert scaler.proc.popen.poll() is None, "the scaler exited"

        # The operator's watches from before the restart were answered 410 and listed again.
        expired = set(re.findall(r"watch of (\S+) from resourceVersion \d+ answered 410",
                                 lk2.output()))
        assert {"loraadapters", "pods"} <= expired, lk2.output()[-3000:]
        assert query(prom, f'brix_engine_requests_waiting{{model="{MODEL}"}}')
        print(f"\nlocalkube {how}: down {outage:.1f} s; after it, scaled 2 -> 6 in "
              f"{t_scaled:.1f} s, 6 adapters Ready on 3 pods and a0 gone in "
              f"{t_converged:.1f} s; 410 answered to watches of {sorted(expired)}")
    finally:
        api.close()
