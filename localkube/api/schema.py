"""Custom objects against their CRD's ``openAPIV3Schema``. Purely computational.

In Kubernetes' order: unknown fields are pruned (reported instead when the
client asks for strict field validation), defaults are filled in, then the
object is validated: types, ``required``, ``enum``, ``minimum``/``maximum``
(with the boolean ``exclusiveMinimum`` of OpenAPI 3.0), lengths, ``pattern``,
``nullable``, ``x-kubernetes-int-or-string`` and
``x-kubernetes-preserve-unknown-fields``. Errors come back as ``Cause``\\ s
naming the field, as ``kubectl`` prints them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

from jsonschema import Draft4Validator
from jsonschema.exceptions import ValidationError

from localkube.api.errors import Cause

_SKIP_TOP = ("apiVersion", "kind", "metadata")
_COMBINATORS = ("allOf", "anyOf", "oneOf")


def to_jsonschema(oas: Any) -> Any:
    """An OpenAPI 3.0 structural schema as a JSON Schema (draft 4) document."""
    if not isinstance(oas, dict):
        return oas
    out: dict[str, Any] = {}
    for key, value in oas.items():
        if key == "properties":
            out[key] = {k: to_jsonschema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = to_jsonschema(value) if isinstance(value, dict) else value
        elif key in _COMBINATORS:
            out[key] = [to_jsonschema(v) for v in value]
        elif key.startswith("x-kubernetes-") or key in ("nullable", "format", "default",
                                                         "example", "externalDocs"):
            continue
        else:
            out[key] = value
    if oas.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if oas.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def _top(schema: dict[str, Any]) -> dict[str, Any]:
    props = {k: v for k, v in (schema.get("properties") or {}).items() if k not in _SKIP_TOP}
    return {**schema, "properties": props}


def _field(path: Iterator[Any] | Any) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _cause(err: ValidationError) -> Cause:
    path = _field(err.absolute_path)
    value = json.dumps(err.instance) if not isinstance(err.instance, dict | list) else None
    if err.validator == "required":
        missing = str(err.message).split("'")[1] if "'" in err.message else ""
        return Cause(reason="FieldValueRequired", message="Required value",
                     field=f"{path}.{missing}" if path else missing)
    if err.validator == "enum":
        allowed = ", ".join(json.dumps(v) for v in err.validator_value)
        return Cause(reason="FieldValueNotSupported",
                     message=f"Unsupported value: {value}: supported values: {allowed}",
                     field=path)
    if err.validator == "type":
        want = err.validator_value
        return Cause(reason="FieldValueTypeInvalid",
                     message=f"Invalid value: {json.dumps(_kind_of(err.instance))}: "
                     f"{path or 'body'} in body must be of type {want}: "
                     f"{json.dumps(_kind_of(err.instance))}",
                     field=path)
    return Cause(reason="FieldValueInvalid",
                 message=f"Invalid value: {value if value is not None else 'object'}: "
                 f"{path or 'body'} in body {_message(err)}",
                 field=path)


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if value is None:
        return "null"
    return "object"


def _message(err: ValidationError) -> str:
    v, want = err.validator, err.validator_value
    if v in ("minimum", "maximum"):
        excl = (err.schema or {}).get("exclusiveMinimum" if v == "minimum" else
                                      "exclusiveMaximum")
        word = "greater" if v == "minimum" else "less"
        return f"should be {word} than {'' if excl else 'or equal to '}{want}"
    if v == "pattern":
        return f"should match '{want}'"
    if v == "minLength":
        return f"should be at least {want} chars long"
    if v == "maxLength":
        return f"may not be longer than {want}"
    if v == "minItems":
        return f"should have at least {want} items"
    if v == "maxItems":
        return f"must have at most {want} items"
    return str(err.message)


def validate(schema: dict[str, Any], obj: dict[str, Any]) -> list[Cause]:
    """Causes for every way ``obj`` breaks ``schema`` (empty when valid)."""
    body = {k: v for k, v in obj.items() if k not in _SKIP_TOP}
    validator = Draft4Validator(to_jsonschema(_top(schema)))
    causes = [_cause(e) for e in validator.iter_errors(body)]
    causes.sort(key=lambda c: c.field)
    return causes


def _is_object(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "object" or "properties" in schema


def apply_defaults(schema: dict[str, Any], obj: Any) -> Any:
    """``obj`` with the schema's defaults filled in where fields are absent (never in
    ``metadata``, ``apiVersion`` or ``kind`` at the top)."""
    if isinstance(obj, dict) and isinstance(schema, dict) and "properties" in schema:
        top = _apply_defaults(_top(schema), {k: v for k, v in obj.items() if k not in _SKIP_TOP})
        return {**{k: v for k, v in obj.items() if k in _SKIP_TOP}, **top}
    return _apply_defaults(schema, obj)


def _apply_defaults(schema: dict[str, Any], obj: Any) -> Any:
    if isinstance(obj, dict) and _is_object(schema):
        out = dict(obj)
        for name, sub in (schema.get("properties") or {}).items():
            if name not in out and "default" in sub:
                out[name] = copy.deepcopy(sub["default"])
            if name in out:
                out[name] = _apply_defaults(sub, out[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            known = schema.get("properties") or {}
            for name, value in out.items():
                if name not in known:
                    out[name] = _apply_defaults(extra, value)
        return out
    if isinstance(obj, list) and isinstance(schema.get("items"), dict):
        return [_apply_defaults(schema["items"], item) for item in obj]
    return obj


def prune(schema: dict[str, Any], obj: Any, path: str = "") -> tuple[Any, list[str]]:
    """``obj`` without the fields its schema does not know, and the paths of those."""
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return obj, []
    if isinstance(obj, dict) and _is_object(schema):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        keep_unknown = schema.get("x-kubernetes-preserve-unknown-fields") or extra is True
        embedded = schema.get("x-kubernetes-embedded-resource") or not path
        out: dict[str, Any] = {}
        dropped: list[str] = []
        for name, value in obj.items():
            sub_path = f"{path}.{name}" if path else name
            if embedded and name in _SKIP_TOP:
                # ObjectMeta and TypeMeta, whatever the schema says of them (published
                # CRDs declare ``metadata: {type: object}``): the API server owns them.
                out[name] = value
            elif name in props:
                out[name], more = prune(props[name], value, sub_path)
                dropped += more
            elif isinstance(extra, dict):
                out[name], more = prune(extra, value, sub_path)
                dropped += more
            elif keep_unknown:
                out[name] = value
            else:
                dropped.append(sub_path)
        return out, dropped
    if isinstance(obj, list) and isinstance(schema.get("items"), dict):
        items = []
        dropped = []
        for n, item in enumerate(obj):
            value, more = prune(schema["items"], item, f"{path}[{n}]")
            items.append(value)
            dropped += more
        return items, dropped
    return obj, []
