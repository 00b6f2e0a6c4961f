"""localkube's settings: flags of ``python -m localkube``, each also a ``BRIX_*`` variable."""

from __future__ import annotations

from dataclasses import dataclass

from brix.config import setting
from brix.contract import LOCALKUBE_PORT


@dataclass(frozen=True, kw_only=True)
class LocalkubeSettings:
    """localkube: an embedded Kubernetes API and a node that runs pods as local processes."""

    port: int = setting(LOCALKUBE_PORT, help="Port of the API server (0: any free port).")
    host: str = setting(
        "127.0.0.1", help="Address the API server binds; localkube is for this machine only.",
        env="BRIX_LOCALKUBE_HOST")
    state_dir: str = setting(
        ".brix/localkube",
        help="Directory for the kubeconfig, persisted objects and container logs.")
    node: bool = setting(
        True, help="Run the node (kubelet, deployment and endpoints controllers, proxies) in "
        "the same process; --no-node serves the API alone.")
    persist: bool = setting(
        True, help="Keep the objects in STATE_DIR/objects.json so that a restart finds them.")
    watch_history: int = setting(
        10_000, help="Changes kept for watches to resume from; older resourceVersions get "
        "410 Expired (Kubernetes keeps about 5 minutes of them).")
    bookmark_interval: float = setting(
        5.0, help="Seconds between BOOKMARK events on a quiet watch that allows them.")
    pod_force_delete_after: float = setting(
        10.0, help="Seconds after a pod's grace period ends before the API removes a pod no "
        "kubelet finished deleting.")
    event_ttl: float = setting(
        3600.0, help="Seconds an Event is kept after its last change (Kubernetes: one hour).")
    runtime: str = setting(
        "process", help="How the node runs containers: 'process' (each command in the "
        "virtual environment) or 'podman' (each container from its image).",
        choices=("process", "podman"))
    audit_log: str = setting(
        "", help="Append an audit record per request (JSON lines: user, verb, resource, "
        "subresource, namespace, name, code) to this file; empty: no audit.",
        env="BRIX_LOCALKUBE_AUDIT_LOG")
    log_level: str = setting("INFO", help="Logging level.",
                             choices=("DEBUG", "INFO", "WARNING", "ERROR"))
