"""Custom objects against openAPIV3Schema: pruning, defaulting, validation."""

from __future__ import annotations

from typing import Any

import pytest

from localkube.api.schema import apply_defaults, prune, validate

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["baseModel", "source"],
            "properties": {
                "baseModel": {"type": "string", "minLength": 1},
                "source": {"type": "string", "pattern": "^(file|https?)://"},
                "replicas": {"type": "integer", "minimum": 0, "maximum": 10},
                "weight": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
                "mode": {"type": "string", "enum": ["fast", "safe"], "default": "safe"},
                "port": {"x-kubernetes-int-or-string": True},
                "note": {"type": "string", "nullable": True},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "tags": {"type": "array", "items": {"type": "object", "properties": {
                    "name": {"type": "string"}, "level": {"type": "integer", "default": 1}}}},
                "limits": {"type": "object", "additionalProperties": {"type": "integer"}},
            },
        },
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
}


def obj(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "brix.dev/v1alpha1", "kind": "LoraAdapter",
            "metadata": {"name": "a", "whatever": 1},
            "spec": {"baseModel": "m", "source": "file:///x", **spec}}


def fields(o: dict[str, Any]) -> dict[str, str]:
    return {c.field: c.reason for c in validate(SCHEMA, o)}


def test_a_valid_object_has_no_causes() -> None:
    assert validate(SCHEMA, obj(replicas=3, weight=0.5, port="http", note=None,
                                extra={"any": {"thing": 1}}, limits={"a": 1})) == []


def test_required_fields_are_named() -> None:
    o = obj()
    del o["spec"]["source"]
    assert fields(o) == {"spec.source": "FieldValueRequired"}


@pytest.mark.parametrize(
    ("spec", "field", "reason"),
    [
        ({"replicas": "three"}, "spec.replicas", "FieldValueTypeInvalid"),
        ({"replicas": 11}, "spec.replicas", "FieldValueInvalid"),
        ({"replicas": -1}, "spec.replicas", "FieldValueInvalid"),
        ({"weight": 0}, "spec.weight", "FieldValueInvalid"),
        ({"mode": "turbo"}, "spec.mode", "FieldValueNotSupported"),
        ({"source": "s3://bucket"}, "spec.source", "FieldValueInvalid"),
        ({"baseModel": ""}, "spec.baseModel", "FieldValueInvalid"),
        ({"port": 1.5}, "spec.port", "FieldValueInvalid"),
        ({"limits": {"a": "x"}}, "spec.limits.a", "FieldValueTypeInvalid"),
    ],
)
def test_invalid_values_are_named(spec: dict[str, Any], field: str, reason: str) -> None:
    assert fields(obj(**spec)) == {field: reason}


def test_messages_read_like_kubernetes() -> None:
    (cause,) = validate(SCHEMA, obj(mode="turbo"))
    assert cause.message == 'Unsupported value: "turbo": supported values: "fast", "safe"'
    (cause,) = validate(SCHEMA, obj(replicas=11))
    assert "should be less than or equal to 10" in cause.message


def test_defaults_fill_absent_fields_only() -> None:
    out = apply_defaults(SCHEMA, obj(tags=[{"name": "a"}, {"name": "b", "level": 3}]))
    assert out["spec"]["mode"] == "safe"
    assert out["spec"]["tags"] == [{"name": "a", "level": 1}, {"name": "b", "level": 3}]
    assert apply_defaults(SCHEMA, obj(mode="fast"))["spec"]["mode"] == "fast"


def test_unknown_fields_are_pruned_and_reported() -> None:
    o = obj(unknown=1, extra={"kept": True})
    o["status"] = {"anything": "goes"}
    o["toplevel"] = "x"
    out, dropped = prune(SCHEMA, o)
    assert sorted(dropped) == ["spec.unknown", "toplevel"]
    assert "unknown" not in out["spec"]
    assert out["spec"]["extra"] == {"kept": True}
    assert out["status"] == {"anything": "goes"}
    assert out["metadata"] == o["metadata"]


# Published CRDs (KEDA's, the Prometheus Operator's) say ``metadata: {type: object}``;
# the API server treats metadata as ObjectMeta whatever the schema says.
PUBLISHED: dict[str, Any] = {
    "type": "object",
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": {"type": "object", "properties": {"size": {"type": "integer", "default": 1}}},
    },
    "required": ["spec"],
}
META = {"name": "a", "namespace": "ns", "labels": {"x": "y"}, "annotations": {"k": "v"}}


def test_metadata_is_objectmeta_whatever_the_schema_says() -> None:
    obj = {"apiVersion": "x.dev/v1", "kind": "Thing", "metadata": dict(META), "spec": {}}
    pruned, dropped = prune(PUBLISHED, obj)
    assert dropped == []
    assert pruned["metadata"] == META
    defaulted = apply_defaults(PUBLISHED, pruned)
    assert defaulted["metadata"] == META
    assert defaulted["spec"] == {"size": 1}
    assert validate(PUBLISHED, defaulted) == []


def test_unknown_fields_are_still_reported_beside_objectmeta() -> None:
    obj = {"metadata": dict(META), "spec": {"size": 2, "colour": "red"}, "extra": 1}
    _, dropped = prune(PUBLISHED, obj)
    assert sorted(dropped) == ["extra", "spec.colour"]
