"""What each pod gets of its own: a private temporary directory and its ServiceAccount.

Pods are processes on the host's filesystem, so the kubelet gives each one:

- ``TMPDIR`` (and ``TMP``, ``TEMP``) = ``$TMPDIR/localkube-<uid prefix>`` of the
  node, a directory no other pod uses, so that two pods writing the same temporary
  path do not meet. It is short on purpose: programs put Unix sockets there (vLLM's
  ZeroMQ IPC), whose paths may not exceed 107 bytes. ``release`` removes it. The host's
  ``/tmp`` itself stays shared: pods' working directories, volumes and state often
  live under it (a test's temporary directory), so it cannot be hidden.
- ``KUBERNETES_SERVICE_HOST``/``KUBERNETES_SERVICE_PORT``, the API server's
  address, as every pod in a cluster has them.
- Unless ``automountServiceAccountToken`` is false: its ServiceAccount's token
  (from a ``TokenRequest``), the API server's ``ca.crt`` and its ``namespace`` in
  ``<pod dir>/serviceaccount/``, seen by the pod's processes at Kubernetes' path
  ``/var/run/secrets/kubernetes.io/serviceaccount/``: each container runs in a
  mount namespace of its own (``unshare --mount``) in which that directory is
  bind-mounted there, so the official client's and Kopf's in-cluster
  configuration work unchanged. Where mount namespaces are not available (not
  root, no ``unshare``), the pod gets ``KUBECONFIG`` pointing to a kubeconfig of
  its own with the same token and CA instead (``$KUBECONFIG`` comes before
  in-cluster configuration for kubectl, the official client and Kopf).
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import yaml

from localkube.node import processes
from localkube.node.client import ApiClient, JsonObj, Resource

log = logging.getLogger(__name__)

SA_PATH: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_SECONDS: Final = 3607  # what the kubelet asks for (localkube's tokens do not expire)
SERVICEACCOUNTS: Final = Resource("", "v1", "serviceaccounts", "ServiceAccount")
# Mount the pod's directory over Kubernetes' path, then become the container's command.
_MOUNT_SCRIPT: Final = f'mount --bind "$1" {SA_PATH} && shift && exec "$@"'


@dataclass
class PodIdentity:
    """The environment and the command wrapper of one pod's containers."""

    env: dict[str, str] = field(default_factory=dict)
    sa_dir: Path | None = None  # mounted at SA_PATH when mount namespaces are available
    account_dir: Path | None = None
    """The ServiceAccount's files (None: none mounted); a container runtime mounts them."""

    def wrap(self, argv: list[str], env: dict[str, str], cwd: Path) -> list[str]:
        """``argv`` run in a mount namespace of its own that shows the pod's ServiceAccount
        directory at ``SA_PATH`` (unchanged without a ServiceAccount to show)."""
        if self.sa_dir is None or not argv:
            return argv
        try:
            program = processes.resolve_executable(argv[0], env, cwd)
        except processes.StartError:
            return argv  # the start fails with the usual error
        return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
                _MOUNT_SCRIPT, "sh", str(self.sa_dir), program, *argv[1:]]


def tmp_dir(uid: str) -> Path:
    """The pod's own temporary directory (short: Unix socket paths are limited)."""
    return Path(tempfile.gettempdir()) / f"localkube-{uid[:12]}"


def release(uid: str) -> None:
    """Remove the pod's temporary directory (the pod is gone)."""
    shutil.rmtree(tmp_dir(uid), ignore_errors=True)


@functools.cache
def mount_namespaces() -> bool:
    """Whether containers can get a mount namespace each (root, ``unshare``, the path)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    try:
        SA_PATH.mkdir(parents=True, exist_ok=True)
        subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
                        f"mount --bind /proc/self {SA_PATH}"], check=True, timeout=10,
                       capture_output=True)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("no mount namespaces for pods (%s): pods get a KUBECONFIG with their "
                    "ServiceAccount's token instead of %s", exc, SA_PATH)
        return False
    return True


def _write(path: Path, text: str | bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(text.encode() if isinstance(text, str) else text)
    tmp.replace(path)


async def prepare(api: ApiClient, pod: JsonObj, pod_dir: Path, *, api_url: str,
                  ca_file: Path | None) -> PodIdentity:
    """Make the pod's temporary directory and ServiceAccount files; say how to use them.

    Raises ``client.ApiError`` when the token cannot be had (a missing ServiceAccount:
    the pod waits, as a kubelet's pod does).
    """
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    namespace = str(meta.get("namespace") or "default")
    tmp = tmp_dir(str(meta.get("uid") or pod_dir.name))
    tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
    url = urlsplit(api_url)
    identity = PodIdentity(env={
        "TMPDIR": str(tmp), "TMP": str(tmp), "TEMP": str(tmp),
        "KUBERNETES_SERVICE_HOST": url.hostname or "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(url.port or 443),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(url.port or 443),
    })
    if spec.get("automountServiceAccountToken") is False:
        return identity
    account = str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")
    answer = await api.create(SERVICEACCOUNTS, namespace, {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": TOKEN_SECONDS,
                 "boundObjectRef": {"kind": "Pod", "apiVersion": "v1",
                                    "name": str(meta.get("name", "")),
                                    "uid": str(meta.get("uid", ""))}}},
        name=account, subresource="token")
    token = str((answer.get("status") or {}).get("token") or "")
    sa_dir = _write_account(pod_dir, token=token, namespace=namespace, ca_file=ca_file)
    identity.account_dir = sa_dir
    if mount_namespaces():
        identity.sa_dir = sa_dir
    else:
        identity.env["KUBECONFIG"] = str(_write_kubeconfig(
            pod_dir, sa_dir, api_url=api_url, token=token, account=account, namespace=namespace,
            has_ca=ca_file is not None))
    return identity


def _write_account(pod_dir: Path, *, token: str, namespace: str, ca_file: Path | None) -> Path:
    """``token``, ``namespace`` and ``ca.crt`` in ``<pod dir>/serviceaccount/``."""
    sa_dir = pod_dir / "serviceaccount"
    sa_dir.mkdir(parents=True, exist_ok=True)
    _write(sa_dir / "token", token)
    _write(sa_dir / "namespace", namespace)
    if ca_file is not None:
        _write(sa_dir / "ca.crt", ca_file.read_bytes())
    return sa_dir


def _write_kubeconfig(pod_dir: Path, sa_dir: Path, *, api_url: str, token: str, account: str,
                      namespace: str, has_ca: bool) -> Path:
    """The fallback without mount namespaces: a kubeconfig with the pod's token."""
    cluster: dict[str, str] = {"server": api_url}
    if has_ca:
        cluster["certificate-authority"] = str(sa_dir / "ca.crt")
    path = pod_dir / "kubeconfig"
    _write(path, yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "pod",
        "clusters": [{"name": "localkube", "cluster": cluster}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "pod", "context": {"cluster": "localkube", "user": account,
                                                  "namespace": namespace}}]}))
    return path
