"""Start localkube (``python -m localkube``) for tests, and run kubectl against it.

``start_localkube(procs, state_dir)`` starts the API server (and the node
unless ``node=False``) on a free port and returns the process and the path of
the kubeconfig it wrote (``state_dir/kubeconfig``: localkube's HTTPS address, its
CA and the admin's token), usable by kubectl, the ``kubernetes`` client and Kopf;
``admin_http(kubeconfig)`` is an httpx client with the same credentials.
``procs`` (the ``procs`` fixture) stops it, and every process it started, after
the test.
"""

from __future__ import annotations

import base64
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx
import yaml

from tests.helpers.procs import Proc, ProcessGroup


def start_localkube(
    procs: ProcessGroup, state_dir: Path, *, node: bool = True, extra_args: Sequence[str] = (),
    timeout: float = 60.0,
) -> tuple[Proc, Path]:
    """Start localkube on a free port; return (its process, its kubeconfig path)."""
    args = ["-m", "localkube", "--port", "0", "--state-dir", str(state_dir)]
    if not node:
        args.append("--no-node")
    args += list(extra_args)
    proc = procs.start(args, name="localkube", timeout=timeout)
    return proc, state_dir / "kubeconfig"


def kubectl_binary() -> str:
    found = shutil.which("kubectl") or str(Path(sys.executable).with_name("kubectl"))
    if not Path(found).exists():
        raise RuntimeError("kubectl is not installed: `make test` installs it into the venv")
    return found


def kubectl(
    kubeconfig: Path, *args: str, input: str | None = None, check: bool = True,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run kubectl against ``kubeconfig`` (its discovery cache kept next to it)."""
    cmd = [kubectl_binary(), "--kubeconfig", str(kubeconfig),
           "--cache-dir", str(kubeconfig.parent / "kubectl-cache"), *args]
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    result = subprocess.run(cmd, input=input, capture_output=True, text=True, env=env,
                            timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(
            f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}")
    return result


def admin_http(kubeconfig: Path, *, timeout: float = 10.0) -> httpx.Client:
    """An HTTP client for localkube's API as its kubeconfig's user (the admin): the
    server's URL, its CA and the bearer token, all read from ``kubeconfig``."""
    server, token, ca_pem = kubeconfig_parts(kubeconfig)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server, headers=headers, timeout=timeout,
                        verify=ssl.create_default_context(cadata=ca_pem))


def anonymous_http(kubeconfig: Path, *, timeout: float = 10.0) -> httpx.Client:
    """An HTTP client for localkube that trusts its CA and sends no credentials."""
    server, _, ca_pem = kubeconfig_parts(kubeconfig)
    return httpx.Client(base_url=server, timeout=timeout,
                        verify=ssl.create_default_context(cadata=ca_pem))


def kubeconfig_parts(kubeconfig: Path) -> tuple[str, str, str]:
    """(server URL, bearer token, CA certificate PEM) of a localkube kubeconfig."""
    cfg = yaml.safe_load(kubeconfig.read_text(encoding="utf-8"))
    cluster = cfg["clusters"][0]["cluster"]
    ca_pem = base64.b64decode(cluster["certificate-authority-data"]).decode()
    token = str(cfg["users"][0]["user"].get("token") or "")
    return str(cluster["server"]), token, ca_pem


def service_account_kubeconfig(kubeconfig: Path, namespace: str, account: str,
                               path: Path) -> Path:
    """A kubeconfig at ``path`` for the ServiceAccount ``namespace/account`` (its token
    from ``kubectl create token``), with the cluster and CA of ``kubeconfig``."""
    token = kubectl(kubeconfig, "create", "token", account, "-n", namespace).stdout.strip()
    cfg = yaml.safe_load(kubeconfig.read_text(encoding="utf-8"))
    cfg["users"] = [{"name": account, "user": {"token": token}}]
    cfg["contexts"] = [{"name": account, "context": {
        "cluster": cfg["clusters"][0]["name"], "user": account, "namespace": namespace}}]
    cfg["current-context"] = account
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path
