"""The store's semantics: resourceVersions, generation, conflicts, deletion, watch.

Every test is async (the store runs on an event loop; watch queues need one).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from localkube.api.errors import ApiError
from localkube.api.persistence import unpersisted_base
from localkube.api.resources import Registry, ResourceType
from localkube.api.selectors import FieldSelector, LabelSelector
from localkube.api.store import Store

REG = Registry()


def rt(group: str, version: str, plural: str) -> ResourceType:
    found = REG.lookup(group, version, plural)
    assert found is not None
    return found


CM = rt("", "v1", "configmaps")
DEPLOY = rt("apps", "v1", "deployments")
PODS = rt("", "v1", "pods")
NS = rt("", "v1", "namespaces")


def cm(name: str, ns: str = "default", **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, **extra}, "data": {"k": "v"}}


def drain(w: Any) -> list[tuple[str, str]]:
    out = []
    while not w.queue.empty():
        item = w.queue.get_nowait()
        if item is None:
            break
        etype, event = item
        out.append((etype, event.obj["metadata"]["name"]))
    return out


@pytest.fixture
def store() -> Store:
    return Store(history=5)


async def test_resource_versions_are_global_and_monotonic(store: Store) -> None:
    a = store.create(CM, cm("a"))
    b = store.create(DEPLOY, {"metadata": {"name": "d", "namespace": "default"},
                              "spec": {"replicas": 1}})
    c = store.update(CM, {**a, "data": {"k": "w"}})
    rvs = [int(o["metadata"]["resourceVersion"]) for o in (a, b, c)]
    assert rvs == sorted(rvs)
    assert len(set(rvs)) == 3
    assert store.rv == rvs[-1]
    assert a["metadata"]["uid"] != b["metadata"]["uid"]
    assert c["metadata"]["uid"] == a["metadata"]["uid"]
    assert c["metadata"]["creationTimestamp"] == a["metadata"]["creationTimestamp"]


async def test_creating_twice_is_already_exists(store: Store) -> None:
    store.create(CM, cm("a"))
    with pytest.raises(ApiError) as info:
        store.create(CM, cm("a"))
    assert (info.value.code, info.value.reason) == (409, "AlreadyExists")


async def test_stale_resource_version_is_a_conflict(store: Store) -> None:
    a = store.create(CM, cm("a"))
    store.update(CM, {**a, "data": {"k": "1"}})
    with pytest.raises(ApiError) as info:
        store.update(CM, {**a, "data": {"k": "2"}})
    assert (info.value.code, info.value.reason) == (409, "Conflict")
    assert store.get(CM, "default", "a")["data"] == {"k": "1"}


async def test_generation_moves_with_spec_not_metadata_or_status(store: Store) -> None:
    d = store.create(DEPLOY, {"metadata": {"name": "d", "namespace": "default"},
                              "spec": {"replicas": 1}})
    assert d["metadata"]["generation"] == 1
    d = store.update(DEPLOY, {**d, "metadata": {**d["metadata"], "labels": {"a": "b"}}})
    assert d["metadata"]["generation"] == 1
    d = store.update(DEPLOY, {**d, "status": {"replicas": 1}}, subresource="status")
    assert d["metadata"]["generation"] == 1
    assert d["status"] == {"replicas": 1}
    d = store.update(DEPLOY, {**d, "spec": {"replicas": 3}, "status": {"replicas": 9}})
    assert d["metadata"]["generation"] == 2
    assert d["status"] == {"replicas": 1}  # the main resource cannot write status


async def test_an_update_that_changes_nothing_commits_nothing(store: Store) -> None:
    a = store.create(CM, cm("a"))
    rv = store.rv
    assert store.update(CM, dict(a)) is a
    assert store.rv == rv


async def test_finalizers_hold_deletion_until_removed(store: Store) -> None:
    a = store.create(CM, cm("a", finalizers=["x/y"]))
    obj, gone = store.delete(CM, "default", "a")
    assert not gone
    assert obj["metadata"]["deletionTimestamp"]
    store.update(CM, {**obj, "metadata": {**obj["metadata"], "finalizers": []}})
    assert store.find(CM, "default", "a") is None
    assert a["metadata"]["uid"] not in str(store.snapshot())


def owned(name: str, owner: dict[str, Any]) -> dict[str, Any]:
    ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": owner["metadata"]["name"],
           "uid": owner["metadata"]["uid"], "controller": True}
    return {"metadata": {"name": name, "namespace": "default", "ownerReferences": [ref]},
            "spec": {"containers": [{"name": "c"}]}}


async def test_dependents_are_collected_in_the_background(store: Store) -> None:
    d = store.create(DEPLOY, {"metadata": {"name": "d", "namespace": "default"}, "spec": {}})
    store.create(PODS, owned("p1", d))
    store.create(PODS, owned("p2", d))
    store.create(PODS, {"metadata": {"name": "free", "namespace": "default"}, "spec": {}})
    store.delete(DEPLOY, "default", "d")
    assert [p["metadata"]["name"] for p in store.select(PODS, None)] == ["free"]


async def test_orphan_propagation_keeps_dependents_without_owner(store: Store) -> None:
    d = store.create(DEPLOY, {"metadata": {"name": "d", "namespace": "default"}, "spec": {}})
    store.create(PODS, owned("p1", d))
    store.delete(DEPLOY, "default", "d", propagation="Orphan")
    (pod,) = store.select(PODS, None)
    assert "ownerReferences" not in pod["metadata"]


async def test_foreground_deletion_waits_for_dependents(store: Store) -> None:
    d = store.create(DEPLOY, {"metadata": {"name": "d", "namespace": "default"}, "spec": {}})
    p = store.create(PODS, owned("p1", d))
    store.update(PODS, {**p, "metadata": {**p["metadata"], "finalizers": ["hold"]}})
    owner, gone = store.delete(DEPLOY, "default", "d", propagation="Foreground")
    assert not gone
    assert "foregroundDeletion" in owner["metadata"]["finalizers"]
    pod = store.get(PODS, "default", "p1")
    assert pod["metadata"]["deletionTimestamp"]
    store.update(PODS, {**pod, "metadata": {**pod["metadata"], "finalizers": []}})
    assert store.find(DEPLOY, "default", "d") is None


async def test_pods_on_a_node_get_a_grace_period(store: Store) -> None:
    store.create(PODS, {"metadata": {"name": "p", "namespace": "default"},
                        "spec": {"nodeName": "n", "terminationGracePeriodSeconds": 5}})
    pod, gone = store.delete(PODS, "default", "p")
    assert not gone
    assert pod["metadata"]["deletionGracePeriodSeconds"] == 5
    _, gone = store.delete(PODS, "default", "p", grace_seconds=0)
    assert gone


async def test_namespace_deletion_deletes_its_objects(store: Store) -> None:
    store.create(NS, {"metadata": {"name": "team"}})
    store.create(CM, cm("a", ns="team"))
    store.create(CM, cm("b", ns="team", finalizers=["hold"]))
    store.create(CM, cm("c", ns="other"))
    ns, _ = store.delete(NS, None, "team")
    assert ns["status"]["phase"] == "Terminating"
    assert sorted(o["metadata"]["name"] for o in store.select(CM, None)) == ["b", "c"]
    b = store.get(CM, "team", "b")
    store.update(CM, {**b, "metadata": {**b["metadata"], "finalizers": []}})
    assert store.find(NS, None, "team") is None


async def test_watch_from_a_resource_version_replays_what_followed(store: Store) -> None:
    a = store.create(CM, cm("a"))
    store.create(CM, cm("b"))
    store.update(CM, {**a, "data": {}})
    w = store.watch(CM, "default", labels=LabelSelector(), fields=FieldSelector(),
                    since=int(a["metadata"]["resourceVersion"]))
    assert drain(w) == [("ADDED", "b"), ("MODIFIED", "a")]
    store.delete(CM, "default", "b")
    assert drain(w) == [("DELETED", "b")]
    store.unwatch(w)
    store.create(CM, cm("c"))
    assert drain(w) == []


async def test_watch_without_resource_version_starts_with_added(store: Store) -> None:
    store.create(CM, cm("a"))
    store.create(CM, cm("b", ns="other"))
    w = store.watch(CM, None, labels=LabelSelector(), fields=FieldSelector(), since=None)
    assert drain(w) == [("ADDED", "a"), ("ADDED", "b")]


async def test_watch_selectors_turn_moves_into_added_and_deleted(store: Store) -> None:
    a = store.create(CM, cm("a", labels={"app": "x"}))
    w = store.watch(CM, None, labels=LabelSelector.parse("app=y"), fields=FieldSelector(),
                    since=store.rv)
    a = store.update(CM, {**a, "metadata": {**a["metadata"], "labels": {"app": "y"}}})
    a = store.update(CM, {**a, "data": {"n": "1"}})
    store.update(CM, {**a, "metadata": {**a["metadata"], "labels": {"app": "z"}}})
    assert drain(w) == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]


async def test_watch_from_before_the_history_is_expired(store: Store) -> None:
    first = store.create(CM, cm("a"))
    for n in range(10):
        store.create(CM, cm(f"x{n}"))
    with pytest.raises(ApiError) as info:
        store.watch(CM, None, labels=LabelSelector(), fields=FieldSelector(),
                    since=int(first["metadata"]["resourceVersion"]))
    assert (info.value.code, info.value.reason) == (410, "Expired")
    store.watch(CM, None, labels=LabelSelector(), fields=FieldSelector(), since=store.rv - 2)
    await asyncio.sleep(0)


async def test_expired_objects_by_last_change(store: Store) -> None:
    events = rt("", "v1", "events")
    store.create(events, {"metadata": {"name": "old", "namespace": "default"},
                          "lastTimestamp": "2020-01-01T00:00:00Z"})
    store.create(events, {"metadata": {"name": "new", "namespace": "default"}})
    assert store.expired(events, 3600) == [("default", "old")]


async def test_a_terminating_pod_stays_through_status_updates(store: Store) -> None:
    store.create(PODS, {"metadata": {"name": "p", "namespace": "default"},
                        "spec": {"nodeName": "n", "terminationGracePeriodSeconds": 5}})
    pod, _ = store.delete(PODS, "default", "p")
    store.update(PODS, {**pod, "status": {"phase": "Running", "message": "stopping"}},
                 subresource="status")
    assert store.get(PODS, "default", "p")["status"]["message"] == "stopping"


async def test_a_terminating_namespace_stays_through_updates(store: Store) -> None:
    store.create(NS, {"metadata": {"name": "team"}})
    store.create(CM, cm("b", ns="team", finalizers=["hold"]))
    ns, _ = store.delete(NS, None, "team")
    store.update(NS, {**ns, "metadata": {**ns["metadata"], "labels": {"x": "y"}}})
    assert store.find(NS, None, "team") is not None


async def test_a_sink_gets_events_from_the_commit_and_a_failing_one_closes(store: Store) -> None:
    w = store.watch(CM, None, labels=LabelSelector(), fields=FieldSelector(), since=store.rv)
    got: list[tuple[str, str]] = []
    w.sink = lambda etype, event: got.append((etype, event.obj["metadata"]["name"])) is None
    store.create(CM, cm("a"))
    assert got == [("ADDED", "a")]
    assert w.queue.empty()

    def broken(etype: str, event: Any) -> bool:
        raise RuntimeError("client went away badly")

    w.sink = broken
    created = store.create(CM, cm("b"))  # the commit itself succeeds
    assert store.get(CM, "default", "b") is created
    assert w.sink is None
    assert w.queue.get_nowait() is None  # the stream is told to end


async def test_watch_from_a_resource_version_never_handed_out_is_expired(store: Store) -> None:
    # A client of an earlier run of the store, which counted further before it
    # stopped: this store cannot say what followed that number.
    store.create(CM, cm("a"))
    with pytest.raises(ApiError) as info:
        store.watch(CM, None, labels=LabelSelector(), fields=FieldSelector(),
                    since=store.rv + 1)
    assert (info.value.code, info.value.reason) == (410, "Expired")
    store.watch(CM, None, labels=LabelSelector(), fields=FieldSelector(), since=store.rv)
    await asyncio.sleep(0)


async def test_resource_versions_are_reserved_before_they_are_handed_out(store: Store) -> None:
    asked: list[int] = []

    def reserve(wanted: int) -> int:
        asked.append(wanted)
        return wanted + 2

    store.reserve_rvs = reserve
    rvs = [int(store.create(CM, cm(f"c{i}"))["metadata"]["resourceVersion"]) for i in range(7)]
    assert rvs == [1, 2, 3, 4, 5, 6, 7]
    assert asked == [1, 4, 7]  # a block of 3 each time the last one is passed


def test_a_reservation_that_cannot_be_recorded_refuses_the_write(store: Store) -> None:
    def full_disk(wanted: int) -> int:
        raise OSError("no space left on device")

    store.reserve_rvs = full_disk
    with pytest.raises(OSError, match="no space"):
        store.create(CM, cm("a"))
    assert store.rv == 0  # no number handed out unrecorded
    with pytest.raises(ApiError) as info:
        store.get(CM, "default", "a")
    assert info.value.code == 404
    store.reserve_rvs = lambda wanted: wanted + 9
    assert store.create(CM, cm("a"))["metadata"]["resourceVersion"] == "1"


async def test_a_store_without_saved_state_counts_above_every_number_of_an_earlier_run() -> None:
    """A restart of a localkube that keeps nothing (--no-persist) lost every object: a
    client resuming a watch from a number of the earlier run must get 410 and list again,
    even once the new run has made more changes than the earlier one (counting from 0
    each time, that number would be the new run's and the watch would resume silently)."""
    earlier = Store()
    earlier.set_resource_version(unpersisted_base(1_000.0))
    for name in ("a", "b", "c"):
        earlier.create(CM, cm(name))
    seen = earlier.rv

    later = Store()  # the same server started again a second later, empty
    later.set_resource_version(unpersisted_base(1_001.0))
    made = [later.create(CM, cm(f"n{i}")) for i in range(10)]
    assert min(int(o["metadata"]["resourceVersion"]) for o in made) > seen
    with pytest.raises(ApiError) as info:
        later.watch(CM, "default", labels=LabelSelector(), fields=FieldSelector(), since=seen)
    assert (info.value.code, info.value.reason) == (410, "Expired")
