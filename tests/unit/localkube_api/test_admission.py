"""Defaulting and validation before storage: built-in kinds and CRDs."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from localkube.api.admission import Admission, admit_crd, crd_status
from localkube.api.errors import ApiError
from localkube.api.resources import Registry, ResourceType, crd_resource_types

REG = Registry()


def rt(group: str, plural: str, version: str = "v1") -> ResourceType:
    found = REG.lookup(group, version, plural)
    assert found is not None
    return found


def deployment(**spec: Any) -> dict[str, Any]:
    base = {"selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "a"}},
                         "spec": {"containers": [{"name": "c", "image": "i:1",
                                                  "ports": [{"containerPort": 80}]}]}}}
    return {"metadata": {"name": "d", "namespace": "n"}, "spec": {**base, **spec}}


def causes(exc: pytest.ExceptionInfo[ApiError]) -> list[str]:
    return [c.field for c in exc.value.causes]


def test_deployment_defaults() -> None:
    out = Admission().admit(rt("apps", "deployments"), deployment(), old=None)
    spec = out["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    container = spec["template"]["spec"]["containers"][0]
    assert container["ports"][0]["protocol"] == "TCP"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert spec["template"]["spec"]["restartPolicy"] == "Always"


@pytest.mark.parametrize(("spec", "field"), [
    ({"selector": None}, "spec.selector"),
    ({"selector": {"matchLabels": {"app": "b"}}}, "spec.template.metadata.labels"),
    ({"replicas": -1}, "spec.replicas"),
    ({"template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": []}}},
     "spec.template.spec.containers"),
])
def test_deployment_errors_name_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ApiError) as info:
        Admission().admit(rt("apps", "deployments"), deployment(**spec), old=None)
    assert info.value.code == 422
    assert causes(info) == [field]


def test_the_input_is_not_changed() -> None:
    body = deployment()
    Admission().admit(rt("apps", "deployments"), body, old=None)
    assert "replicas" not in body["spec"]


def test_service_ips_and_node_ports_are_unique_and_kept_on_update() -> None:
    adm = Admission()
    svc = rt("", "services")
    a = adm.admit(svc, {"metadata": {"name": "a", "namespace": "n"},
                        "spec": {"type": "NodePort", "ports": [{"port": 80}]}}, old=None)
    b = adm.admit(svc, {"metadata": {"name": "b", "namespace": "n"},
                        "spec": {"type": "NodePort", "ports": [{"port": 80}]}}, old=None,
                  existing=[a])
    assert a["spec"]["clusterIP"] != b["spec"]["clusterIP"]
    assert a["spec"]["ports"][0]["nodePort"] != b["spec"]["ports"][0]["nodePort"]
    again = adm.admit(svc, {"metadata": {"name": "a", "namespace": "n"},
                            "spec": {"type": "NodePort", "ports": [{"port": 80}]}}, old=a,
                      existing=[a, b])
    assert again["spec"]["clusterIP"] == a["spec"]["clusterIP"]
    assert again["spec"]["ports"][0]["nodePort"] == a["spec"]["ports"][0]["nodePort"]


def test_secret_string_data_becomes_data() -> None:
    out = Admission().admit(rt("", "secrets"), {"metadata": {"name": "s"},
                                                "stringData": {"pw": "hunter2"}}, old=None)
    assert "stringData" not in out
    assert base64.b64decode(out["data"]["pw"]) == b"hunter2"
    assert out["type"] == "Opaque"


@pytest.mark.parametrize("name", ["UPPER", "-dash", "a_b", "x" * 254])
def test_invalid_names(name: str) -> None:
    with pytest.raises(ApiError) as info:
        Admission().admit(rt("", "configmaps"), {"metadata": {"name": name}}, old=None)
    assert causes(info) == ["metadata.name"]


def test_label_values_must_be_strings() -> None:
    with pytest.raises(ApiError) as info:
        Admission().admit(rt("", "configmaps"),
                          {"metadata": {"name": "c", "labels": {"n": 1}}}, old=None)
    assert causes(info) == ["metadata.labels.n"]


CRD: dict[str, Any] = {"metadata": {"name": "things.example.com"}, "spec": {
    "group": "example.com", "scope": "Namespaced",
    "names": {"plural": "things", "kind": "Thing", "shortNames": ["th"]},
    "versions": [{"name": "v1", "served": True, "storage": True,
                  "subresources": {"status": {}},
                  "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                      "spec": {"type": "object", "properties": {
                          "n": {"type": "integer", "default": 1}}}}}}}]}}


def test_crd_status_and_types() -> None:
    admit_crd(CRD)
    status = crd_status(CRD, "2026-01-01T00:00:00Z")
    assert {c["type"] for c in status["conditions"]} == {"NamesAccepted", "Established"}
    assert status["acceptedNames"]["listKind"] == "ThingList"
    (thing,) = crd_resource_types(CRD)
    assert (thing.kind, thing.namespaced, thing.status, thing.short_names) == (
        "Thing", True, True, ("th",))
    obj = Admission().admit(thing, {"metadata": {"name": "t"}, "spec": {}}, old=None)
    assert obj["spec"] == {"n": 1}


@pytest.mark.parametrize(("change", "field"), [
    (lambda c: c["metadata"].update(name="other.example.com"), "metadata.name"),
    (lambda c: c["spec"].update(scope="Galaxy"), "spec.scope"),
    (lambda c: c["spec"]["versions"][0].update(storage=False), "spec.versions"),
    (lambda c: c["spec"]["versions"][0].pop("schema"),
     "spec.versions[0].schema.openAPIV3Schema"),
])
def test_crd_errors(change: Any, field: str) -> None:
    crd = copy.deepcopy(CRD)
    change(crd)
    with pytest.raises(ApiError) as info:
        admit_crd(crd)
    assert field in causes(info)
