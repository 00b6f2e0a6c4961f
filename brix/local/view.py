"""The live view of ``brix up``: a snapshot of the stack, and its text.

``render`` is a pure function of a ``Snapshot``; ``gather`` fills one from the
Kubernetes API (Deployments, LoraAdapters, the scaler's Events) and Prometheus
(queue and running requests per model).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import httpx

from brix.contract import LORA_GROUP, LORA_PLURAL, LORA_VERSION, MODEL_LABEL


@dataclass(frozen=True)
class ModelRow:
    model: str
    namespace: str
    ready: int
    desired: int
    waiting: float | None
    running: float | None
    adapters: tuple[str, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    models: tuple[ModelRow, ...]
    decisions: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default=())


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def render(snapshot: Snapshot, *, header: str = "") -> str:
    """The view as text: a table of models, then recent scaling decisions."""
    rows = [("MODEL", "NAMESPACE", "PODS", "WAITING", "RUNNING", "ADAPTERS")]
    for m in sorted(snapshot.models, key=lambda r: (r.namespace, r.model)):
        rows.append((m.model, m.namespace, f"{m.ready}/{m.desired}", _num(m.waiting),
                     _num(m.running), ", ".join(m.adapters) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = [header] if header else []
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    if not snapshot.models:
        lines.append("(no model Deployments yet)")
    lines.append("")
    lines.append("recent scaling decisions:")
    if snapshot.decisions:
        lines.extend(f"  {d}" for d in snapshot.decisions[-5:])
    else:
        lines.append("  (none yet)")
    for p in snapshot.problems:
        lines.append(f"! {p}")
    return "\n".join(lines)


def _prom_by_model(prometheus: httpx.Client, expr: str) -> dict[tuple[str, str], float]:
    r = prometheus.get("/api/v1/query", params={"query": expr})
    r.raise_for_status()
    out = {}
    for sample in r.json()["data"]["result"]:
        labels = sample["metric"]
        out[(labels.get("namespace", ""), labels.get("model", ""))] = float(sample["value"][1])
    return out


def gather(api: Any, custom: Any, core: Any, prometheus: httpx.Client) -> Snapshot:
    """Read the stack's state. ``api``/``custom``/``core`` are the kubernetes
    client's AppsV1Api, CustomObjectsApi and CoreV1Api; ``prometheus`` a client
    with Prometheus's base URL, kept across calls (a new one per call costs more
    CPU, in its TLS set-up, than everything else here)."""
    problems: list[str] = []
    waiting: dict[tuple[str, str], float] = {}
    running: dict[tuple[str, str], float] = {}
    try:
        waiting = _prom_by_model(prometheus,
                                 "sum by (namespace, model) (brix_engine_requests_waiting)")
        running = _prom_by_model(prometheus,
                                 "sum by (namespace, model) (brix_engine_requests_running)")
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        problems.append(f"Prometheus: {exc}")
    adapters: dict[tuple[str, str], list[str]] = {}
    try:
        loras = custom.list_cluster_custom_object(LORA_GROUP, LORA_VERSION, LORA_PLURAL)
        for item in loras.get("items", []):
            ns, base = item["metadata"]["namespace"], item["spec"]["baseModel"]
            status = item.get("status") or {}
            adapters.setdefault((ns, base), []).append(
                f"{item['metadata']['name']} ({status.get('phase', 'Pending')} "
                f"{status.get('readyReplicas', 0)}/{status.get('desiredReplicas', 0)})")
    except Exception as exc:
        problems.append(f"LoraAdapters: {exc}")
    rows = []
    decisions: list[tuple[dt.datetime, str]] = []
    deps = api.list_deployment_for_all_namespaces(label_selector=MODEL_LABEL)
    for d in deps.items:
        ns, model = d.metadata.namespace, d.metadata.labels[MODEL_LABEL]
        rows.append(ModelRow(
            model=model, namespace=ns, ready=(d.status.ready_replicas if d.status else None) or 0,
            desired=d.spec.replicas or 0, waiting=waiting.get((ns, model)),
            running=running.get((ns, model)), adapters=tuple(adapters.get((ns, model), ())),
        ))
        events = core.list_namespaced_event(ns, field_selector=(
            f"involvedObject.kind=Deployment,involvedObject.name={d.metadata.name}"))
        for ev in events.items:
            if ev.source and ev.source.component and "scaler" in ev.source.component:
                when = ev.last_timestamp or ev.event_time or ev.metadata.creation_timestamp
                decisions.append((when, f"{when:%H:%M:%S} {d.metadata.name}: {ev.message}"))
    decisions.sort(key=lambda x: x[0])
    return Snapshot(models=tuple(rows), decisions=tuple(d for _, d in decisions),
                    problems=tuple(problems))
