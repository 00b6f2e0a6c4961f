"""OpenAPI documents, enough for ``kubectl apply`` to validate and patch.

kubectl reads ``/openapi/v3`` (an index of group-version documents) and the
document of the object's group-version: when the object's path declares the
``fieldValidation`` parameter it leaves validation to the server, which
validates custom resources against their schema. ``/openapi/v2`` is an empty
protobuf ``Document`` (kubectl falls back to its built-in knowledge of the
built-in kinds for strategic merge patches).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from localkube.api.resources import Registry, ResourceType


def v2_protobuf() -> bytes:
    """An empty ``openapi_v2.Document`` in protobuf form (no bytes at all)."""
    return b""


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _schema_name(rt: ResourceType) -> str:
    group = ".".join(reversed(rt.group.split("."))) if rt.group else "io.k8s.api.core"
    return f"{group}.{rt.version}.{rt.kind}"


def v3_document(registry: Registry, gv_path: str) -> dict[str, Any] | None:
    parts = gv_path.split("/")
    if parts[0] == "api" and len(parts) == 2:
        group, version = "", parts[1]
    elif parts[0] == "apis" and len(parts) == 3:
        group, version = parts[1], parts[2]
    else:
        return None
    types = registry.in_group_version(group, version)
    if not types:
        return None
    schemas: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for rt in types:
        name = _schema_name(rt)
        body: dict[str, Any] = dict(rt.schema) if rt.schema else {
            "type": "object", "x-kubernetes-preserve-unknown-fields": True}
        props = dict(body.get("properties") or {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props["metadata"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        body["properties"] = props
        body["x-kubernetes-group-version-kind"] = [
            {"group": rt.group, "version": rt.version, "kind": rt.kind}]
        schemas[name] = body
        ref = {"$ref": f"#/components/schemas/{name}"}
        params = [
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string",
             "uniqueItems": True}},
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string",
             "uniqueItems": True}},
        ]
        content = {"application/json": {"schema": ref}}
        prefix = f"/{_gv_path(group, version)}"
        ns = "/namespaces/{namespace}" if rt.namespaced else ""
        item = {
            "get": {"responses": {"200": {"content": content}},
                    "x-kubernetes-action": "get",
                    "x-kubernetes-group-version-kind": body["x-kubernetes-group-version-kind"][0]},
            "put": {"parameters": params, "responses": {"200": {"content": content}},
                    "requestBody": {"content": content}},
            "patch": {"parameters": params, "responses": {"200": {"content": content}},
                      "requestBody": {"content": {"application/merge-patch+json": {
                          "schema": {"type": "object"}}}}},
            "delete": {"responses": {"200": {"content": content}}},
        }
        paths[f"{prefix}{ns}/{rt.plural}/{{name}}"] = item
        paths[f"{prefix}{ns}/{rt.plural}"] = {
            "get": {"responses": {"200": {"content": content}}},
            "post": {"parameters": params, "responses": {"201": {"content": content}},
                     "requestBody": {"content": content}},
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (localkube)", "version": "v1.37.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def v3_index(registry: Registry) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for group, versions in registry.group_versions().items():
        for version in versions:
            path = _gv_path(group, version)
            doc = v3_document(registry, path)
            digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
            out[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest.upper()}"}
    return {"paths": out}
