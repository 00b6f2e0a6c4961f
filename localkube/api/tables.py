"""The ``Table`` format ``kubectl get`` asks for. Purely computational.

Built-in kinds get the columns kubectl users know; custom resources get their
CRD's ``additionalPrinterColumns`` (JSONPath into the object); every other
kind gets Name and Age.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from localkube.api.meta import human_age
from localkube.api.resources import PrinterColumn, ResourceType
from localkube.api.selectors import LabelSelector

Obj = Mapping[str, Any]
Column = tuple[str, str, str, int, Callable[[Obj], Any]]  # name, type, format, priority, value


def _name(o: Obj) -> str:
    return str(o.get("metadata", {}).get("name", ""))


def _age(o: Obj) -> str:
    return human_age(o.get("metadata", {}).get("creationTimestamp"))


def _pod_ready(o: Obj) -> str:
    statuses = (o.get("status") or {}).get("containerStatuses") or []
    total = len((o.get("spec") or {}).get("containers") or [])
    ready = sum(1 for s in statuses if s.get("ready"))
    return f"{ready}/{total}"


def _pod_status(o: Obj) -> str:
    if o.get("metadata", {}).get("deletionTimestamp"):
        return "Terminating"
    status = o.get("status") or {}
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            return str(waiting["reason"])
        term = (cs.get("state") or {}).get("terminated")
        if term and term.get("reason") and status.get("phase") != "Running":
            return str(term["reason"])
    return str(status.get("reason") or status.get("phase") or "Unknown")


def _pod_restarts(o: Obj) -> int:
    return sum(int(s.get("restartCount", 0))
               for s in (o.get("status") or {}).get("containerStatuses") or [])


def _deploy_ready(o: Obj) -> str:
    st = o.get("status") or {}
    return f"{st.get('readyReplicas', 0)}/{(o.get('spec') or {}).get('replicas', 0)}"


def _svc_ports(o: Obj) -> str:
    parts = []
    for p in (o.get("spec") or {}).get("ports") or []:
        text = str(p.get("port"))
        if p.get("nodePort"):
            text += f":{p['nodePort']}"
        parts.append(f"{text}/{p.get('protocol', 'TCP')}")
    return ",".join(parts) or "<none>"


def _selector(o: Obj) -> str:
    sel = (o.get("spec") or {}).get("selector")
    if not sel:
        return "<none>"
    if "matchLabels" in sel or "matchExpressions" in sel:
        return str(LabelSelector.from_object(sel)) or "<none>"
    return ",".join(f"{k}={v}" for k, v in sel.items())


def _containers(field: str) -> Callable[[Obj], str]:
    def get(o: Obj) -> str:
        spec = ((o.get("spec") or {}).get("template") or {}).get("spec") or {}
        return ",".join(str(c.get(field, "")) for c in spec.get("containers") or [])
    return get


def _status(path: str, default: Any = 0) -> Callable[[Obj], Any]:
    def get(o: Obj) -> Any:
        return (o.get("status") or {}).get(path, default)
    return get


_NAME: Column = ("Name", "string", "name", 0, _name)
_AGE: Column = ("Age", "string", "", 0, _age)

BUILTIN_COLUMNS: dict[tuple[str, str], list[Column]] = {
    ("", "pods"): [
        _NAME, ("Ready", "string", "", 0, _pod_ready), ("Status", "string", "", 0, _pod_status),
        ("Restarts", "integer", "", 0, _pod_restarts), _AGE,
        ("IP", "string", "", 1, lambda o: (o.get("status") or {}).get("podIP") or "<none>"),
        ("Node", "string", "", 1, lambda o: (o.get("spec") or {}).get("nodeName") or "<none>"),
    ],
    ("apps", "deployments"): [
        _NAME, ("Ready", "string", "", 0, _deploy_ready),
        ("Up-to-date", "integer", "", 0, _status("updatedReplicas")),
        ("Available", "integer", "", 0, _status("availableReplicas")), _AGE,
        ("Containers", "string", "", 1, _containers("name")),
        ("Images", "string", "", 1, _containers("image")),
        ("Selector", "string", "", 1, _selector),
    ],
    ("", "services"): [
        _NAME, ("Type", "string", "", 0, lambda o: (o.get("spec") or {}).get("type", "")),
        ("Cluster-IP", "string", "", 0,
         lambda o: (o.get("spec") or {}).get("clusterIP") or "<none>"),
        ("External-IP", "string", "", 0, lambda o: "<none>"),
        ("Port(s)", "string", "", 0, _svc_ports), _AGE,
        ("Selector", "string", "", 1, _selector),
    ],
    ("", "namespaces"): [_NAME, ("Status", "string", "", 0, _status("phase", "")), _AGE],
    ("", "configmaps"): [
        _NAME,
        ("Data", "integer", "", 0,
         lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {})),
        _AGE,
    ],
    ("", "secrets"): [_NAME, ("Type", "string", "", 0, lambda o: o.get("type", "")),
                      ("Data", "integer", "", 0, lambda o: len(o.get("data") or {})), _AGE],
    ("", "endpoints"): [_NAME, ("Endpoints", "string", "", 0, lambda o: ",".join(
        f"{a.get('ip')}:{p.get('port')}" for s in o.get("subsets") or []
        for a in s.get("addresses") or [] for p in s.get("ports") or []) or "<none>"), _AGE],
    ("", "events"): [
        ("Last Seen", "string", "", 0, lambda o: human_age(
            o.get("lastTimestamp") or o.get("eventTime")
            or o.get("metadata", {}).get("creationTimestamp"))),
        ("Type", "string", "", 0, lambda o: o.get("type", "")),
        ("Reason", "string", "", 0, lambda o: o.get("reason", "")),
        ("Object", "string", "", 0, lambda o: "{}/{}".format(
            str((o.get("involvedObject") or {}).get("kind", "")).lower(),
            (o.get("involvedObject") or {}).get("name", ""))),
        ("Message", "string", "", 0, lambda o: o.get("message", "")),
        _NAME,
    ],
    ("", "nodes"): [
        _NAME,
        ("Status", "string", "", 0, lambda o: next(
            ("Ready" if c.get("status") == "True" else "NotReady"
             for c in (o.get("status") or {}).get("conditions") or []
             if c.get("type") == "Ready"), "Unknown")),
        ("Roles", "string", "", 0, lambda o: "<none>"), _AGE,
        ("Version", "string", "", 0, lambda o: ((o.get("status") or {}).get("nodeInfo")
                                                 or {}).get("kubeletVersion", "")),
    ],
    ("apps", "replicasets"): [
        _NAME, ("Desired", "integer", "", 0, lambda o: (o.get("spec") or {}).get("replicas", 0)),
        ("Current", "integer", "", 0, _status("replicas")),
        ("Ready", "integer", "", 0, _status("readyReplicas")), _AGE,
    ],
    ("discovery.k8s.io", "endpointslices"): [
        _NAME, ("AddressType", "string", "", 0, lambda o: o.get("addressType", "")),
        ("Ports", "string", "", 0, lambda o: ",".join(
            str(p.get("port")) for p in o.get("ports") or []) or "<unset>"),
        ("Endpoints", "string", "", 0, lambda o: ",".join(
            a for e in o.get("endpoints") or [] for a in e.get("addresses") or [])
            or "<unset>"),
        _AGE,
    ],
    ("autoscaling", "horizontalpodautoscalers"): [
        _NAME, ("Reference", "string", "", 0, lambda o: "{}/{}".format(
            ((o.get("spec") or {}).get("scaleTargetRef") or {}).get("kind", ""),
            ((o.get("spec") or {}).get("scaleTargetRef") or {}).get("name", ""))),
        ("MinPods", "integer", "", 0, lambda o: (o.get("spec") or {}).get("minReplicas", 1)),
        ("MaxPods", "integer", "", 0, lambda o: (o.get("spec") or {}).get("maxReplicas", 0)),
        ("Replicas", "integer", "", 0, _status("currentReplicas")), _AGE,
    ],
    ("coordination.k8s.io", "leases"): [
        _NAME, ("Holder", "string", "", 0,
                lambda o: (o.get("spec") or {}).get("holderIdentity", "")), _AGE,
    ],
    ("apiextensions.k8s.io", "customresourcedefinitions"): [
        _NAME, ("Created At", "date", "", 0,
                lambda o: o.get("metadata", {}).get("creationTimestamp", "")),
    ],
}


# --- JSONPath for printer columns -------------------------------------------------

_SEGMENT = re.compile(
    r"\.([A-Za-z0-9_\-]+)"  # .field
    r"|\[(\d+)\]"  # [0]
    r"|\[\?\(@\.([A-Za-z0-9_.\-]+)\s*==\s*['\"]([^'\"]*)['\"]\)\]"  # [?(@.type=="Ready")]
    r"|\['([^']+)'\]"  # ['field']
)


def jsonpath(obj: Any, path: str) -> Any:
    """A CRD printer column's JSONPath (``.status.phase``, ``.a[0]``, ``.c[?(@.type=="R")].s``)."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    if path.startswith("$"):
        path = path[1:]
    values = [obj]
    pos = 0
    while pos < len(path):
        m = _SEGMENT.match(path, pos)
        if m is None:
            return None
        pos = m.end()
        nxt = []
        for v in values:
            if m.group(1) is not None or m.group(5) is not None:
                key = m.group(1) if m.group(1) is not None else m.group(5)
                if isinstance(v, Mapping) and key in v:
                    nxt.append(v[key])
            elif m.group(2) is not None:
                idx = int(m.group(2))
                if isinstance(v, list) and idx < len(v):
                    nxt.append(v[idx])
            else:
                fld, want = m.group(3), m.group(4)
                if isinstance(v, list):
                    for item in v:
                        got: Any = item
                        for part in fld.split("."):
                            got = got.get(part) if isinstance(got, Mapping) else None
                        if got is not None and str(got) == want:
                            nxt.append(item)
        values = nxt
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _custom_cell(col: PrinterColumn, obj: Obj) -> Any:
    value = jsonpath(obj, col.json_path)
    if value is None:
        return None
    if col.type == "date":
        return human_age(str(value))
    if col.type == "integer" and isinstance(value, int | float):
        return int(value)
    if col.type == "number" and isinstance(value, int | float):
        return value
    if col.type == "boolean":
        return bool(value)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _cell_of(col: PrinterColumn) -> Callable[[Obj], Any]:
    def cell(obj: Obj) -> Any:
        return _custom_cell(col, obj)
    return cell


