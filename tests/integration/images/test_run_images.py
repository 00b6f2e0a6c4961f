"""The built images, run: each server answers as its component does, as its non-root
user, with the read-only root filesystem the manifests ask for."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import grpc
import httpx
import openai
import pytest

from tests.helpers.images import SecurityFlags, exec_in, image_user, remove_container, run_container
from tests.helpers.localkube import kubectl, start_localkube
from tests.helpers.operator import adapter_status, adapter_yaml, install_crds, wait_for
from tests.helpers.procs import ProcessGroup
from tests.helpers.scaler import scaled_object_ref, scaler_stub
from tests.helpers.sim import FAST

# The first test of a run builds the light images (cold: about 4 minutes here).
pytestmark = [pytest.mark.images, pytest.mark.timeout(900)]

GATEWAY, SIDECAR, CONTROLLER = "brix/gateway:0.1.0", "brix/sidecar:0.1.0", "brix/controller:0.1.0"


def unique(prefix: str) -> str:
    return f"brix-test-{prefix}-{uuid.uuid4().hex[:8]}"


def assert_runs_as_declared(name: str, flags: SecurityFlags) -> None:
    """In the running container: the manifest's user, and no writing to / when read-only."""
    uid = exec_in(name, "id", "-u")
    assert uid.returncode == 0, uid
    assert uid.stdout.strip() == (flags.user or "").split(":")[0] != "0"
    wrote = exec_in(name, "touch", "/written-by-test")
    if flags.read_only:
        assert wrote.returncode != 0, wrote
        assert "Read-only file system" in wrote.stderr, wrote
    else:
        assert wrote.returncode == 0, wrote


@pytest.mark.parametrize("image", [GATEWAY, SIDECAR, CONTROLLER])
def test_each_image_declares_its_non_root_user(built_images: list[str], image: str) -> None:
    assert image in built_images
    assert image_user(image) == "10001:10001"


def test_the_gateway_proxies_a_completion_to_a_sim_from_the_sidecar_image(
        built_images: list[str], procs: ProcessGroup) -> None:
    sim_name, gw_name = unique("sim"), unique("gateway")
    try:
        sim = run_container(
            procs, SIDECAR, ["python", "-m", "inference.engine", "--backend", "sim",
                             "--served-model-name", "m1", "--port", "0", *FAST],
            name=sim_name, manifest="k8s/models/sim-model/deployment.yaml")
        gw = run_container(
            procs, GATEWAY, ["python", "-m", "gateway", "--port", "0", "--discovery", "none",
                             "--static-routes", f"m1={sim.url}"],
            name=gw_name, manifest="k8s/base/gateway.yaml")
        assert gw.url is not None
        assert httpx.get(f"{gw.url}/healthz", timeout=10).status_code == 200
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0)
        answer = client.completions.create(model="m1", prompt="hello", max_tokens=4)
        assert answer.model == "m1"
        assert answer.usage is not None
        assert answer.usage.completion_tokens == 4
        with pytest.raises(openai.NotFoundError):
            client.completions.create(model="no-such-model", prompt="hello", max_tokens=1)
        assert_runs_as_declared(gw_name, SecurityFlags.of("k8s/base/gateway.yaml", GATEWAY))
        assert_runs_as_declared(sim_name, SecurityFlags.of(
            "k8s/models/sim-model/deployment.yaml", SIDECAR))
    finally:
        remove_container(sim_name)
        remove_container(gw_name)


def test_the_scaler_answers_keda_get_metric_spec(built_images: list[str],
                                                 procs: ProcessGroup) -> None:
    name = unique("scaler")
    try:
        proc = run_container(
            procs, CONTROLLER, ["python", "-m", "scaler", "--grpc-port", "0", "--http-port", "0",
                                "--prometheus-url", "http://127.0.0.1:9", "--mode", "keda"],
            name=name, manifest="k8s/base/scaler.yaml",
            ready=r"scaler listening on grpc://(?P<url>\S+)")
        assert proc.url is not None
        with grpc.insecure_channel(proc.url) as channel:
            spec = scaler_stub(channel).GetMetricSpec(
                scaled_object_ref(model="m1", target="5"), timeout=30)
        assert len(spec.metricSpecs) == 1
        assert spec.metricSpecs[0].targetSize == 5
        assert_runs_as_declared(name, SecurityFlags.of("k8s/base/scaler.yaml", CONTROLLER))
    finally:
        remove_container(name)


def test_the_operator_reconciles_an_adapter_against_localkube(
        built_images: list[str], procs: ProcessGroup, tmp_path: Path) -> None:
    _, kubeconfig = start_localkube(procs, tmp_path / "kube")
    install_crds(kubeconfig)
    name = unique("operator")
    # The operator's user reads its own copy (a cluster mounts a token for the pod).
    mounted = tmp_path / "for-operator" / "kubeconfig"
    mounted.parent.mkdir()
    shutil.copyfile(kubeconfig, mounted)
    os.chown(mounted, 10001, 10001)
    try:
        run_container(
            procs, CONTROLLER, ["python", "-m", "lora_operator", "--kubeconfig", str(mounted),
                                "--port", "0", "--standalone"],
            name=name, manifest="k8s/base/lora-operator.yaml", mounts=[mounted])
        kubectl(kubeconfig, "apply", "-f", "-",
                input=adapter_yaml("sql", base_model="absent-model", source="file:///none"))
        status = wait_for(lambda: adapter_status(kubeconfig, "default", "sql").get("phase") and
                          adapter_status(kubeconfig, "default", "sql"),
                          what="the operator to write the adapter's status", timeout=90)
        # No pod serves the base model: the operator says so, and loads it nowhere.
        assert status["phase"] == "Pending"
        assert status.get("loadedPods", []) == []
        assert_runs_as_declared(name, SecurityFlags.of("k8s/base/lora-operator.yaml", CONTROLLER))
    finally:
        remove_container(name)
