"""Desired vs observed: what to load and unload, and the status to report.

Purely computational. :func:`plan` takes an adapter's spec and the pods as one
reconcile observed them (what each sidecar said it holds, or why it could not
be asked) and returns the sidecar calls that would converge them, and the
status that describes what was observed. The reconciler calls it once to
decide, applies the calls, observes again, and calls it again for the status
it writes: status is never assumed from what was asked for.

Phases::

    Pending    no Ready pod of the base model (matching podSelector) exists
    Loading    calls are in flight or still to make; nothing has failed
    Ready      every desired pod holds the adapter as specified
    Degraded   some desired pods hold it, others failed (unreachable, refused)
    Failed     no desired pod holds it and the attempts failed
    Unloading  the object is being deleted (see :func:`unloading_status`)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from brix.contract import MODEL_LABEL, LoraPhase
from lora_operator.model import (
    AdapterSpec,
    FailureKind,
    LabelSelector,
    Loaded,
    PodInfo,
    PodView,
)
from lora_operator.placement import Candidate, eligible, place

__all__ = ["Failure", "FailureKind", "Plan", "candidates", "is_current", "plan",
           "unloading_status"]


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a sidecar call for one pod did not succeed."""

    kind: FailureKind
    message: str


@dataclass(frozen=True, slots=True)
class Plan:
    """The calls to make and the status of what was observed."""

    desired: frozenset[str]
    load: tuple[PodInfo, ...]  # desired, answering, not holding it
    reload: tuple[PodInfo, ...]  # desired, holding another source/sha256: unload then load
    unload: tuple[PodInfo, ...]  # holding it, not desired
    status: dict[str, Any]

    @property
    def phase(self) -> LoraPhase:
        phase: LoraPhase = self.status["phase"]
        return phase

    @property
    def converged(self) -> bool:
        return not (self.load or self.reload or self.unload)


def is_current(adapter: AdapterSpec, held: Loaded) -> bool:
    """Does a loaded copy match the spec? What the sidecar does not say counts as matching.

    A sidecar that restarted no longer knows the source it loaded from; for a
    ``file://`` source the engine's path still tells.
    """
    if held.source is not None and held.source != adapter.source:
        return False
    if held.source is None and held.path and adapter.source.startswith("file://"):
        wanted = unquote(urlsplit(adapter.source).path).rstrip("/")
        if held.path.rstrip("/") != wanted:
            return False
    return not (adapter.sha256 and held.sha256 and held.sha256 != adapter.sha256)


def candidates(adapter: AdapterSpec, views: Sequence[PodView]) -> list[Candidate]:
    return [
        Candidate(
            name=v.pod.name,
            labels=v.pod.label_map,
            ready=v.pod.ready and v.pod.ip is not None,
            holds=(held := v.holding(adapter.name)) is not None and is_current(adapter, held),
            reachable=v.loaded is not None,
            adapters=len(v.loaded or ()),
        )
        for v in views
    ]


def plan(
    adapter: AdapterSpec,
    views: Sequence[PodView],
    *,
    failures: Mapping[str, Failure] | None = None,
    refused: str | None = None,
    previous: Mapping[str, Any] | None = None,
    now: str,
) -> Plan:
    """Decide the calls for ``adapter`` and describe what ``views`` show.

    ``failures``: the calls of this reconcile that failed, by pod name.
    ``refused``: a sidecar refused this source recently (its message); no new
    loads are attempted until the spec changes or the refusal expires.
    ``previous``: the status written last (keeps condition transition times).
    ``now``: the RFC 3339 time to stamp a condition that changes.
    """
    failures = failures or {}
    cands = candidates(adapter, views)
    desired = place(adapter, cands)
    load: list[PodInfo] = []
    reload: list[PodInfo] = []
    unload: list[PodInfo] = []
    fresh: list[PodView] = []
    for view in views:
        held = view.holding(adapter.name)
        if held is not None and is_current(adapter, held):
            fresh.append(view)
        if view.loaded is None:
            continue  # cannot act on a pod that did not answer
        if view.name in desired:
            if held is None and refused is None:
                load.append(view.pod)
            elif held is not None and not is_current(adapter, held) and refused is None:
                reload.append(view.pod)
        elif held is not None:
            unload.append(view.pod)

    of_model = [c for c in cands if c.labels.get(MODEL_LABEL) == adapter.base_model
                and adapter.pod_selector.matches(c.labels)]
    n_eligible = sum(1 for c in cands if eligible(adapter, c))
    ready = sorted(v.name for v in fresh if v.name in desired)
    want = adapter.replicas if adapter.replicas is not None else n_eligible
    phase, reason, message = _phase(
        adapter, desired=desired, ready=len(ready), want=want, n_pods=len(of_model),
        n_eligible=n_eligible, views=views, failures=failures, refused=refused,
        pending_calls=bool(load or reload),
    )
    status = {
        "phase": phase,
        "reason": reason,
        "message": message,
        "loadedPods": [{"name": v.name, "ip": v.pod.ip} for v in sorted(fresh, key=_by_name)],
        "readyReplicas": len(ready),
        "desiredReplicas": want,
        "ready": f"{len(ready)}/{want}",
        "observedGeneration": adapter.generation,
        "conditions": [_condition(
            "Ready", value=phase == "Ready", reason=reason, message=message,
            generation=adapter.generation, previous=previous, now=now)],
    }
    return Plan(desired, tuple(load), tuple(reload), tuple(unload), status)


