"""Table rows for kubectl get: built-in columns and CRD printer columns."""

from __future__ import annotations

from localkube.api.resources import Registry, crd_resource_types
from localkube.api.tables import jsonpath, to_table

CRD = {"metadata": {"name": "widgets.example.com"}, "spec": {
    "group": "example.com", "scope": "Namespaced",
    "names": {"plural": "widgets", "kind": "Widget"},
    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
        "openAPIV3Schema": {"type": "object"}}, "additionalPrinterColumns": [
        {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
        {"name": "Ready", "type": "string",
         "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        {"name": "Detail", "type": "string", "jsonPath": ".spec.detail", "priority": 1},
    ]}]}}


def test_jsonpath_subset() -> None:
    obj = {"a": {"b": [{"t": "x", "v": 1}, {"t": "y", "v": 2}]}}
    assert jsonpath(obj, ".a.b[1].v") == 2
    assert jsonpath(obj, '.a.b[?(@.t=="x")].v') == 1
    assert jsonpath(obj, "{.a.b[0].t}") == "x"
    assert jsonpath(obj, ".a.missing") is None


def test_crd_printer_columns() -> None:
    (rt,) = crd_resource_types(CRD)
    obj = {"metadata": {"name": "w", "creationTimestamp": "2026-01-01T00:00:00Z"},
           "spec": {"size": 3}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    table = to_table(rt, [obj])
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Size", "Ready", "Detail"]
    assert [c["priority"] for c in table["columnDefinitions"]] == [0, 0, 0, 1]
    assert table["rows"][0]["cells"] == ["w", 3, "True", None]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


def test_pod_columns() -> None:
    rt = Registry().lookup("", "v1", "pods")
    assert rt is not None
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
           "status": {"phase": "Running", "podIP": "127.0.0.10", "containerStatuses": [
               {"name": "a", "ready": True, "restartCount": 2},
               {"name": "b", "ready": False, "restartCount": 1}]}}
    row = to_table(rt, [pod], include="Object")["rows"][0]
    assert row["cells"][:4] == ["p", "1/2", "Running", 3]
    assert row["cells"][5] == "127.0.0.10"
    assert row["object"] is pod
