"""Pod phase, container statuses and restart decisions from the kubelet's records."""

from __future__ import annotations

import itertools

import pytest

from localkube.node.podstatus import (
    BACKOFF_MAX_SECONDS,
    ContainerRecord,
    container_status,
    pod_phase,
    pod_status,
    restart_delay,
    should_restart,
)


def rec(state: str, exit_code: int | None = None, restarted: bool = False) -> ContainerRecord:
    r = ContainerRecord(name="c", state=state)  # type: ignore[arg-type]
    r.exit_code = exit_code
    if restarted:
        r.last_terminated = {"exitCode": 1}
    return r


@pytest.mark.parametrize(("records", "policy", "phase"), [
    ([], "Always", "Pending"),
    ([rec("waiting")], "Always", "Pending"),
    ([rec("running"), rec("waiting")], "Always", "Pending"),
    ([rec("running")], "Never", "Running"),
    ([rec("waiting", restarted=True)], "Always", "Running"),   # crash-looping
    ([rec("terminated", 0)], "Never", "Succeeded"),
    ([rec("terminated", 0)], "OnFailure", "Succeeded"),
    ([rec("terminated", 0)], "Always", "Running"),
    ([rec("terminated", 2)], "Never", "Failed"),
    ([rec("terminated", 0), rec("terminated", 1)], "Never", "Failed"),
    ([rec("terminated", 1)], "OnFailure", "Running"),
    ([rec("running"), rec("terminated", 1)], "Never", "Running"),
])
def test_phase(records: list[ContainerRecord], policy: str, phase: str) -> None:
    assert pod_phase(records, policy) == phase


@pytest.mark.parametrize(("policy", "code", "restart"), [
    ("Always", 0, True), ("Always", 1, True), ("OnFailure", 0, False),
    ("OnFailure", 137, True), ("Never", 1, False), ("Never", 0, False),
])
def test_restart_policy(policy: str, code: int, restart: bool) -> None:
    assert should_restart(policy, code) is restart


def test_backoff_doubles_up_to_a_ceiling() -> None:
    delays = [restart_delay(n) for n in range(1, 12)]
    assert delays[:4] == [1.0, 2.0, 4.0, 8.0]
    assert all(a <= b for a, b in itertools.pairwise(delays))
    assert delays[-1] == BACKOFF_MAX_SECONDS


def test_container_status_states() -> None:
    running = ContainerRecord(name="web", image="img", state="running", started_at="t",
                              pid=42, ready=True, started=True, restart_count=2)
    out = container_status(running)
    assert out["state"] == {"running": {"startedAt": "t"}}
    assert out["ready"] is True
    assert out["restartCount"] == 2
    assert out["containerID"] == "localkube://42"

    dead = ContainerRecord(name="web", state="terminated", exit_code=137, signal=9,
                           started_at="a", finished_at="b")
    term = container_status(dead)["state"]["terminated"]
    assert term["exitCode"] == 137
    assert term["signal"] == 9
    assert term["reason"] == "Error"

    looping = ContainerRecord(name="web", state="waiting", waiting_reason="CrashLoopBackOff",
                              last_terminated=dead.terminated_state())
    out = container_status(looping)
    assert out["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert out["lastState"]["terminated"]["exitCode"] == 137


def test_finished_pods_are_not_ready_with_reason_pod_completed() -> None:
    done = ContainerRecord(name="job", state="terminated", exit_code=0, ready=True)
    status = pod_status([done], restart_policy="Never", pod_ip="127.0.0.10",
                        host_ip="127.0.0.1", start_time="t", previous=None, now="n")
    assert status["phase"] == "Succeeded"
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"
    assert ready["reason"] == "PodCompleted"
    assert status["podIP"] == "127.0.0.10"
    assert status["podIPs"] == [{"ip": "127.0.0.10"}]
    assert status["hostIP"] == "127.0.0.1"


def _init(state: str, code: int | None = None) -> ContainerRecord:
    return ContainerRecord(name="init", state=state, exit_code=code)  # type: ignore[arg-type]


@pytest.mark.parametrize(("init", "policy", "phase", "initialized"), [
    ([_init("running")], "Always", "Pending", "False"),
    ([_init("terminated", 1)], "Always", "Pending", "False"),     # will be retried
    ([_init("terminated", 1)], "Never", "Failed", "False"),
    ([_init("terminated", 0), _init("waiting")], "Always", "Pending", "False"),
    ([_init("terminated", 0)], "Always", "Running", "True"),
])
def test_init_containers_gate_the_pod(init: list[ContainerRecord], policy: str, phase: str,
                                      initialized: str) -> None:
    main = ContainerRecord(name="main", state="running", ready=True, started=True)
    status = pod_status([main], restart_policy=policy, pod_ip="127.0.0.10",
                        host_ip="127.0.0.1", start_time="t", previous=None, now="n",
                        init_records=init)
    assert status["phase"] == phase
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["Initialized"] == initialized
    if initialized == "False":
        assert conditions["Ready"] == "False"
    assert [s["name"] for s in status["initContainerStatuses"]] == ["init"] * len(init)
