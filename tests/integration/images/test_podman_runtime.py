"""localkube's ``--runtime podman``: pods from their images, one podman pod per pod, with
the pod's address, env, args, probes, logs and restarts as under the process runtime;
a missing image shows ErrImagePull / ImagePullBackOff with its name."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.images import podman
from tests.helpers.localkube import kubectl, start_localkube
from tests.helpers.operator import wait_for
from tests.helpers.procs import ProcessGroup

# The first test of a run builds the light images (cold: about 4 minutes here).
pytestmark = [pytest.mark.images, pytest.mark.timeout(900)]

SIDECAR = "brix/sidecar:0.1.0"


@pytest.fixture(scope="module")
def kube(built_images: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("podkube")
    group = ProcessGroup(log_dir=base / "logs")
    try:
        _, kubeconfig = start_localkube(group, base / "state", extra_args=["--runtime", "podman"])
        yield kubeconfig
    finally:
        group.stop_all()


def get_pod(kubeconfig: Path, name: str) -> dict[str, Any]:
    out = kubectl(kubeconfig, "get", "pod", name, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def podman_pods() -> list[dict[str, Any]]:
    out = subprocess.run([*podman(), "pod", "ps", "--format", "json"], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    return list(json.loads(out or "[]"))


def sim_pod(name: str, image: str = SIDECAR, restart: str = "Always") -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "restartPolicy": restart, "terminationGracePeriodSeconds": 2,
            "securityContext": {"runAsUser": 10001, "runAsGroup": 10001},
            "containers": [{
                "name": "engine", "image": image,
                "command": ["python", "-m", "inference.engine"],
                "args": ["--backend", "sim", "--served-model-name", "$(MODEL)", "--port", "8000"],
                "env": [{"name": "MODEL", "value": f"model-of-{name}"}],
                "ports": [{"name": "http", "containerPort": 8000}],
                "readinessProbe": {"httpGet": {"path": "/health", "port": "http"},
                                   "periodSeconds": 1},
                "securityContext": {"readOnlyRootFilesystem": True},
            }],
        },
    })


def test_a_pod_runs_from_its_image_at_its_own_address(kube: Path) -> None:
    kubectl(kube, "apply", "-f", "-", input=sim_pod("sim-a"))

    def ready() -> dict[str, Any] | None:
        pod = get_pod(kube, "sim-a")
        statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
        return pod if statuses[0].get("ready") else None
    pod = wait_for(ready, what="sim-a Ready (its readiness probe through the pod's address)",
                   timeout=120, describe=lambda: get_pod(kube, "sim-a").get("status"))
    ip = pod["status"]["podIP"]
    assert ip.startswith("127.")
    assert ip != "127.0.0.1"
    # The engine serves at the pod's address, under the name its env and args gave it.
    models = httpx.get(f"http://{ip}:8000/v1/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["model-of-sim-a"]
    # One podman pod for the pod, its container inside; the logs through kubectl.
    mine = [p for p in podman_pods() if p["Name"].startswith("lk-default-sim-a-")]
    assert len(mine) == 1
    assert len(mine[0]["Containers"]) == 1
    logs = kubectl(kube, "logs", "sim-a").stdout
    assert f"listening on http://{ip}:8000" in logs
    # As the manifest's user, on a read-only root filesystem.
    container = mine[0]["Containers"][0]["Names"]
    who = subprocess.run([*podman(), "exec", container, "sh", "-c", "id -u; touch /x"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert who.stdout.strip() == "10001"
    assert "Read-only file system" in who.stderr
    # Deleting the pod removes its podman pod.
    kubectl(kube, "delete", "pod", "sim-a", "--wait=true", "--timeout=60s")
    wait_for(lambda: not [p for p in podman_pods() if p["Name"].startswith("lk-default-sim-a-")],
             what="sim-a's podman pod removed", timeout=60)


def test_a_container_that_exits_is_restarted_from_its_image(kube: Path) -> None:
    manifest = json.loads(sim_pod("crasher"))
    manifest["spec"]["containers"][0]["command"] = ["python", "-c", "print('ran once')"]
    manifest["spec"]["containers"][0]["args"] = []
    del manifest["spec"]["containers"][0]["readinessProbe"]
    kubectl(kube, "apply", "-f", "-", input=json.dumps(manifest))

    def restarted() -> dict[str, Any] | None:
        statuses = get_pod(kube, "crasher").get("status", {}).get("containerStatuses") or [{}]
        return statuses[0] if statuses[0].get("restartCount", 0) >= 1 else None
    status = wait_for(restarted, what="crasher restarted", timeout=90)
    assert status["lastState"]["terminated"]["exitCode"] == 0
    assert "ran once" in kubectl(kube, "logs", "crasher").stdout
    kubectl(kube, "delete", "pod", "crasher", "--wait=true", "--timeout=60s")


def test_a_non_root_container_writes_its_empty_dirs_at_tmp_and_dev_shm(kube: Path) -> None:
    # As the engine of tiny-llama: user 10001, a read-only root, /tmp and /dev/shm from
    # emptyDirs (vLLM writes its cache under /tmp and opens shared memory).
    script = ("import pathlib, uuid; from multiprocessing import shared_memory; "
              "pathlib.Path('/tmp/cache').mkdir(); "
              "m = shared_memory.SharedMemory(name='brix-' + uuid.uuid4().hex[:8], create=True, "
              "size=4096); m.close(); m.unlink(); print('wrote both', flush=True)")
    manifest = json.loads(sim_pod("writer", restart="Never"))
    spec = manifest["spec"]
    spec["volumes"] = [{"name": "tmp", "emptyDir": {}},
                       {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}]
    container = spec["containers"][0]
    container.update(command=["python", "-c", script], args=[], volumeMounts=[
        {"name": "tmp", "mountPath": "/tmp"}, {"name": "shm", "mountPath": "/dev/shm"}])
    del container["readinessProbe"]
    kubectl(kube, "apply", "-f", "-", input=json.dumps(manifest))

    def finished() -> str | None:
        phase = str(get_pod(kube, "writer").get("status", {}).get("phase"))
        return phase if phase in ("Succeeded", "Failed") else None
    try:
        phase = wait_for(finished, what="writer finished", timeout=90,
                         describe=lambda: get_pod(kube, "writer").get("status"))
        logs = kubectl(kube, "logs", "writer").stdout
        assert phase == "Succeeded", logs
        assert "wrote both" in logs
    finally:  # its podman pod goes with it
        kubectl(kube, "delete", "pod", "writer", "--wait=true", "--timeout=60s")


def test_a_missing_image_shows_image_pull_back_off_naming_it(kube: Path) -> None:
    image = "localhost/brix/no-such-image:0"
    kubectl(kube, "apply", "-f", "-", input=sim_pod("ghost", image=image))
    seen: set[str] = set()

    def backing_off() -> bool:
        statuses = get_pod(kube, "ghost").get("status", {}).get("containerStatuses") or [{}]
        reason = (statuses[0].get("state", {}).get("waiting") or {}).get("reason", "")
        seen.add(reason)
        return {"ErrImagePull", "ImagePullBackOff"} <= seen
    wait_for(backing_off, what="ErrImagePull then ImagePullBackOff", timeout=60, interval=0.1,
             describe=lambda: seen)
    events = kubectl(kube, "get", "events", "--field-selector", "involvedObject.name=ghost",
                     "-o", "json").stdout
    messages = [e["message"] for e in json.loads(events)["items"]]
    assert any(image in m and "Failed to pull image" in m for m in messages), messages
    assert any(image in m and "Back-off pulling image" in m for m in messages), messages
    kubectl(kube, "delete", "pod", "ghost", "--wait=true", "--timeout=60s")


def test_the_podman_runtime_without_podman_is_one_clear_line(procs: ProcessGroup,
                                                             tmp_path: Path) -> None:
    venv_bin = str(Path(sys.executable).parent)  # python, not podman
    proc = procs.start([sys.executable, "-m", "localkube", "--port", "0", "--state-dir",
                        str(tmp_path / "state"), "--runtime", "podman"],
                       name="localkube-no-podman", ready=None, env={"PATH": venv_bin})
    assert proc.popen.wait(30) == 2
    proc.wait_for("--runtime podman needs podman: apt-get install podman")


def test_an_unknown_runtime_is_refused_with_the_choices(procs: ProcessGroup,
                                                        tmp_path: Path) -> None:
    proc = procs.start([sys.executable, "-m", "localkube", "--port", "0", "--state-dir",
                        str(tmp_path / "state"), "--runtime", "docker"],
                       name="localkube-bad-runtime", ready=None)
    assert proc.popen.wait(30) == 2
    proc.wait_for("--runtime")
    assert "podman" in proc.output()
