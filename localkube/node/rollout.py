"""Deployment rollout planning and status. Purely computational.

localkube's Deployment controller goes straight from a Deployment to its
Pods: ReplicaSets are not among localkube's kinds. The role a ReplicaSet plays
in a cluster is played by the ``pod-template-hash`` label: pods whose hash is
the current template's are the "new replica set", all others are "old". The
arithmetic is the deployment controller's own (maxSurge rounded up,
maxUnavailable rounded down, 25 % each by default; Recreate deletes every old
pod before creating new ones), decided here from the observed pods and applied
by ``localkube.node.deployments``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from localkube.node.podstatus import is_pod_ready

JsonObj = dict[str, Any]

HASH_LABEL: Final = "pod-template-hash"
_SAFE_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: JsonObj, collision_count: int = 0) -> str:
    """A short, stable name-safe hash of a pod template (as the label value and name part)."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(f"{canonical}|{collision_count}".encode()).digest()
    number = int.from_bytes(digest[:5], "big")
    out: list[str] = []
    while number and len(out) < 10:
        number, rest = divmod(number, len(_SAFE_ALPHABET))
        out.append(_SAFE_ALPHABET[rest])
    return "".join(out) or _SAFE_ALPHABET[0]


def scaled_value(value: Any, total: int, *, round_up: bool, default: str = "25%") -> int:
    """An int-or-percent field (maxSurge, maxUnavailable) as a number of pods."""
    if value is None:
        value = default
    if isinstance(value, int):
        return max(0, value)
    text = str(value).strip()
    if text.endswith("%"):
        share = float(text[:-1]) * total / 100.0
        return max(0, math.ceil(share) if round_up else math.floor(share))
    return max(0, int(text))


def rolling_limits(deployment: JsonObj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) in pods; never both zero."""
    spec = deployment.get("spec") or {}
    desired = desired_replicas(deployment)
    ru = ((spec.get("strategy") or {}).get("rollingUpdate")) or {}
    surge = scaled_value(ru.get("maxSurge"), desired, round_up=True)
    unavailable = scaled_value(ru.get("maxUnavailable"), desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def desired_replicas(deployment: JsonObj) -> int:
    replicas = (deployment.get("spec") or {}).get("replicas")
    return 1 if replicas is None else max(0, int(replicas))


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def ready_since(pod: JsonObj) -> float | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") == "True":
            return _parse_time(cond.get("lastTransitionTime")) or 0.0
    return None


def is_available(pod: JsonObj, min_ready_seconds: int, now: float) -> bool:
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = ready_since(pod)
    return since is not None and since + min_ready_seconds <= now


def is_active(pod: JsonObj) -> bool:
    """Counted by the controller: not being deleted and not finished."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def hash_of(pod: JsonObj) -> str | None:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    value = labels.get(HASH_LABEL)
    return str(value) if value is not None else None


_PHASE_RANK: Final = {"Pending": 0, "Unknown": 1, "Running": 2}


