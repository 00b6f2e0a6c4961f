"""brix's images for tests: built once (``make images``' code, cached), run with podman.

Usage::

    def test_x(built_images, procs):
        c = run_container(procs, "brix/gateway:0.1.0", ["python", "-m", "gateway", ...],
                          manifest="k8s/base/gateway.yaml")

``run_container`` runs ``podman run`` in the foreground on the host's network
(servers bind to 127.0.0.1 on free ports), as the user, with the read-only
root filesystem and the memory-backed /dev/shm that the manifest's container
asks for, and returns once the
server printed its ready line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from brix.images.builder import (
    PODMAN_RUNTIME,
    PODMAN_ULIMITS,
    ImageError,
    build_images,
    current_images,
)
from brix.serving import READY_PATTERN
from localkube.node.envbuild import parse_quantity
from tests.helpers.procs import REPO, Proc, ProcessGroup

ENGINE_IMAGE = "brix/engine:0.1.0-cpu"


def engine_images(*others: str) -> list[str]:
    """The CPU engine image and ``others`` (components), built; the calling test skips
    unless the engine image is here and current, or ``BRIX_ENGINE_IMAGE=1`` asks to build it.

    The engine image is the slow one (vLLM and torch: minutes, bench/images/RESULTS.md):
    CI builds it only when a commit changes what it installs (.ci/run).
    """
    if shutil.which("podman") is None and shutil.which("docker") is None:
        pytest.skip("neither podman nor docker is installed (make test installs podman)")
    try:
        if (os.environ.get("BRIX_ENGINE_IMAGE") != "1"
                and ENGINE_IMAGE not in current_images(["engine"])):
            pytest.skip(f"{ENGINE_IMAGE} is not built from the sources here (slow: minutes); "
                        "make images ONLY=engine or BRIX_ENGINE_IMAGE=1 builds it")
        return build_images(("engine", *others))
    except ImageError as exc:
        pytest.fail(str(exc))


def podman() -> list[str]:
    found = shutil.which("podman")
    if found is None:
        raise RuntimeError("podman is not installed: `make test` installs it (as root)")
    return [found, *(["--runtime", PODMAN_RUNTIME] if shutil.which(PODMAN_RUNTIME) else [])]


def manifest_container(manifest: str, image: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the pod spec, the container) of the first container of ``manifest`` using ``image``."""
    for doc in yaml.safe_load_all((REPO / manifest).read_text()):
        spec = (((doc or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
        for c in spec.get("containers") or []:
            if c.get("image") == image:
                return spec, c
    raise AssertionError(f"{manifest} has no container with image {image}")


@dataclass(frozen=True)
class SecurityFlags:
    user: str | None
    read_only: bool

    @classmethod
    def of(cls, manifest: str, image: str) -> SecurityFlags:
        pod_spec, container = manifest_container(manifest, image)
        pod_sc, own = pod_spec.get("securityContext") or {}, container.get("securityContext") or {}
        uid = own.get("runAsUser", pod_sc.get("runAsUser"))
        gid = own.get("runAsGroup", pod_sc.get("runAsGroup"))
        user = None if uid is None else (f"{uid}:{gid}" if gid is not None else str(uid))
        return cls(user=user, read_only=bool(own.get("readOnlyRootFilesystem")))

    def argv(self) -> list[str]:
        return [*(["--user", self.user] if self.user else []),
                *(["--read-only"] if self.read_only else [])]


def shm_flags(manifest: str, image: str) -> list[str]:
    """``--shm-size`` as the manifest's container gets it: a memory emptyDir at /dev/shm.

    Kubernetes mounts such a volume as a tmpfs of its ``sizeLimit``; podman's
    own /dev/shm (64 MiB) stands in for it at that size, in bytes.
    """
    pod_spec, container = manifest_container(manifest, image)
    volumes = {v.get("name"): v for v in pod_spec.get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        empty_dir = (volumes.get(mount.get("name")) or {}).get("emptyDir") or {}
        if mount.get("mountPath") == "/dev/shm" and empty_dir.get("medium") == "Memory":
            size = parse_quantity(str(empty_dir.get("sizeLimit", "1Gi")))
            return ["--shm-size", str(int(size))]
    return []


def run_container(procs: ProcessGroup, image: str, command: Sequence[str], *, name: str,
                  manifest: str | None = None, env: Mapping[str, str] | None = None,
                  mounts: Sequence[Path] = (), writable: Sequence[Path] = (),
                  ready: str | re.Pattern[str] = READY_PATTERN, timeout: float = 90.0) -> Proc:
    """``podman run`` ``command`` from ``image``; returns once ``ready`` shows in its output.

    ``mounts`` are seen read-only at their own paths, ``writable`` read-write.
    """
    flags = [*SecurityFlags.of(manifest, image).argv(), *shm_flags(manifest, image)] \
        if manifest else []
    argv = [*podman(), "run", "--rm", "--replace", "--name", name, "--network", "host",
            *PODMAN_ULIMITS, *flags]
    for key, value in {"BIND_HOST": "127.0.0.1", **(env or {})}.items():
        argv += ["--env", f"{key}={value}"]
    for path in mounts:
        argv += ["--volume", f"{path}:{path}:ro"]
    for path in writable:
        argv += ["--volume", f"{path}:{path}"]
    argv += [image, *command]
    return procs.start(argv, name=name, ready=ready, timeout=timeout)


def exec_in(name: str, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*podman(), "exec", name, *command], capture_output=True, text=True,
                          timeout=60, check=False)


def image_user(image: str) -> str:
    out = subprocess.run([*podman(), "image", "inspect", image], capture_output=True, text=True,
                         check=True).stdout
    return str(json.loads(out)[0]["Config"].get("User", ""))


def remove_container(name: str) -> None:
    subprocess.run([*podman(), "rm", "--force", "--ignore", name], capture_output=True,
                   check=False, timeout=60)
