"""Container runtimes of the kubelet: how one container of a pod is started.

``ProcessRuntime`` (the default) runs the container's command as a process in
the project's virtual environment; the image is not used. ``PodmanRuntime``
(``python -m localkube --runtime podman``) runs it from its image: each pod is
a podman pod, each container ``podman run`` in the foreground, so that the
kubelet supervises it as it supervises a process (its output is the container's
log, SIGTERM reaches the container, its exit code is the container's). The
containers use the host's network, so the pod's own loopback address
(``BIND_HOST``/``POD_IP``), its ports and the probes are those of the process
runtime. Applied from the manifest: the image, ``command`` (the entrypoint) and
``args``, ``env``, ``workingDir``, volume mounts (``readOnly`` too), and
``securityContext``'s ``runAsUser``/``runAsGroup`` and
``readOnlyRootFilesystem``. An image that is neither here nor can be pulled is
an ``ImagePullError`` (the pod shows ``ErrImagePull``, then
``ImagePullBackOff``). Not applied: resource limits, capabilities, and ``exec``
probes, which run on the host as under the process runtime (brix's manifests
use ``httpGet`` probes). Runs as root (rootful podman); a container left behind
by a killed localkube is replaced (``--replace``) when its pod starts again.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from localkube.node import processes
from localkube.node.expansion import expand_all
from localkube.node.identity import SA_PATH
from localkube.node.volumes import VolumeError

if TYPE_CHECKING:
    from localkube.node.containers import Prepared

JsonObj = dict[str, Any]
RUNTIMES: Final = ("process", "podman")
PODMAN_ULIMITS: Final = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
"""Where runc cannot raise the limits (as in some sandboxes), podman's defaults fail."""
POD_LABEL: Final = "dev.brix.localkube.pod"


class ImagePullError(Exception):
    """The container's image is not here and cannot be pulled."""

    def __init__(self, image: str, message: str) -> None:
        super().__init__(message)
        self.image = image


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str
    uid: str

    @property
    def podman_name(self) -> str:
        """A podman pod name, unique per pod object (``lk-<ns>-<name>-<uid[:8]>``)."""
        raw = f"lk-{self.namespace}-{self.name}-{self.uid[:8]}"
        return re.sub(r"[^a-zA-Z0-9_.-]", "-", raw)


class Runtime(Protocol):
    uses_images: bool
    """True when containers run from their images (a command is then optional)."""

    async def start(self, pod: PodRef, container: JsonObj, prep: Prepared,
                    log_path: Path) -> asyncio.subprocess.Process:
        """Start the container; the process ends when the container does."""
        ...

    async def pod_finished(self, pod: PodRef) -> None:
        """Remove what the runtime kept for the pod once its containers are stopped."""
        ...


class ProcessRuntime:
    """Each container's command as a local process (localkube's default)."""

    uses_images = False

    async def start(self, pod: PodRef, container: JsonObj, prep: Prepared,
                    log_path: Path) -> asyncio.subprocess.Process:
        return await processes.start(prep.argv, env=prep.env, cwd=prep.cwd, log_path=log_path)

    async def pod_finished(self, pod: PodRef) -> None:
        return None


def _user(container: JsonObj, pod_spec: JsonObj) -> str | None:
    own = container.get("securityContext") or {}
    pod_level = pod_spec.get("securityContext") or {}
    uid = own.get("runAsUser", pod_level.get("runAsUser"))
    gid = own.get("runAsGroup", pod_level.get("runAsGroup"))
    if uid is None:
        return None
    return f"{int(uid)}:{int(gid)}" if gid is not None else str(int(uid))


def check_mounts(container: JsonObj, volumes: Mapping[str, Path]) -> None:
    """Every volumeMount names a volume of the pod (else the pod cannot start)."""
    for mount in container.get("volumeMounts") or []:
        if str(mount.get("name", "")) not in volumes:
            raise VolumeError(f"volumeMount {mount.get('name')!r} names no volume of the pod")


def run_argv(podman: Sequence[str], pod: PodRef, container: JsonObj, pod_spec: JsonObj, *,
             env: Mapping[str, str], volumes: Mapping[str, Path],
             extra_mounts: Mapping[Path, Path] | None = None) -> list[str]:
    """The ``podman run`` command line of one container (pure).

    ``env`` is the container's own environment (the kubelet's variables and the
    manifest's), ``volumes`` the host folder of each of the pod's volumes, and
    ``extra_mounts`` host files (keys) the container sees, read-only, at other paths
    (values; the kubeconfig).
    """
    check_mounts(container, volumes)
    name = str(container.get("name", ""))
    argv = [*podman, "run", "--rm", "--replace", "--pod", pod.podman_name,
            "--name", f"{pod.podman_name}-{name}", "--network", "host",
            "--label", f"{POD_LABEL}={pod.namespace}/{pod.name}", *PODMAN_ULIMITS]
    user = _user(container, pod_spec)
    if user is not None:
        argv += ["--user", user]
    if (container.get("securityContext") or {}).get("readOnlyRootFilesystem"):
        argv.append("--read-only")
    for key in sorted(env):
        argv += ["--env", f"{key}={env[key]}"]
    for mount in container.get("volumeMounts") or []:
        source = volumes[str(mount.get("name", ""))] / str(mount.get("subPath") or "")
        option = ":ro" if mount.get("readOnly") else ""
        argv += ["--volume", f"{source}:{mount.get('mountPath')}{option}"]
    for source, target in (extra_mounts or {}).items():
        argv += ["--volume", f"{source}:{target}:ro"]
    if container.get("workingDir"):
        argv += ["--workdir", str(container["workingDir"])]
    command = expand_all([str(x) for x in container.get("command") or []], env)
    args = expand_all([str(x) for x in container.get("args") or []], env)
    if command:
        argv += ["--entrypoint", json.dumps(command)]
    argv.append(str(container.get("image", "")))
    return [*argv, *args]


