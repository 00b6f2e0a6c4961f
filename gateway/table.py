"""The routing table: which endpoints serve each model and adapter, in memory.

Discovery (Kubernetes watches) and configuration (static routes, service
mode) write into it; the request path reads it. It is touched only from the
event loop, so it needs no lock. Every change rebuilds the small index that
requests read, then wakes whoever waits for a change (requests held for a
model with no ready pod).

The ``*_state`` functions turn API objects (plain dicts, as the API server
sends them) into what the table keeps; they are pure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from brix.contract import ENGINE_PORT, ENGINE_PORT_NAME, MODEL_LABEL, SIDECAR_PORT_NAME

Kind = Literal["pods", "deployments", "adapters"]
Key = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where requests go: a pod (or a Service, or a fixed URL)."""

    name: str
    """What ``x-brix-pod`` says: the pod's name, or the Service's host."""
    url: str
    """Base URL of its engine, e.g. ``http://10.0.0.7:8000``."""
    sidecar_url: str | None = None
    """Base URL of its sidecar, when the pod has one (least-queue polls it)."""


@dataclass(frozen=True, slots=True)
class PodState:
    namespace: str
    name: str
    model: str
    endpoint: Endpoint | None
    """None while the pod is not a candidate (not Ready, no IP, terminating)."""


@dataclass(frozen=True, slots=True)
class AdapterState:
    namespace: str
    name: str
    base_model: str
    loaded_pods: tuple[str, ...]
    """Names of the pods (in the adapter's namespace) its status says it is loaded on."""


