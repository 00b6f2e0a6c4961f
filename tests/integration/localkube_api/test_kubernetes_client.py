"""The ``kubernetes`` client against localkube: CRUD, conflicts, selectors, watch."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.integration.localkube_api.conftest import WATCH_HISTORY, eventually


def cm(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}


def status_of(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body)
    return body


def test_create_get_list_replace_patch_delete(core: client.CoreV1Api, namespace: str) -> None:
    created = core.create_namespaced_config_map(namespace, cm("a", app="x"))
    assert created.metadata.uid
    assert created.metadata.resource_version
    assert created.metadata.creation_timestamp is not None
    got = core.read_namespaced_config_map("a", namespace)
    assert got.data == {"k": "v"}
    got.data = {"k": "w"}
    replaced = core.replace_namespaced_config_map("a", namespace, got)
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    patched = core.patch_namespaced_config_map("a", namespace, {"data": {"extra": "1"}})
    assert patched.data == {"k": "w", "extra": "1"}
    listed = core.list_namespaced_config_map(namespace)
    assert [i.metadata.name for i in listed.items] == ["a"]
    assert int(listed.metadata.resource_version) >= int(patched.metadata.resource_version)
    core.delete_namespaced_config_map("a", namespace)
    with pytest.raises(ApiException) as info:
        core.read_namespaced_config_map("a", namespace)
    assert info.value.status == 404
    assert status_of(info.value)["reason"] == "NotFound"


def test_generate_name(core: client.CoreV1Api, namespace: str) -> None:
    body = {"metadata": {"generateName": "job-"}, "data": {}}
    a = core.create_namespaced_config_map(namespace, body)
    b = core.create_namespaced_config_map(namespace, body)
    assert a.metadata.name.startswith("job-")
    assert a.metadata.name != b.metadata.name


def test_a_stale_update_is_a_409_conflict(core: client.CoreV1Api, namespace: str) -> None:
    first = core.create_namespaced_config_map(namespace, cm("a"))
    core.patch_namespaced_config_map("a", namespace, {"data": {"k": "newer"}})
    first.data = {"k": "stale"}
    with pytest.raises(ApiException) as info:
        core.replace_namespaced_config_map("a", namespace, first)
    assert info.value.status == 409
    assert status_of(info.value)["reason"] == "Conflict"
    assert core.read_namespaced_config_map("a", namespace).data == {"k": "newer"}


def test_creating_an_existing_name_is_409_already_exists(
    core: client.CoreV1Api, namespace: str,
) -> None:
    core.create_namespaced_config_map(namespace, cm("a"))
    with pytest.raises(ApiException) as info:
        core.create_namespaced_config_map(namespace, cm("a"))
    assert info.value.status == 409
    assert status_of(info.value)["reason"] == "AlreadyExists"


def test_label_and_field_selectors(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, cm("a", app="web", tier="front"))
    core.create_namespaced_config_map(namespace, cm("b", app="web", tier="back"))
    core.create_namespaced_config_map(namespace, cm("c", app="db"))

    def names(**kw: Any) -> list[str]:
        return [i.metadata.name for i in core.list_namespaced_config_map(namespace, **kw).items]

    assert names(label_selector="app=web") == ["a", "b"]
    assert names(label_selector="app=web,tier!=front") == ["b"]
    assert names(label_selector="tier in (front,back)") == ["a", "b"]
    assert names(label_selector="app notin (web)") == ["c"]
    assert names(label_selector="!tier") == ["c"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b", label_selector="app") == ["a", "c"]
    with pytest.raises(ApiException) as info:
        names(label_selector="app in web")
    assert info.value.status == 400


def test_pod_field_selectors(core: client.CoreV1Api, namespace: str) -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    core.create_namespaced_pod(namespace, pod)
    core.patch_namespaced_pod_status("p", namespace, {"status": {"phase": "Running"}})
    assert [p.metadata.name for p in core.list_namespaced_pod(
        namespace, field_selector="status.phase=Running").items] == ["p"]
    assert core.list_namespaced_pod(namespace, field_selector="status.phase=Pending").items == []
    assert core.list_namespaced_pod(namespace, field_selector="spec.nodeName=n1").items == []


def test_watch_sees_changes_in_order_and_resumes(core: client.CoreV1Api, namespace: str) -> None:
    start = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(namespace, cm("a"))
    mid = core.patch_namespaced_config_map("a", namespace, {"data": {"k": "2"}})
    core.delete_namespaced_config_map("a", namespace)

    def events(since: str) -> list[tuple[str, str]]:
        w = watch.Watch()
        out = []
        for ev in w.stream(core.list_namespaced_config_map, namespace, resource_version=since,
                           timeout_seconds=1):
            out.append((ev["type"], ev["object"].metadata.name))
        return out

    assert events(start) == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
    assert events(mid.metadata.resource_version) == [("DELETED", "a")]


def test_watch_without_resource_version_lists_first(core: client.CoreV1Api,
                                                    namespace: str) -> None:
    core.create_namespaced_config_map(namespace, cm("a"))
    core.create_namespaced_config_map(namespace, cm("b"))
    w = watch.Watch()
    seen = [(ev["type"], ev["object"].metadata.name)
            for ev in w.stream(core.list_namespaced_config_map, namespace, timeout_seconds=1)]
    assert seen == [("ADDED", "a"), ("ADDED", "b")]


def test_watch_streams_as_changes_happen(core: client.CoreV1Api, namespace: str) -> None:
    rv = core.list_namespaced_config_map(namespace).metadata.resource_version
    w = watch.Watch()
    stream = w.stream(core.list_namespaced_config_map, namespace, resource_version=rv,
                      timeout_seconds=10)
    core.create_namespaced_config_map(namespace, cm("live"))
    first = next(stream)
    w.stop()
    assert (first["type"], first["object"].metadata.name) == ("ADDED", "live")


def test_watch_from_a_compacted_resource_version_is_410(core: client.CoreV1Api,
                                                        namespace: str) -> None:
    old = core.create_namespaced_config_map(namespace, cm("old")).metadata.resource_version
    for n in range(WATCH_HISTORY + 5):
        core.create_namespaced_config_map(namespace, cm(f"c{n}"))
    w = watch.Watch()
    with pytest.raises(ApiException) as info:
        for _ in w.stream(core.list_namespaced_config_map, namespace, resource_version=old,
                          timeout_seconds=1):
            pass
    assert info.value.status == 410
    assert "Expired" in str(info.value.reason)


def test_watch_bookmarks(localkube: Any, core: client.CoreV1Api, namespace: str) -> None:
    rv = core.list_namespaced_config_map(namespace).metadata.resource_version
    w = watch.Watch()
    kinds = [ev["type"] for ev in w.stream(core.list_namespaced_config_map, namespace,
                                           resource_version=rv, allow_watch_bookmarks=True,
                                           timeout_seconds=2)]
    assert "BOOKMARK" in kinds


def deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "img:1"}]}}},
    }


def test_generation_status_and_scale(apps: client.AppsV1Api, namespace: str) -> None:
    d = apps.create_namespaced_deployment(namespace, deployment("web"))
    assert d.metadata.generation == 1
    d = apps.patch_namespaced_deployment("web", namespace, {"metadata": {"labels": {"x": "y"}}})
    assert d.metadata.generation == 1
    d = apps.patch_namespaced_deployment_status("web", namespace,
                                                {"status": {"replicas": 1, "readyReplicas": 1}})
    assert d.status.ready_replicas == 1
    assert d.metadata.generation == 1
    d = apps.patch_namespaced_deployment("web", namespace, {"spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": "img:2"}]}}}, "status": {"replicas": 7}})
    assert d.metadata.generation == 2
    assert d.status.replicas == 1  # status is written through /status only
    scale = apps.read_namespaced_deployment_scale("web", namespace)
    assert (scale.spec.replicas, scale.status.replicas, scale.status.selector) == (1, 1, "app=web")
    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 4}})
    d = apps.read_namespaced_deployment("web", namespace)
    assert d.spec.replicas == 4
    assert d.metadata.generation == 3


def test_invalid_objects_are_422_with_causes(apps: client.AppsV1Api, namespace: str) -> None:
    body = deployment("bad")
    body["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    with pytest.raises(ApiException) as info:
        apps.create_namespaced_deployment(namespace, body)
    assert info.value.status == 422
    status = status_of(info.value)
    assert status["reason"] == "Invalid"
    assert [c["field"] for c in status["details"]["causes"]] == [
        "spec.template.metadata.labels"]
    with pytest.raises(ApiException) as info:
        apps.create_namespaced_deployment(namespace, deployment("Not_A_Name"))
    assert info.value.status == 422
    assert "metadata.name" in status_of(info.value)["message"]
    with pytest.raises(ApiException) as info:
        apps.patch_namespaced_deployment_scale("nope", namespace, {"spec": {"replicas": 2}})
    assert info.value.status == 404
    apps.create_namespaced_deployment(namespace, deployment("ok"))
    with pytest.raises(ApiException) as info:
        apps.patch_namespaced_deployment_scale("ok", namespace, {"spec": {"replicas": -1}})
    assert info.value.status == 422


def test_a_missing_namespace_is_404(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as info:
        core.create_namespaced_config_map("no-such-namespace", cm("a"))
    assert info.value.status == 404
    assert "no-such-namespace" in status_of(info.value)["message"]


def test_finalizers_and_deletion_timestamp(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {
        "name": "held", "finalizers": ["example.com/hold"]}})
    core.delete_namespaced_config_map("held", namespace)
    held = core.read_namespaced_config_map("held", namespace)
    assert held.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("held", namespace, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as info:
        core.read_namespaced_config_map("held", namespace)
    assert info.value.status == 404


def test_garbage_collection_through_owner_references(
    core: client.CoreV1Api, apps: client.AppsV1Api, namespace: str,
) -> None:
    owner = apps.create_namespaced_deployment(namespace, deployment("owner"))
    ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "owner",
           "uid": owner.metadata.uid, "controller": True, "blockOwnerDeletion": True}
    for name in ("d1", "d2"):
        core.create_namespaced_config_map(namespace, {"metadata": {
            "name": name, "ownerReferences": [ref]}})
    core.create_namespaced_config_map(namespace, cm("unrelated"))
    apps.delete_namespaced_deployment("owner", namespace)
    left = [c.metadata.name for c in core.list_namespaced_config_map(namespace).items]
    assert left == ["unrelated"]


def test_orphan_propagation(core: client.CoreV1Api, apps: client.AppsV1Api,
                            namespace: str) -> None:
    owner = apps.create_namespaced_deployment(namespace, deployment("owner"))
    ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "owner",
           "uid": owner.metadata.uid}
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "d",
                                                               "ownerReferences": [ref]}})
    apps.delete_namespaced_deployment("owner", namespace, propagation_policy="Orphan")
    kept = core.read_namespaced_config_map("d", namespace)
    assert kept.metadata.owner_references is None


def test_deleting_a_namespace_deletes_its_objects(core: client.CoreV1Api,
                                                  namespace: str) -> None:
    core.create_namespaced_config_map(namespace, cm("a"))
    core.delete_namespace(namespace)

    def gone() -> bool:
        try:
            core.read_namespace(namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    eventually(gone)
    assert core.list_config_map_for_all_namespaces(
        field_selector=f"metadata.namespace={namespace}").items == []
