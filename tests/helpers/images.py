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
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from brix.images.builder import PODMAN_RUNTIME, PODMAN_ULIMITS
from brix.serving import READY_PATTERN
from localkube.node.envbuild import parse_quantity
from tests.helpers.procs import REPO, Proc, ProcessGroup


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
