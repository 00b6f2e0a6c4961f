"""Merge patch, JSON patch and strategic merge patch."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from localkube.api.patching import (
    PatchError,
    apply_patch,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)

DEPLOY: dict[str, Any] = {
    "metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["a"]},
    "spec": {
        "replicas": 2,
        "template": {"spec": {"containers": [
            {"name": "engine", "image": "e:1", "env": [{"name": "A", "value": "1"}],
             "ports": [{"containerPort": 8000, "name": "http"}]},
            {"name": "sidecar", "image": "s:1"},
        ]}},
    },
}


def test_merge_patch_merges_maps_and_null_deletes() -> None:
    out = merge_patch(DEPLOY, {"metadata": {"labels": {"app": None, "tier": "x"}},
                               "spec": {"replicas": 5}})
    assert out["metadata"]["labels"] == {"tier": "x"}
    assert out["spec"]["replicas"] == 5
    assert out["spec"]["template"] == DEPLOY["spec"]["template"]


def test_merge_patch_replaces_lists_whole() -> None:
    out = merge_patch(DEPLOY, {"spec": {"template": {"spec": {"containers": [{"name": "x"}]}}}})
    assert out["spec"]["template"]["spec"]["containers"] == [{"name": "x"}]


def test_patches_leave_their_inputs_alone() -> None:
    before = copy.deepcopy(DEPLOY)
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "engine", "image": "e:2"}]}}}}
    strategic_merge_patch(DEPLOY, patch)
    merge_patch(DEPLOY, patch)
    json_patch(DEPLOY, [{"op": "replace", "path": "/spec/replicas", "value": 1}])
    assert before == DEPLOY


def test_json_patch_operations() -> None:
    out = json_patch(DEPLOY, [
        {"op": "add", "path": "/metadata/labels/tier", "value": "front"},
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "remove", "path": "/metadata/finalizers/0"},
        {"op": "add", "path": "/metadata/finalizers/-", "value": "b"},
        {"op": "copy", "from": "/metadata/labels/app", "path": "/metadata/labels/copy"},
        {"op": "move", "from": "/metadata/labels/copy", "path": "/metadata/labels/moved"},
        {"op": "test", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/metadata/labels/a~1b", "value": "slash"},
    ])
    assert out["metadata"]["labels"] == {"app": "web", "tier": "front", "moved": "web",
                                         "a/b": "slash"}
    assert out["metadata"]["finalizers"] == ["b"]
    assert out["spec"]["replicas"] == 3


@pytest.mark.parametrize("ops", [
    [{"op": "test", "path": "/spec/replicas", "value": 9}],
    [{"op": "remove", "path": "/nope"}],
    [{"op": "replace", "path": "/spec/nope", "value": 1}],
    [{"op": "frobnicate", "path": "/spec"}],
    [{"path": "/spec"}],
    {"op": "add"},
])
def test_json_patch_errors(ops: Any) -> None:
    with pytest.raises(PatchError):
        json_patch(DEPLOY, ops)


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = obj["spec"]["template"]["spec"]["containers"]
    return result


def test_strategic_merge_merges_containers_by_name() -> None:
    out = strategic_merge_patch(DEPLOY, {"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "image": "s:2"}, {"name": "new", "image": "n:1"}]}}}})
    by_name = {c["name"]: c for c in containers(out)}
    assert by_name["sidecar"]["image"] == "s:2"
    assert by_name["engine"]["image"] == "e:1"
    assert by_name["new"]["image"] == "n:1"


def test_strategic_merge_env_and_ports_by_their_keys() -> None:
    out = strategic_merge_patch(DEPLOY, {"spec": {"template": {"spec": {"containers": [
        {"name": "engine", "env": [{"name": "B", "value": "2"}],
         "ports": [{"containerPort": 8000, "name": "web"}]}]}}}})
    engine = containers(out)[0]
    assert engine["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert engine["ports"] == [{"containerPort": 8000, "name": "web"}]


def test_strategic_merge_directives_kubectl_apply_sends() -> None:
    patch = {
        "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]},
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "engine"}],
            "containers": [{"name": "engine", "$patch": "delete"}],
        }}},
    }
    out = strategic_merge_patch(DEPLOY, patch)
    assert [c["name"] for c in containers(out)] == ["sidecar"]
    assert out["metadata"].get("finalizers") == []


def test_strategic_merge_replace_directive_and_retain_keys() -> None:
    out = strategic_merge_patch(DEPLOY, {"spec": {"template": {"spec": {"containers": [
        {"name": "only", "image": "o"}, {"$patch": "replace"}]}}}})
    assert containers(out) == [{"name": "only", "image": "o"}]
    out = strategic_merge_patch({"spec": {"strategy": {"type": "RollingUpdate",
                                                       "rollingUpdate": {"maxSurge": 1}}}},
                                {"spec": {"strategy": {"$retainKeys": ["type"],
                                                       "type": "Recreate"}}})
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_strategic_merge_finalizers_merge_as_a_set() -> None:
    out = strategic_merge_patch(DEPLOY, {"metadata": {"finalizers": ["a", "b"]}})
    assert out["metadata"]["finalizers"] == ["a", "b"]


def test_unknown_patch_type_is_an_error() -> None:
    with pytest.raises(PatchError, match="unsupported patch type"):
        apply_patch(DEPLOY, {}, "application/xml")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=4),
    lambda inner: st.dictionaries(st.text("abc", min_size=1, max_size=2), inner, max_size=3),
    max_leaves=8,
)


@given(st.dictionaries(st.text("abc", min_size=1, max_size=2), json_values, max_size=4),
       st.dictionaries(st.text("abc", min_size=1, max_size=2), json_values, max_size=4))
def test_merge_patch_is_idempotent(doc: dict[str, Any], patch: dict[str, Any]) -> None:
    once = merge_patch(doc, patch)
    assert merge_patch(once, patch) == once
