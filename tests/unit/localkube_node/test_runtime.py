"""The podman runtime's command line for one container (pure), and the runtime choice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localkube.node.runtime import PodRef, ProcessRuntime, make_runtime, run_argv
from localkube.node.volumes import VolumeError

pytestmark = pytest.mark.unit

POD = PodRef(namespace="brix-models", name="sim-model-abc", uid="0123456789abcdef")


def test_pod_names_are_unique_per_uid_and_valid_for_podman() -> None:
    assert POD.podman_name == "lk-brix-models-sim-model-abc-01234567"
    assert PodRef("ns", "a:b", "u" * 9).podman_name == "lk-ns-a-b-uuuuuuuu"


def test_a_container_with_command_args_env_mounts_user_and_read_only_root() -> None:
    container = {
        "name": "engine", "image": "brix/sidecar:0.1.0",
        "command": ["python", "-m", "inference.engine"],
        "args": ["--served-model-name", "$(MODEL)", "--port", "8000", "$$(LITERAL)"],
        "workingDir": "/work",
        "securityContext": {"readOnlyRootFilesystem": True, "runAsUser": 20002},
        "volumeMounts": [{"name": "models", "mountPath": "/models", "readOnly": True},
                         {"name": "cache", "mountPath": "/cache", "subPath": "pod-1"}],
    }
    pod_spec = {"securityContext": {"runAsUser": 10001, "runAsGroup": 10001}}
    argv = run_argv(["podman"], POD, container, pod_spec,
                    env={"MODEL": "m1", "POD_IP": "127.0.0.7"},
                    volumes={"models": Path("/v/models"), "cache": Path("/v/cache")},
                    extra_mounts={Path("/pods/x/kubeconfig"): Path("/state/kubeconfig")})
    assert argv[:3] == ["podman", "run", "--rm"]
    name = argv.index("--name")
    assert argv[name + 1] == "lk-brix-models-sim-model-abc-01234567-engine"
    assert argv[argv.index("--pod") + 1] == POD.podman_name
    assert argv[argv.index("--network") + 1] == "host"
    # The container's own runAsUser wins over the pod's; the pod's group stays.
    assert argv[argv.index("--user") + 1] == "20002:10001"
    assert "--read-only" in argv
    assert "MODEL=m1" in argv
    assert "POD_IP=127.0.0.7" in argv
    volumes = [argv[i + 1] for i, a in enumerate(argv) if a == "--volume"]
    assert volumes == ["/v/models:/models:ro", "/v/cache/pod-1:/cache",
                       "/pods/x/kubeconfig:/state/kubeconfig:ro"]
    assert argv[argv.index("--workdir") + 1] == "/work"
    assert json.loads(argv[argv.index("--entrypoint") + 1]) == ["python", "-m",
                                                                 "inference.engine"]
    image = argv.index("brix/sidecar:0.1.0")
    assert argv[image + 1:] == ["--served-model-name", "m1", "--port", "8000", "$(LITERAL)"]


def test_without_command_the_image_entrypoint_stays_and_no_user_is_forced() -> None:
    argv = run_argv(["podman"], POD, {"name": "c", "image": "img:1", "args": ["--x"]}, {},
                    env={}, volumes={})
    assert "--entrypoint" not in argv
    assert "--user" not in argv
    assert "--read-only" not in argv
    assert argv[-2:] == ["img:1", "--x"]


def test_a_mount_of_an_unknown_volume_is_an_error() -> None:
    container = {"name": "c", "image": "i", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}
    with pytest.raises(VolumeError, match="'nope' names no volume of the pod"):
        run_argv(["podman"], POD, container, {}, env={}, volumes={})


def test_runtime_choice() -> None:
    assert isinstance(make_runtime("process", kubeconfig=Path("/k")), ProcessRuntime)
    with pytest.raises(ValueError, match="unknown runtime 'docker'"):
        make_runtime("docker", kubeconfig=Path("/k"))