class PodmanRuntime:
    """Each container from its image with podman; one podman pod per pod."""

    uses_images = True

    def __init__(self, *, kubeconfig: Path, podman: str = "podman") -> None:
        self.kubeconfig = kubeconfig
        found = shutil.which(podman)
        if found is None:
            raise RuntimeError("--runtime podman: podman is not installed "
                               "(apt-get install podman runc)")
        self.podman = [found]
        if shutil.which("runc"):  # crun fails where cgroups are in hybrid mode
            self.podman += ["--runtime", "runc"]

    async def _podman(self, *args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            *self.podman, *args, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode("utf-8", "replace").strip()

    async def ensure_image(self, image: str, policy: str) -> None:
        if not image:
            raise ImagePullError(image, "the container names no image")
        if policy != "Always":
            code, _ = await self._podman("image", "exists", image)
            if code == 0:
                return
        if policy == "Never":
            raise ImagePullError(image, f'image "{image}" is not present with pull policy '
                                 "of Never")
        code, out = await self._podman("pull", "--quiet", image)
        if code != 0:
            last = out.splitlines()[-1] if out else f"podman pull exited {code}"
            raise ImagePullError(image, f'failed to pull image "{image}": {last}')

    async def start(self, pod: PodRef, container: JsonObj, prep: Prepared,
                    log_path: Path) -> asyncio.subprocess.Process:
        image = str(container.get("image", ""))
        await self.ensure_image(image, str(container.get("imagePullPolicy") or "IfNotPresent"))
        code, _ = await self._podman("pod", "exists", pod.podman_name)
        if code != 0:
            code, out = await self._podman("pod", "create", "--infra=false",
                                           "--label", f"{POD_LABEL}={pod.namespace}/{pod.name}",
                                           "--name", pod.podman_name)
            if code != 0 and "exists" not in out:
                raise processes.StartError(f"podman pod create: {out}")
        kubeconfig = self._kubeconfig_for(container, prep)
        mounts = {kubeconfig: self.kubeconfig}
        if prep.account_dir is not None:  # the pod's ServiceAccount, as a cluster mounts it
            mounts[self._readable_copy(container, prep, prep.account_dir)] = SA_PATH
        argv = run_argv(self.podman, pod, container, prep.pod_spec, env=prep.container_env,
                        volumes=prep.volumes, extra_mounts=mounts)
        return await processes.start(argv, env=dict(os.environ), cwd=prep.cwd,
                                     log_path=log_path)

    def _readable_copy(self, container: JsonObj, prep: Prepared, source: Path) -> Path:
        """A copy of the folder ``source`` that the container's user may read."""
        copy = prep.cwd / source.name
        shutil.copytree(source, copy, dirs_exist_ok=True)
        user = _user(container, prep.pod_spec)
        if user is not None and os.geteuid() == 0:
            uid, _, gid = user.partition(":")
            for path in (copy, *copy.iterdir()):
                os.chown(path, int(uid), int(gid or uid))
        return copy

    def _kubeconfig_for(self, container: JsonObj, prep: Prepared) -> Path:
        """A copy of the kubeconfig that the container's user may read (as a cluster mounts
        a ServiceAccount token for the pod), beside the container's folder."""
        copy = prep.cwd / "kubeconfig"
        shutil.copyfile(self.kubeconfig, copy)
        copy.chmod(0o600)
        user = _user(container, prep.pod_spec)
        if user is not None and os.geteuid() == 0:
            uid, _, gid = user.partition(":")
            os.chown(copy, int(uid), int(gid or uid))
        return copy

    async def pod_finished(self, pod: PodRef) -> None:
        await self._podman("pod", "rm", "--force", "--ignore", pod.podman_name)


def make_runtime(name: str, *, kubeconfig: Path) -> Runtime:
    if name == "podman":
        return PodmanRuntime(kubeconfig=kubeconfig)
    if name == "process":
        return ProcessRuntime()
    raise ValueError(f"unknown runtime {name!r}: choose from {', '.join(RUNTIMES)}")
