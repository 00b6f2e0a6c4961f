"""Endpoints and EndpointSlices of a Service, from its pods. Purely computational.

A Service with a selector gets one ``Endpoints`` object (its name) listing the
matching pods' addresses, Ready ones under ``addresses`` and the others under
``notReadyAddresses``, and ``discovery.k8s.io/v1`` EndpointSlices (one per set
of resolved ports) whose endpoints carry ``ready``/``serving``/``terminating``
conditions. A named ``targetPort`` is resolved per pod from its containers'
ports, so pods are grouped by the ports they resolve to.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from localkube.node.config import NODE_NAME
from localkube.node.podstatus import is_pod_ready

JsonObj = dict[str, Any]

SERVICE_NAME_LABEL: Final = "kubernetes.io/service-name"
MANAGED_BY_LABEL: Final = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY: Final = "endpointslice-controller.localkube"

PortKey = tuple[tuple[str, int, str], ...]


def selector_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """A Service's equality selector (an empty selector selects nothing)."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def service_pods(service: JsonObj, pods: Sequence[JsonObj]) -> list[JsonObj]:
    """The pods behind a Service: same namespace, selected, with an address, not finished."""
    meta = service.get("metadata") or {}
    ns = meta.get("namespace") or "default"
    selector = (service.get("spec") or {}).get("selector") or {}
    out = []
    for pod in pods:
        pmeta = pod.get("metadata") or {}
        status = pod.get("status") or {}
        if (pmeta.get("namespace") or "default") != ns or not status.get("podIP"):
            continue
        if status.get("phase") in ("Succeeded", "Failed"):
            continue
        if selector_matches(selector, pmeta.get("labels") or {}):
            out.append(pod)
    return sorted(out, key=lambda p: str((p.get("metadata") or {}).get("name", "")))


def container_port(pod: JsonObj, name: str, protocol: str) -> int | None:
    for c in (pod.get("spec") or {}).get("containers") or []:
        for port in c.get("ports") or []:
            if port.get("name") == name and (port.get("protocol") or "TCP") == protocol:
                return int(port["containerPort"])
    return None


def resolve_ports(service: JsonObj, pod: JsonObj) -> PortKey:
    """(name, port, protocol) of each Service port on this pod; unresolvable ones left out."""
    out = []
    for sp in (service.get("spec") or {}).get("ports") or []:
        protocol = str(sp.get("protocol") or "TCP")
        target = sp.get("targetPort", sp.get("port"))
        if isinstance(target, str) and not target.isdigit():
            number = container_port(pod, target, protocol)
            if number is None:
                continue
        else:
            number = int(target if target is not None else sp.get("port"))
        out.append((str(sp.get("name") or ""), number, protocol))
    return tuple(out)


def _ports_json(key: PortKey) -> list[JsonObj]:
    out = []
    for name, port, protocol in key:
        entry: JsonObj = {"port": port, "protocol": protocol}
        if name:
            entry["name"] = name
        out.append(entry)
    return out


def _target_ref(pod: JsonObj) -> JsonObj:
    meta = pod.get("metadata") or {}
    return {"kind": "Pod", "namespace": meta.get("namespace") or "default",
            "name": meta.get("name"), "uid": meta.get("uid")}


def _owner(service: JsonObj) -> list[JsonObj]:
    meta = service.get("metadata") or {}
    return [{"apiVersion": "v1", "kind": "Service", "name": meta.get("name"),
             "uid": meta.get("uid"), "controller": True, "blockOwnerDeletion": True}]


def _groups(service: JsonObj, pods: Sequence[JsonObj]) -> dict[PortKey, list[JsonObj]]:
    groups: dict[PortKey, list[JsonObj]] = {}
    for pod in pods:
        key = resolve_ports(service, pod)
        if key:
            groups.setdefault(key, []).append(pod)
    return groups


def build_endpoints(service: JsonObj, pods: Sequence[JsonObj]) -> JsonObj:
    """The Service's ``Endpoints`` object (without resourceVersion)."""
    meta = service.get("metadata") or {}
    publish_all = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    subsets = []
    for key, members in sorted(_groups(service, service_pods(service, pods)).items()):
        ready: list[JsonObj] = []
        not_ready: list[JsonObj] = []
        for pod in members:
            if (pod.get("metadata") or {}).get("deletionTimestamp"):
                continue
            address = {"ip": (pod.get("status") or {}).get("podIP"), "nodeName": NODE_NAME,
                       "targetRef": _target_ref(pod)}
            (ready if publish_all or is_pod_ready(pod) else not_ready).append(address)
        subset: JsonObj = {"ports": _ports_json(key)}
        if ready:
            subset["addresses"] = ready
        if not_ready:
            subset["notReadyAddresses"] = not_ready
        if ready or not_ready:
            subsets.append(subset)
    return {
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace") or "default",
                     "labels": dict(meta.get("labels") or {}), "ownerReferences": _owner(service)},
        "subsets": subsets,
    }


def slice_name(service_name: str, key: PortKey) -> str:
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:5]
    return f"{service_name}-{digest}"


def build_slices(service: JsonObj, pods: Sequence[JsonObj]) -> list[JsonObj]:
    """The Service's EndpointSlices (without resourceVersion), one per port set."""
    meta = service.get("metadata") or {}
    name = str(meta.get("name", ""))
    publish_all = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    groups = _groups(service, service_pods(service, pods))
    if not groups:
        numeric = tuple((str(sp.get("name") or ""), int(sp["targetPort"]),
                         str(sp.get("protocol") or "TCP"))
                        for sp in (service.get("spec") or {}).get("ports") or []
                        if isinstance(sp.get("targetPort"), int))
        groups = {numeric: []}
    out = []
    for key, members in sorted(groups.items()):
        endpoints = []
        for pod in members:
            terminating = bool((pod.get("metadata") or {}).get("deletionTimestamp"))
            ready = is_pod_ready(pod) or (publish_all and not terminating)
            serving = _ready_condition(pod) or publish_all
            endpoints.append({
                "addresses": [(pod.get("status") or {}).get("podIP")],
                "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
                "targetRef": _target_ref(pod), "nodeName": NODE_NAME,
            })
        labels = {**(meta.get("labels") or {}), SERVICE_NAME_LABEL: name,
                  MANAGED_BY_LABEL: MANAGED_BY}
        out.append({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": slice_name(name, key),
                         "namespace": meta.get("namespace") or "default",
                         "labels": labels, "ownerReferences": _owner(service)},
            "addressType": "IPv4", "endpoints": endpoints, "ports": _ports_json(key),
        })
    return out


def _ready_condition(pod: JsonObj) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def same_content(current: JsonObj, desired: JsonObj) -> bool:
    """Whether an existing object already holds what ``desired`` says (metadata labels too)."""
    for key, value in desired.items():
        if key in ("apiVersion", "kind"):
            continue
        if key == "metadata":
            cur_meta = current.get("metadata") or {}
            if (cur_meta.get("labels") or {}) != value.get("labels", {}):
                return False
            continue
        if (current.get(key) or []) != (value or []):
            return False
    return True
