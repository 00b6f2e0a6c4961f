"""A pod's status from what the kubelet observed of its containers. Purely computational.

``ContainerRecord`` is the kubelet's memory of one container; ``pod_status``
turns the records into the pod's ``status`` (phase, conditions,
containerStatuses) following the kubelet's rules, keeping each condition's
``lastTransitionTime`` while its status does not change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

JsonObj = dict[str, Any]
State = Literal["waiting", "running", "terminated"]

BACKOFF_INITIAL_SECONDS: Final = 1.0
"""First restart delay. The kubelet uses 10 s; a laptop's short-lived test pods want less."""
BACKOFF_MAX_SECONDS: Final = 60.0
"""Ceiling of the doubling restart delay (the kubelet's is 300 s)."""
BACKOFF_RESET_SECONDS: Final = 60.0
"""A container that ran this long before exiting restarts without accumulated delay."""


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ContainerRecord:
    """What the kubelet knows of one container."""

    name: str
    image: str = ""
    state: State = "waiting"
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    terminated_reason: str = ""
    terminated_message: str = ""
    last_terminated: JsonObj | None = None
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    pid: int | None = None

    def terminated_state(self) -> JsonObj:
        out: JsonObj = {"exitCode": self.exit_code if self.exit_code is not None else -1,
                        "reason": self.terminated_reason or
                        ("Completed" if self.exit_code == 0 else "Error"),
                        "startedAt": self.started_at, "finishedAt": self.finished_at}
        if self.signal is not None:
            out["signal"] = self.signal
        if self.terminated_message:
            out["message"] = self.terminated_message
        if self.pid is not None:
            out["containerID"] = f"localkube://{self.pid}"
        return out


def container_status(rec: ContainerRecord) -> JsonObj:
    if rec.state == "running":
        state: JsonObj = {"running": {"startedAt": rec.started_at}}
    elif rec.state == "terminated":
        state = {"terminated": rec.terminated_state()}
    else:
        waiting: JsonObj = {"reason": rec.waiting_reason}
        if rec.waiting_message:
            waiting["message"] = rec.waiting_message
        state = {"waiting": waiting}
    out: JsonObj = {
        "name": rec.name, "image": rec.image, "imageID": "", "state": state,
        "lastState": {"terminated": rec.last_terminated} if rec.last_terminated else {},
        "ready": rec.ready, "started": rec.started, "restartCount": rec.restart_count,
    }
    if rec.pid is not None and rec.state == "running":
        out["containerID"] = f"localkube://{rec.pid}"
    return out


def pod_phase(records: Sequence[ContainerRecord], restart_policy: str) -> str:
    """The kubelet's getPhase for regular containers."""
    waiting = running = stopped = succeeded = 0
    for rec in records:
        if rec.state == "running":
            running += 1
        elif rec.state == "terminated":
            stopped += 1
            if rec.exit_code == 0:
                succeeded += 1
        elif rec.last_terminated is not None:
            stopped += 1
        else:
            waiting += 1
    if waiting > 0 or not records:
        return "Pending"
    if running > 0:
        return "Running"
    if restart_policy == "Always":
        return "Running"
    if stopped == succeeded:
        return "Succeeded"
    if restart_policy == "Never":
        return "Failed"
    return "Running"


def should_restart(restart_policy: str, exit_code: int) -> bool:
    if restart_policy == "Always":
        return True
    if restart_policy == "OnFailure":
        return exit_code != 0
    return False


def restart_delay(consecutive_restarts: int) -> float:
    """Seconds before the n-th quick restart (1 s, 2 s, 4 s, ... capped)."""
    return float(min(BACKOFF_INITIAL_SECONDS * 2 ** max(0, consecutive_restarts - 1),
                     BACKOFF_MAX_SECONDS))


def _condition(kind: str, ok: bool, previous: Sequence[JsonObj], now: str,
               reason: str = "") -> JsonObj:
    status = "True" if ok else "False"
    since = now
    for cond in previous:
        if cond.get("type") == kind and cond.get("status") == status:
            since = str(cond.get("lastTransitionTime") or now)
    out: JsonObj = {"type": kind, "status": status, "lastProbeTime": None,
                    "lastTransitionTime": since}
    if reason and not ok:
        out["reason"] = reason
    return out


def init_outcome(init_records: Sequence[ContainerRecord], restart_policy: str) -> str:
    """"done", "running" or "failed" (a failed init container that will not be retried)."""
    for rec in init_records:
        if rec.state == "terminated" and rec.exit_code == 0:
            continue
        if rec.state == "terminated" and restart_policy == "Never":
            return "failed"
        return "running"
    return "done"


def pod_conditions(records: Sequence[ContainerRecord], phase: str,
                   previous: Sequence[JsonObj], now: str, *, initialized: bool = True,
                   ) -> list[JsonObj]:
    terminal = phase in ("Succeeded", "Failed")
    all_ready = (bool(records) and all(r.ready for r in records) and not terminal
                 and initialized)
    reason = "PodCompleted" if terminal else "ContainersNotReady"
    return [
        _condition("PodReadyToStartContainers", True, previous, now),
        _condition("Initialized", initialized, previous, now, "ContainersNotInitialized"),
        _condition("Ready", all_ready, previous, now, reason),
        _condition("ContainersReady", all_ready, previous, now, reason),
        _condition("PodScheduled", True, previous, now),
    ]


def pod_status(records: Sequence[ContainerRecord], *, restart_policy: str, pod_ip: str,
               host_ip: str, start_time: str, previous: JsonObj | None,
               init_records: Sequence[ContainerRecord] = (),
               now: str | None = None) -> JsonObj:
    """The whole ``status`` of a pod.

    Until every init container has completed the pod is Pending (Failed when one
    failed under ``restartPolicy: Never``) and not Initialized.
    """
    now = now or now_rfc3339()
    outcome = init_outcome(init_records, restart_policy)
    if outcome == "done":
        phase = pod_phase(records, restart_policy)
    else:
        phase = "Failed" if outcome == "failed" else "Pending"
    prev_conditions = (previous or {}).get("conditions") or []
    status: JsonObj = {
        "phase": phase,
        "conditions": pod_conditions(records, phase, prev_conditions, now,
                                     initialized=outcome == "done"),
        "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
        "startTime": start_time,
        "qosClass": "BestEffort",
        "containerStatuses": [container_status(r) for r in records],
    }
    if init_records:
        status["initContainerStatuses"] = [container_status(r) for r in init_records]
    return status


def is_pod_ready(pod: JsonObj) -> bool:
    """Whether a pod object's Ready condition is True (and it is not being deleted)."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False