@dataclass(frozen=True, slots=True)
class DeploymentState:
    namespace: str
    name: str
    model: str


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One line of /v1/models."""

    id: str
    parent: str | None = None


@dataclass(frozen=True, slots=True)
class Route:
    """What a request for one name resolves to."""

    endpoints: tuple[Endpoint, ...]
    model: str
    """The base model (the name itself, or an adapter's base): the metrics' label."""


State = PodState | AdapterState | DeploymentState


# --- API objects -> state (pure) ----------------------------------------------

def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata") or {}
    return meta if isinstance(meta, Mapping) else {}


def _label(obj: Mapping[str, Any]) -> str | None:
    labels = _meta(obj).get("labels") or {}
    value = labels.get(MODEL_LABEL) if isinstance(labels, Mapping) else None
    return value if isinstance(value, str) and value else None


def _named_port(spec: Mapping[str, Any], name: str) -> int | None:
    for container in spec.get("containers") or ():
        for port in container.get("ports") or ():
            if port.get("name") == name and isinstance(port.get("containerPort"), int):
                return int(port["containerPort"])
    return None


def pod_is_ready(obj: Mapping[str, Any]) -> bool:
    status = obj.get("status") or {}
    if status.get("phase") not in (None, "Running"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or ()
    )


def pod_state(obj: Mapping[str, Any]) -> PodState | None:
    """A Pod as the table keeps it; None when it carries no model label."""
    model = _label(obj)
    meta = _meta(obj)
    if model is None:
        return None
    namespace, name = str(meta.get("namespace") or "default"), str(meta.get("name") or "")
    ip = (obj.get("status") or {}).get("podIP")
    endpoint = None
    if ip and pod_is_ready(obj) and not meta.get("deletionTimestamp"):
        spec = obj.get("spec") or {}
        host = f"[{ip}]" if ":" in ip else ip
        port = _named_port(spec, ENGINE_PORT_NAME) or ENGINE_PORT
        sidecar = _named_port(spec, SIDECAR_PORT_NAME)
        endpoint = Endpoint(
            name=name,
            url=f"http://{host}:{port}",
            sidecar_url=f"http://{host}:{sidecar}" if sidecar else None,
        )
    return PodState(namespace=namespace, name=name, model=model, endpoint=endpoint)


def adapter_state(obj: Mapping[str, Any]) -> AdapterState | None:
    """A LoraAdapter as the table keeps it; None when it has no base model."""
    meta = _meta(obj)
    spec = obj.get("spec") or {}
    base = spec.get("baseModel")
    if not isinstance(base, str) or not base:
        return None
    loaded = []
    for entry in (obj.get("status") or {}).get("loadedPods") or ():
        if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
            loaded.append(entry["name"])
    return AdapterState(
        namespace=str(meta.get("namespace") or "default"), name=str(meta.get("name") or ""),
        base_model=base, loaded_pods=tuple(loaded),
    )


def deployment_state(obj: Mapping[str, Any]) -> DeploymentState | None:
    model = _label(obj)
    if model is None:
        return None
    meta = _meta(obj)
    return DeploymentState(namespace=str(meta.get("namespace") or "default"),
                           name=str(meta.get("name") or ""), model=model)


STATE_OF = {"pods": pod_state, "deployments": deployment_state, "adapters": adapter_state}


def key_of(obj: Mapping[str, Any]) -> Key:
    meta = _meta(obj)
    return (str(meta.get("namespace") or "default"), str(meta.get("name") or ""))


# --- the table ---------------------------------------------------------------

class RoutingTable:
    """Models and adapters -> endpoints, from discovery and configuration."""

    def __init__(
        self,
        *,
        static: Mapping[str, Iterable[Endpoint]] | None = None,
        hold_models: Iterable[str] = (),
    ) -> None:
        self._static = {m: tuple(sorted(eps, key=lambda e: e.url))
                        for m, eps in (static or {}).items()}
        self._hold_models = frozenset(hold_models)
        self._objects: dict[Kind, dict[Key, Any]] = {"pods": {}, "deployments": {}, "adapters": {}}
        self._routes: dict[str, Route] = {}
        self._known: frozenset[str] = frozenset()
        self._base_of: dict[str, str] = {}
        self._models: list[ModelEntry] = []
        self._changed = asyncio.Event()
        self._rebuild()

    # --- writes (discovery) ---

    def replace(
        self, kind: Kind, states: Mapping[Key, State], namespace: str | None = None,
    ) -> None:
        """Everything of ``kind`` (in ``namespace``, or in all) is now ``states`` (after a list)."""
        kept = {} if namespace is None else {
            k: v for k, v in self._objects[kind].items() if k[0] != namespace
        }
        kept.update(states)
        if kept != self._objects[kind]:
            self._objects[kind] = kept
            self._rebuild()

    def upsert(self, kind: Kind, key: Key, state: State | None) -> None:
        """One object was added or changed (``None``: it no longer concerns us)."""
        if state is None:
            self.delete(kind, key)
            return
        if self._objects[kind].get(key) == state:
            return
        self._objects[kind][key] = state
        self._rebuild()

    def delete(self, kind: Kind, key: Key) -> None:
        if self._objects[kind].pop(key, None) is not None:
            self._rebuild()

    # --- reads (requests) ---

    def route(self, name: str) -> Route | None:
        """Ready endpoints for a model or adapter name; None when there are none."""
        return self._routes.get(name)

    def exists(self, name: str) -> bool:
        """Is ``name`` something that may become ready (so a request for it waits)?"""
        return name in self._known

    def base_model(self, name: str) -> str:
        """The base model of an adapter, or the name itself."""
        return self._base_of.get(name, name)

    def models(self) -> list[ModelEntry]:
        return list(self._models)

    def endpoints(self) -> set[Endpoint]:
        """Every endpoint in the table (the load poller's list)."""
        return {e for r in self._routes.values() for e in r.endpoints}

    def objects(self, kind: Kind) -> dict[Key, State]:
        """What the table holds of ``kind`` (a copy): what ``replace`` takes back."""
        return dict(self._objects[kind])

    def changed(self) -> asyncio.Event:
        """An event set at the next change of the table."""
        return self._changed

    # --- the index ---

    def _rebuild(self) -> None:
        pods: dict[Key, PodState] = self._objects["pods"]
        deployments: dict[Key, DeploymentState] = self._objects["deployments"]
        adapters: dict[Key, AdapterState] = self._objects["adapters"]

        ready: dict[str, list[Endpoint]] = {}
        for pod in pods.values():
            if pod.endpoint is not None:
                ready.setdefault(pod.model, []).append(pod.endpoint)
        routes: dict[str, Route] = {}
        for model, ready_eps in ready.items():
            routes[model] = Route(tuple(sorted(ready_eps, key=lambda e: e.url)), model)
        for model, static_eps in self._static.items():
            if static_eps:
                routes[model] = Route(static_eps, model)

        base_of: dict[str, str] = {}
        adapter_eps: dict[str, list[Endpoint]] = {}
        for adapter in adapters.values():
            if adapter.name in routes or adapter.name in self._static:
                continue  # a base model of that name wins
            base_of[adapter.name] = adapter.base_model
            for pod_name in adapter.loaded_pods:
                loaded = pods.get((adapter.namespace, pod_name))
                if loaded is not None and loaded.endpoint is not None:
                    adapter_eps.setdefault(adapter.name, []).append(loaded.endpoint)
        for name, eps in adapter_eps.items():
            routes[name] = Route(tuple(sorted(set(eps), key=lambda e: e.url)), base_of[name])

        known = set(self._hold_models) | set(self._static) | set(base_of)
        known |= {p.model for p in pods.values()} | {d.model for d in deployments.values()}

        models = [ModelEntry(m) for m in sorted(ready.keys() | {m for m, e in self._static.items()
                                                                 if e})]
        models += [ModelEntry(a, base_of[a]) for a in sorted(adapter_eps)]

        self._routes, self._known, self._base_of, self._models = (
            routes, frozenset(known), base_of, models,
        )
        old, self._changed = self._changed, asyncio.Event()
        old.set()