def columns(rt: ResourceType) -> list[Column]:
    if rt.custom:
        if not rt.printer_columns:
            return [_NAME, _AGE]
        cols: list[Column] = [_NAME]
        for c in rt.printer_columns:
            cols.append((c.name, "string" if c.type == "date" else c.type, c.format, c.priority,
                         _cell_of(c)))
        return cols
    return BUILTIN_COLUMNS.get(rt.key, [_NAME, _AGE])


def partial_metadata(obj: Obj) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata", {})}


def to_table(
    rt: ResourceType, objs: Sequence[Obj], *, include: str = "Metadata",
    resource_version: str = "", continue_token: str = "", headers: bool = True,
) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` Table of ``objs`` (``include``: None, Metadata or Object)."""
    cols = columns(rt)
    rows = []
    for o in objs:
        row: dict[str, Any] = {"cells": [fn(o) for *_, fn in cols]}
        if include == "Object":
            row["object"] = o
        elif include != "None":
            row["object"] = partial_metadata(o)
        rows.append(row)
    md: dict[str, Any] = {"resourceVersion": resource_version}
    if continue_token:
        md["continue"] = continue_token
    table: dict[str, Any] = {
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": md,
        "columnDefinitions": [
            {"name": n, "type": t, "format": f, "description": n, "priority": p}
            for n, t, f, p, _ in cols
        ] if headers else [],
        "rows": rows,
    }
    return table
