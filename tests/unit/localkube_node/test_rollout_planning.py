"""Deployment rollout planning: scaling, rolling updates, Recreate, and status."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from localkube.node.rollout import (
    HASH_LABEL,
    deletion_order,
    deployment_status,
    plan,
    rolling_limits,
    scaled_value,
    template_hash,
)

NOW = 1_800_000_000.0
_names = itertools.count()


def deployment(replicas: int = 3, image: str = "v1", **strategy: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}},
                     "spec": {"containers": [{"name": "web", "image": image}]}},
    }
    if strategy:
        spec["strategy"] = strategy
    return {"metadata": {"name": "web", "namespace": "default", "uid": "d1", "generation": 4},
            "spec": spec}


def pod(dep: dict[str, Any], *, ready: bool = True, current: bool = True,
        phase: str = "Running", deleting: bool = False, ready_for: float = 100.0) -> dict[str, Any]:
    h = template_hash(dep["spec"]["template"]) if current else "oldhash"
    meta: dict[str, Any] = {"name": f"web-{h}-{next(_names)}", "labels": {"app": "web",
                                                                          HASH_LABEL: h},
                            "creationTimestamp": "2026-01-01T00:00:00Z"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    since = "2027-01-15T08:00:00Z" if ready_for < 50 else "2026-01-01T00:00:00Z"
    cond = {"type": "Ready", "status": "True" if ready else "False",
            "lastTransitionTime": since}
    return {"metadata": meta, "status": {"phase": phase, "conditions": [cond]}}


def test_template_hash_is_stable_and_changes_with_the_template() -> None:
    a = deployment()["spec"]["template"]
    assert template_hash(a) == template_hash(dict(a))
    assert template_hash(a) != template_hash(deployment(image="v2")["spec"]["template"])
    assert template_hash(a).isalnum()
    assert len(template_hash(a)) <= 10


@pytest.mark.parametrize(("value", "total", "up", "expected"), [
    (None, 4, True, 1), (None, 4, False, 1), ("25%", 3, True, 1), ("25%", 3, False, 0),
    ("50%", 5, True, 3), ("50%", 5, False, 2), (2, 10, True, 2), ("3", 10, False, 3),
])
def test_int_or_percent(value: Any, total: int, up: bool, expected: int) -> None:
    assert scaled_value(value, total, round_up=up) == expected


def test_both_limits_zero_means_one_unavailable() -> None:
    dep = deployment(type="RollingUpdate", rollingUpdate={"maxSurge": 0, "maxUnavailable": 0})
    assert rolling_limits(dep) == (0, 1)


def test_scale_up_from_nothing_creates_all() -> None:
    dep = deployment(replicas=3)
    step = plan(dep, [], now=NOW)
    assert step.create == 3
    assert step.delete == ()


def test_scale_down_removes_the_least_useful_pods_first() -> None:
    dep = deployment(replicas=1)
    keep = pod(dep, ready=True)
    unready = pod(dep, ready=False)
    pending = pod(dep, ready=False, phase="Pending")
    step = plan(dep, [keep, unready, pending], now=NOW)
    assert step.create == 0
    assert set(step.delete) == {unready["metadata"]["name"], pending["metadata"]["name"]}


def test_terminating_and_finished_pods_are_not_counted() -> None:
    dep = deployment(replicas=2)
    going = pod(dep, deleting=True)
    done = pod(dep, phase="Failed", ready=False)
    step = plan(dep, [going, done, pod(dep)], now=NOW)
    assert step.create == 1
    assert step.delete == (done["metadata"]["name"],)   # finished pods are cleaned up


def test_rolling_update_first_step_surges_and_keeps_availability() -> None:
    old_dep = deployment(replicas=4)
    olds = [pod(old_dep) for _ in range(4)]
    new_dep = deployment(replicas=4, image="v2")
    for p in olds:
        p["metadata"]["labels"][HASH_LABEL] = template_hash(old_dep["spec"]["template"])
    step = plan(new_dep, olds, now=NOW)
    # maxSurge 25% of 4 = 1, maxUnavailable 25% of 4 = 1.
    assert step.create == 1
    assert len(step.delete) == 1


@pytest.mark.parametrize(("surge", "unavailable"), [(1, 0), (0, 1), (2, 2), ("25%", "25%")])
def test_rolling_update_converges_within_its_limits(surge: Any, unavailable: Any) -> None:
    """Apply each plan; pods created in one round become ready in the next."""
    old_dep = deployment(replicas=5)
    new_dep = deployment(replicas=5, image="v2", type="RollingUpdate",
                         rollingUpdate={"maxSurge": surge, "maxUnavailable": unavailable})
    max_surge, max_unavailable = rolling_limits(new_dep)
    pods = [pod(old_dep) for _ in range(5)]
    for _ in range(30):  # enough rounds for any of these limits; extra rounds are no-ops
        step = plan(new_dep, pods, now=NOW)
        pods = [p for p in pods if p["metadata"]["name"] not in step.delete]
        ready_now = sum(1 for p in pods if p["status"]["conditions"][0]["status"] == "True")
        assert ready_now >= 5 - max_unavailable
        for p in pods:  # last round's new pods are ready now
            p["status"]["conditions"][0]["status"] = "True"
        pods += [pod(new_dep, ready=False) for _ in range(step.create)]
        assert len(pods) <= 5 + max_surge
    assert plan(new_dep, pods, now=NOW).create == 0
    current = template_hash(new_dep["spec"]["template"])
    assert len(pods) == 5
    assert all(p["metadata"]["labels"][HASH_LABEL] == current for p in pods)


def test_rolling_update_waits_for_new_pods_to_be_ready() -> None:
    old_dep = deployment(replicas=2)
    new_dep = deployment(replicas=2, image="v2", type="RollingUpdate",
                         rollingUpdate={"maxSurge": 1, "maxUnavailable": 0})
    olds = [pod(old_dep) for _ in range(2)]
    new_unready = pod(new_dep, ready=False)
    step = plan(new_dep, [*olds, new_unready], now=NOW)
    assert step.create == 0
    assert step.delete == ()


def test_recreate_deletes_old_pods_before_creating_new_ones() -> None:
    old_dep = deployment(replicas=2)
    new_dep = deployment(replicas=2, image="v2", type="Recreate")
    olds = [pod(old_dep) for _ in range(2)]
    first = plan(new_dep, olds, now=NOW)
    assert first.create == 0
    assert len(first.delete) == 2
    for p in olds:
        p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert plan(new_dep, olds, now=NOW).create == 0     # still terminating
    assert plan(new_dep, [], now=NOW).create == 2


def test_paused_deployments_are_left_alone() -> None:
    dep = deployment(replicas=3)
    dep["spec"]["paused"] = True
    assert plan(dep, [], now=NOW).create == 0


def test_deletion_order_prefers_pending_then_unready_then_newest_ready() -> None:
    dep = deployment()
    long_ready = pod(dep, ready=True, ready_for=1000)
    short_ready = pod(dep, ready=True, ready_for=10)
    unready = pod(dep, ready=False)
    pending = pod(dep, ready=False, phase="Pending")
    order = deletion_order([long_ready, short_ready, unready, pending])
    assert [p["metadata"]["name"] for p in order] == [
        pending["metadata"]["name"], unready["metadata"]["name"],
        short_ready["metadata"]["name"], long_ready["metadata"]["name"]]


def test_status_counts_and_conditions() -> None:
    old_dep = deployment(replicas=3)
    dep = deployment(replicas=3, image="v2")
    pods = [pod(dep), pod(dep, ready=False), pod(old_dep, current=False),
            pod(dep, deleting=True)]
    status = deployment_status(dep, pods, now=NOW, now_text="2026-01-01T00:00:00Z")
    assert status["observedGeneration"] == 4
    assert status["replicas"] == 3
    assert status["updatedReplicas"] == 2
    assert status["readyReplicas"] == 2
    assert status["availableReplicas"] == 2
    conditions = {c["type"]: c for c in status["conditions"]}
    # maxUnavailable is 25% of 3 rounded down = 0, so 2 of 3 is below the minimum.
    assert conditions["Available"]["status"] == "False"
    assert conditions["Available"]["reason"] == "MinimumReplicasUnavailable"
    assert conditions["Progressing"]["reason"] == "ReplicaSetUpdated"

    done = deployment_status(dep, [pod(dep) for _ in range(3)], now=NOW, now_text="later")
    done_conditions = {c["type"]: c for c in done["conditions"]}
    assert done_conditions["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert done_conditions["Available"]["status"] == "True"


def test_min_ready_seconds_delays_availability_and_asks_for_a_recheck() -> None:
    dep = deployment(replicas=1)
    dep["spec"]["minReadySeconds"] = 30
    fresh = pod(dep, ready=True)
    fresh["status"]["conditions"][0]["lastTransitionTime"] = "2027-01-15T08:00:00Z"
    now = 1_800_000_000.0 + 10  # 2027-01-15T08:00:10Z
    status = deployment_status(dep, [fresh], now=now, now_text="x")
    assert status["readyReplicas"] == 1
    assert status["availableReplicas"] == 0
    step = plan(dep, [fresh], now=now)
    assert step.requeue_after is not None
    assert 19 < step.requeue_after < 21
