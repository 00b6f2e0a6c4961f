"""Prometheus HTTP service discovery for pods. Purely computational.

``target_groups(pods)`` answers what Prometheus's ``kubernetes_sd_configs``
pod role would find, in the ``http_sd_configs`` format: one target group per
container port of each running pod (one per container without ports), with
the ``__meta_kubernetes_*`` labels of that role, so that the same relabelling
rules work under localkube and on a cluster.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def sanitize(name: str) -> str:
    """A Kubernetes label or annotation name as Prometheus writes it in a label name."""
    return _INVALID.sub("_", name)


def pod_ready(pod: Mapping[str, Any]) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def _pod_labels(pod: Mapping[str, Any]) -> dict[str, str]:
    md = pod.get("metadata") or {}
    status = pod.get("status") or {}
    spec = pod.get("spec") or {}
    labels = {
        "__meta_kubernetes_namespace": str(md.get("namespace", "")),
        "__meta_kubernetes_pod_name": str(md.get("name", "")),
        "__meta_kubernetes_pod_ip": str(status.get("podIP", "")),
        "__meta_kubernetes_pod_ready": "true" if pod_ready(pod) else "false",
        "__meta_kubernetes_pod_phase": str(status.get("phase", "")),
        "__meta_kubernetes_pod_node_name": str(spec.get("nodeName", "")),
        "__meta_kubernetes_pod_host_ip": str(status.get("hostIP", "")),
        "__meta_kubernetes_pod_uid": str(md.get("uid", "")),
    }
    for k, v in (md.get("labels") or {}).items():
        labels[f"__meta_kubernetes_pod_label_{sanitize(k)}"] = str(v)
        labels[f"__meta_kubernetes_pod_labelpresent_{sanitize(k)}"] = "true"
    for k, v in (md.get("annotations") or {}).items():
        labels[f"__meta_kubernetes_pod_annotation_{sanitize(k)}"] = str(v)
        labels[f"__meta_kubernetes_pod_annotationpresent_{sanitize(k)}"] = "true"
    for ref in md.get("ownerReferences") or []:
        if ref.get("controller"):
            labels["__meta_kubernetes_pod_controller_kind"] = str(ref.get("kind", ""))
            labels["__meta_kubernetes_pod_controller_name"] = str(ref.get("name", ""))
    return labels


def target_groups(
    pods: Iterable[Mapping[str, Any]], *, ready_only: bool = True, port_name: str | None = None,
) -> list[dict[str, Any]]:
    """http_sd target groups for ``pods`` (those with an IP; only Ready ones by default).

    ``port_name`` keeps only the container ports of that name.
    """
    groups: list[dict[str, Any]] = []
    for pod in pods:
        ip = (pod.get("status") or {}).get("podIP")
        if not ip or (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        if ready_only and not pod_ready(pod):
            continue
        base = _pod_labels(pod)
        statuses = {s.get("name"): s for s in (pod.get("status") or {}).get(
            "containerStatuses") or []}
        for init, key in ((False, "containers"), (True, "initContainers")):
            for c in (pod.get("spec") or {}).get(key) or []:
                clabels = {
                    **base,
                    "__meta_kubernetes_pod_container_name": str(c.get("name", "")),
                    "__meta_kubernetes_pod_container_image": str(c.get("image", "")),
                    "__meta_kubernetes_pod_container_init": "true" if init else "false",
                }
                cid = (statuses.get(c.get("name")) or {}).get("containerID")
                if cid:
                    clabels["__meta_kubernetes_pod_container_id"] = str(cid)
                ports = c.get("ports") or []
                if not ports:
                    if port_name is None and not init:
                        groups.append({"targets": [ip], "labels": clabels})
                    continue
                for p in ports:
                    if port_name is not None and p.get("name") != port_name:
                        continue
                    groups.append({
                        "targets": [f"{ip}:{p.get('containerPort')}"],
                        "labels": {
                            **clabels,
                            "__meta_kubernetes_pod_container_port_name": str(p.get("name", "")),
                            "__meta_kubernetes_pod_container_port_number":
                                str(p.get("containerPort", "")),
                            "__meta_kubernetes_pod_container_port_protocol":
                                str(p.get("protocol", "TCP")),
                        },
                    })
    return groups
