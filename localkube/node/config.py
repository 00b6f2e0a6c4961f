"""The node's configuration (given by localkube's ``__main__``)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

NODE_NAME: Final = "localkube"
"""The one node's name (``spec.nodeName`` of every pod, shown by ``kubectl get -o wide``)."""
HOST_IP: Final = "127.0.0.1"
"""``status.hostIP`` of every pod, and where hostPorts and NodePorts are exposed."""
NODE_STOP_GRACE_SECONDS: Final = 5.0
"""On shutdown each pod gets at most this long between SIGTERM and SIGKILL, so that
localkube stops promptly (a test harness's own SIGKILL comes after about 15 s)."""


@dataclass(frozen=True, kw_only=True)
class NodeConfig:
    """What the node needs to know about the localkube it belongs to."""

    api_url: str
    """The API server, e.g. ``http://127.0.0.1:6443``."""
    kubeconfig: Path
    """``DIR/kubeconfig`` (the admin's): the node's own credentials. Pods get their
    ServiceAccount's instead (``identity``)."""
    state_dir: Path
    """Container logs go to ``state_dir/logs/<namespace>/<pod>/<container>.log`` (the API
    server serves ``pods/log`` from there); pods' volumes and working directories to
    ``state_dir/pods/``."""
    ca_file: Path | None = None
    """The API server's CA (``https://`` URLs); pods get it as their ``ca.crt``."""
    python: str = sys.executable
    """The virtual environment's interpreter: its directory comes first on every
    container's ``PATH``, so ``python`` and the project's console scripts resolve there."""
    runtime: str = "process"
    """``process`` (commands in the virtual environment) or ``podman`` (containers from
    their images; ``localkube.node.runtime``)."""


def log_path(state_dir: Path, namespace: str, pod: str, container: str) -> Path:
    """Where a container's output goes (and where ``pods/log`` reads it)."""
    return state_dir / "logs" / namespace / pod / f"{container}.log"
