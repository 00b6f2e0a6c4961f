"""The operator's data: adapters, pods and what their sidecars report.

Purely computational: parsing Kubernetes objects (plain mappings) into frozen
dataclasses, with no I/O. The pure decisions in :mod:`placement` and
:mod:`planning` work on these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from brix.contract import MODEL_LABEL, SIDECAR_PORT, SIDECAR_PORT_NAME

FailureKind = Literal["unreachable", "refused", "unauthorized"]


class InvalidSpec(ValueError):
    """A LoraAdapter whose spec cannot be acted on (the user's error, not retried)."""


@dataclass(frozen=True, slots=True)
class Requirement:
    """One ``matchExpressions`` entry of a label selector."""

    key: str
    operator: str  # In, NotIn, Exists, DoesNotExist
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A Kubernetes LabelSelector; the empty one matches everything."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, value in self.match_labels:
            if labels.get(key) != value:
                return False
        for req in self.match_expressions:
            present = req.key in labels
            if req.operator == "In" and not (present and labels[req.key] in req.values):
                return False
            if req.operator == "NotIn" and present and labels[req.key] in req.values:
                return False
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
        return True

    @classmethod
    def parse(cls, raw: Any) -> LabelSelector:
        """From a ``podSelector`` mapping; :class:`InvalidSpec` naming the bad part."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise InvalidSpec("spec.podSelector must be an object")
        labels = raw.get("matchLabels") or {}
        if not isinstance(labels, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise InvalidSpec("spec.podSelector.matchLabels must map strings to strings")
        reqs: list[Requirement] = []
        for i, expr in enumerate(raw.get("matchExpressions") or []):
            where = f"spec.podSelector.matchExpressions[{i}]"
            if not isinstance(expr, Mapping) or not isinstance(expr.get("key"), str):
                raise InvalidSpec(f"{where}.key is required")
            op = expr.get("operator")
            values = tuple(str(v) for v in expr.get("values") or ())
            if op in ("In", "NotIn") and not values:
                raise InvalidSpec(f"{where}.values must be non-empty for operator {op}")
            if op in ("Exists", "DoesNotExist") and values:
                raise InvalidSpec(f"{where}.values must be empty for operator {op}")
            if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
                raise InvalidSpec(f"{where}.operator {op!r} is not In, NotIn, Exists or "
                                  "DoesNotExist")
            reqs.append(Requirement(expr["key"], op, values))
        return cls(tuple(sorted(labels.items())), tuple(reqs))


@dataclass(frozen=True, slots=True)
class AdapterSpec:
    """What a LoraAdapter asks for. ``name`` is what the adapter is served as."""

    namespace: str
    name: str
    base_model: str
    source: str
    sha256: str | None = None
    replicas: int | None = None  # None: every matching Ready pod
    pod_selector: LabelSelector = field(default_factory=LabelSelector)
    generation: int = 0

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> AdapterSpec:
        meta = body.get("metadata") or {}
        spec = body.get("spec") or {}
        base, source = spec.get("baseModel"), spec.get("source")
        if not isinstance(base, str) or not base:
            raise InvalidSpec("spec.baseModel is required")
        if not isinstance(source, str) or not source:
            raise InvalidSpec("spec.source is required")
        replicas = spec.get("replicas")
        if replicas is not None and (not isinstance(replicas, int) or replicas < 0):
            raise InvalidSpec("spec.replicas must be an integer >= 0")
        sha = spec.get("sha256")
        return cls(
            namespace=str(meta.get("namespace") or "default"),
            name=str(meta.get("name") or ""),
            base_model=base,
            source=source,
            sha256=str(sha).lower() if sha else None,
            replicas=replicas,
            pod_selector=LabelSelector.parse(spec.get("podSelector")),
            generation=int(meta.get("generation") or 0),
        )


@dataclass(frozen=True, slots=True)
class PodInfo:
    """What the operator needs of a Pod of a base model."""

    namespace: str
    name: str
    model: str
    ip: str | None
    ready: bool
    port: int = SIDECAR_PORT
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    @property
    def sidecar_url(self) -> str:
        host = f"[{self.ip}]" if self.ip and ":" in self.ip else self.ip
        return f"http://{host}:{self.port}"

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> PodInfo:
        meta = body.get("metadata") or {}
        status = body.get("status") or {}
        labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
        conditions = status.get("conditions") or []
        ready = (
            not meta.get("deletionTimestamp")
            and status.get("phase", "Running") == "Running"
            and any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        )
        return cls(
            namespace=str(meta.get("namespace") or "default"),
            name=str(meta.get("name") or ""),
            model=labels.get(MODEL_LABEL, ""),
            ip=status.get("podIP") or None,
            ready=bool(ready),
            port=_sidecar_port(body.get("spec") or {}),
            labels=tuple(sorted(labels.items())),
        )


def _sidecar_port(spec: Mapping[str, Any]) -> int:
    """The container port named ``sidecar`` (DESIGN.md), else the contract's default."""
    for container in spec.get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == SIDECAR_PORT_NAME and port.get("containerPort"):
                return int(port["containerPort"])
    return SIDECAR_PORT


@dataclass(frozen=True, slots=True)
class Loaded:
    """One adapter a sidecar reports as loaded (source/sha256/path when it says them)."""

    name: str
    source: str | None = None
    sha256: str | None = None
    path: str | None = None  # where the engine read it from


def parse_adapter_list(payload: Any) -> tuple[Loaded, ...]:
    """A sidecar's ``GET /v1/adapters`` answer: a list, or an object holding one.

    Items are names or objects with ``name`` (or ``id``) and optionally
    ``source`` and ``sha256``. Raises ValueError for anything else.
    """
    items: Any = payload
    if isinstance(payload, Mapping):
        for key in ("adapters", "data", "items"):
            if isinstance(payload.get(key), list):
                items = payload[key]
                break
        else:
            raise ValueError("expected a list of adapters")
    if not isinstance(items, list):
        raise ValueError("expected a list of adapters")
    out: list[Loaded] = []
    for item in items:
        if isinstance(item, str):
            out.append(Loaded(item))
        elif isinstance(item, Mapping) and isinstance(item.get("name") or item.get("id"), str):
            sha = item.get("sha256")
            out.append(Loaded(
                name=str(item.get("name") or item.get("id")),
                source=item.get("source") if isinstance(item.get("source"), str) else None,
                sha256=str(sha).lower() if isinstance(sha, str) and sha else None,
                path=item.get("path") if isinstance(item.get("path"), str) else None,
            ))
        else:
            raise ValueError(f"unexpected adapter entry {item!r}")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class PodView:
    """A pod as one reconcile saw it: its info and what its sidecar said.

    ``loaded`` is None when the sidecar could not be asked (``error`` says why,
    ``error_kind`` classifies it).
    """

    pod: PodInfo
    loaded: tuple[Loaded, ...] | None = None
    error: str | None = None
    error_kind: FailureKind = "unreachable"

    @property
    def name(self) -> str:
        return self.pod.name

    def holding(self, adapter: str) -> Loaded | None:
        for item in self.loaded or ():
            if item.name == adapter:
                return item
        return None


def pod_names(views: Sequence[PodView]) -> list[str]:
    return [v.name for v in views]