def deletion_order(pods: Sequence[JsonObj]) -> list[JsonObj]:
    """Pods in the order a controller deletes them (the least useful first).

    Pending before Running, not ready before ready, ready for less time before
    longer, more restarts before fewer, newer before older.
    """
    def restarts(p: JsonObj) -> int:
        return sum(int(c.get("restartCount") or 0)
                   for c in (p.get("status") or {}).get("containerStatuses") or [])

    def created(p: JsonObj) -> float:
        return _parse_time((p.get("metadata") or {}).get("creationTimestamp")) or 0.0

    out = sorted(pods, key=lambda p: (p.get("metadata") or {}).get("name", ""))
    out.sort(key=created, reverse=True)
    out.sort(key=restarts, reverse=True)
    out.sort(key=lambda p: ready_since(p) or 0.0, reverse=True)
    out.sort(key=is_pod_ready)
    out.sort(key=lambda p: _PHASE_RANK.get(str((p.get("status") or {}).get("phase")), 0))
    return out


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What to do now: create pods from the current template, delete these pods."""

    template_hash: str
    create: int = 0
    delete: tuple[str, ...] = ()
    requeue_after: float | None = None
    notes: tuple[str, ...] = field(default=())


def plan(deployment: JsonObj, pods: Sequence[JsonObj], *, now: float) -> Plan:
    """The next step of converging ``pods`` (those the Deployment controls) onto its spec."""
    spec = deployment.get("spec") or {}
    h = template_hash(spec.get("template") or {},
                      int((deployment.get("status") or {}).get("collisionCount") or 0))
    desired = desired_replicas(deployment)
    min_ready = int(spec.get("minReadySeconds") or 0)
    finished = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")
                and not is_active(p)]
    active = [p for p in pods if is_active(p)]
    new = [p for p in active if hash_of(p) == h]
    old = [p for p in active if hash_of(p) != h]
    delete: list[JsonObj] = list(finished)
    requeue = _availability_requeue(active, min_ready, now)

    def result(create: int) -> Plan:
        return Plan(template_hash=h, create=create,
                    delete=tuple(_name(p) for p in delete), requeue_after=requeue)

    if spec.get("paused"):
        return result(0)
    if len(new) > desired:
        extra = deletion_order(new)[: len(new) - desired]
        delete.extend(extra)
        new = [p for p in new if p not in extra]
    strategy = str((spec.get("strategy") or {}).get("type") or "RollingUpdate")
    if strategy == "Recreate":
        if old:
            delete.extend(old)
            return result(0)
        terminating_old = [p for p in pods if (p.get("metadata") or {}).get("deletionTimestamp")
                           and hash_of(p) != h]
        if terminating_old:
            return result(0)
        return result(max(0, desired - len(new)))

    surge, max_unavailable = rolling_limits(deployment)
    create = 0
    if len(new) < desired:
        room = desired + surge - (len(new) + len(old))
        create = max(0, min(desired - len(new), room))
    if old:
        min_available = desired - max_unavailable
        new_available = sum(1 for p in new if is_available(p, min_ready, now))
        new_unavailable = len(new) + create - new_available
        max_scaled_down = len(new) + create + len(old) - min_available - new_unavailable
        if max_scaled_down > 0:
            unhealthy = [p for p in deletion_order(old) if not is_available(p, min_ready, now)]
            cleanup = unhealthy[:max_scaled_down]
            delete.extend(cleanup)
            left = [p for p in old if p not in cleanup]
            available = new_available + sum(1 for p in left
                                            if is_available(p, min_ready, now))
            scale_down = min(available - min_available, max_scaled_down - len(cleanup))
            if scale_down > 0:
                delete.extend(deletion_order(left)[:scale_down])
    return result(create)


def _availability_requeue(pods: Sequence[JsonObj], min_ready: int, now: float) -> float | None:
    """When a ready pod becomes available (minReadySeconds), to re-check then."""
    if min_ready <= 0:
        return None
    waits = [since + min_ready - now for p in pods
             if is_pod_ready(p) and (since := ready_since(p)) is not None
             and since + min_ready > now]
    return min(waits) + 0.1 if waits else None


def _name(pod: JsonObj) -> str:
    return str((pod.get("metadata") or {}).get("name", ""))


def _condition(kind: str, ok: bool, reason: str, message: str, *,
               previous: Sequence[JsonObj], now: str) -> JsonObj:
    status = "True" if ok else "False"
    since = now
    updated = now
    for cond in previous:
        if cond.get("type") == kind and cond.get("status") == status:
            since = str(cond.get("lastTransitionTime") or now)
            if cond.get("reason") == reason:
                updated = str(cond.get("lastUpdateTime") or now)
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "lastUpdateTime": updated, "lastTransitionTime": since}


def deployment_status(deployment: JsonObj, pods: Sequence[JsonObj], *, now: float,
                      now_text: str) -> JsonObj:
    """The Deployment's ``status`` from the pods it controls."""
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    previous = (deployment.get("status") or {}).get("conditions") or []
    h = template_hash(spec.get("template") or {},
                      int((deployment.get("status") or {}).get("collisionCount") or 0))
    min_ready = int(spec.get("minReadySeconds") or 0)
    active = [p for p in pods if is_active(p)]
    desired = desired_replicas(deployment)
    updated = sum(1 for p in active if hash_of(p) == h)
    ready = sum(1 for p in active if is_pod_ready(p))
    available = sum(1 for p in active if is_available(p, min_ready, now))
    _, max_unavailable = rolling_limits(deployment)
    if str((spec.get("strategy") or {}).get("type") or "") == "Recreate":
        max_unavailable = desired
    name = f"{meta.get('name', '')}-{h}"
    complete = updated == desired and len(active) == desired and available >= desired
    has_min = available >= desired - max_unavailable
    status: JsonObj = {
        "observedGeneration": int(meta.get("generation") or 0),
        "replicas": len(active),
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "unavailableReplicas": max(0, len(active) - available),
        "conditions": [
            _condition("Available", has_min,
                       "MinimumReplicasAvailable" if has_min else "MinimumReplicasUnavailable",
                       "Deployment has minimum availability." if has_min
                       else "Deployment does not have minimum availability.",
                       previous=previous, now=now_text),
            _condition("Progressing", True,
                       "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
                       f'ReplicaSet "{name}" has successfully progressed.' if complete
                       else f'ReplicaSet "{name}" is progressing.',
                       previous=previous, now=now_text),
        ],
    }
    return status