def _by_name(view: PodView) -> str:
    return view.name


def _phase(
    adapter: AdapterSpec,
    *,
    desired: frozenset[str],
    ready: int,
    want: int,
    n_pods: int,
    n_eligible: int,
    views: Sequence[PodView],
    failures: Mapping[str, Failure],
    refused: str | None,
    pending_calls: bool,
) -> tuple[LoraPhase, str, str]:
    model = f"base model {adapter.base_model!r}"
    if adapter.pod_selector != LabelSelector():
        model += " matching podSelector"
    if n_pods == 0:
        return "Pending", "NoPods", f"no pod of {model} in namespace {adapter.namespace}"
    if n_eligible == 0 and adapter.replicas != 0:
        return "Pending", "NoReadyPods", f"no Ready pod of {model} ({n_pods} pods, none Ready)"
    if ready >= want:
        return "Ready", "Loaded", f"loaded on {ready} of {want} pods"

    refusals = sorted((p, f.message) for p, f in failures.items()
                      if f.kind == "refused" and p in desired)
    if refused is not None or refusals:
        text = refused if refused is not None else refusals[0][1]
        return ("Failed" if ready == 0 else "Degraded"), "SourceRefused", (
            f"the sidecar refused source {adapter.source}: {text}")

    problems: list[str] = []
    kinds: set[str] = set()
    for view in views:
        if view.name not in desired:
            continue
        failure = failures.get(view.name)
        if failure is not None:
            problems.append(f"{view.name}: {failure.message}")
            kinds.add(failure.kind)
        elif view.loaded is None and view.error:
            problems.append(f"{view.name}: {view.error}")
            kinds.add(view.error_kind)
    if problems:
        reason = "SidecarUnauthorized" if kinds == {"unauthorized"} else "SidecarUnreachable"
        return ("Failed" if ready == 0 else "Degraded"), reason, (
            f"loaded on {ready} of {want} pods; " + "; ".join(sorted(problems)))
    if n_eligible < want and not pending_calls:
        return "Degraded", "NotEnoughPods", (
            f"loaded on {ready} of {want} pods: only {n_eligible} Ready pods of {model}")
    return "Loading", "Loading", f"loading on {want - ready} of {want} pods"


def _condition(
    ctype: str,
    *,
    value: bool,
    reason: str,
    message: str,
    generation: int,
    previous: Mapping[str, Any] | None,
    now: str,
) -> dict[str, Any]:
    status = "True" if value else "False"
    since = now
    for old in (previous or {}).get("conditions") or []:
        if old.get("type") == ctype and old.get("status") == status:
            since = old.get("lastTransitionTime") or now
    return {"type": ctype, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": since, "observedGeneration": generation}


def unloading_status(
    adapter: AdapterSpec,
    *,
    holding: Sequence[PodView],
    problems: Mapping[str, str],
    previous: Mapping[str, Any] | None,
    now: str,
) -> dict[str, Any]:
    """The status while a deleted adapter is being unloaded from ``holding``."""
    left = sorted(v.name for v in holding)
    message = (f"unloading from {len(left)} pods" if left else "unloaded from every pod")
    if problems:
        message += "; " + "; ".join(f"{p}: {m}" for p, m in sorted(problems.items()))
    return {
        "phase": "Unloading",
        "reason": "Deleting",
        "message": message,
        "loadedPods": [{"name": v.name, "ip": v.pod.ip} for v in sorted(holding, key=_by_name)],
        "readyReplicas": 0,
        "desiredReplicas": 0,
        "ready": f"0/{len(left)}",
        "observedGeneration": adapter.generation,
        "conditions": [_condition(
            "Ready", value=False, reason="Deleting", message=message,
            generation=adapter.generation, previous=previous, now=now)],
    }
