"""Discovery documents: /version, /api, /api/v1, /apis, /apis/{g}, /apis/{g}/{v}."""

from __future__ import annotations

import platform
from typing import Any

from localkube.api.resources import ALL_VERBS, Registry, ResourceType

KUBE_MAJOR = "1"
KUBE_MINOR = "37"


def version_info() -> dict[str, Any]:
    return {
        "major": KUBE_MAJOR,
        "minor": KUBE_MINOR,
        "emulationMajor": KUBE_MAJOR,
        "emulationMinor": KUBE_MINOR,
        "gitVersion": f"v{KUBE_MAJOR}.{KUBE_MINOR}.0-localkube",
        "gitCommit": "localkube",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": f"python{platform.python_version()}",
        "compiler": "localkube",
        "platform": f"linux/{platform.machine().replace('x86_64', 'amd64')}",
    }


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address},
        ],
    }


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list(registry: Registry) -> dict[str, Any]:
    groups = [
        _group(g, vs) for g, vs in sorted(registry.group_versions().items()) if g
    ]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: Registry, group: str) -> dict[str, Any] | None:
    versions = registry.group_versions().get(group)
    if not versions or not group:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(group, versions)}


def _resource(rt: ResourceType) -> list[dict[str, Any]]:
    main: dict[str, Any] = {
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": ["create"] if rt.review else list(ALL_VERBS),
    }
    if rt.short_names:
        main["shortNames"] = list(rt.short_names)
    if rt.categories:
        main["categories"] = list(rt.categories)
    out = [main]
    if rt.status:
        out.append({"name": f"{rt.plural}/status", "singularName": "", "namespaced": rt.namespaced,
                    "kind": rt.kind, "verbs": ["get", "patch", "update"]})
    if rt.scale is not None:
        out.append({"name": f"{rt.plural}/scale", "singularName": "", "namespaced": rt.namespaced,
                    "group": "autoscaling", "version": "v1", "kind": "Scale",
                    "verbs": ["get", "patch", "update"]})
    if rt.log:
        out.append({"name": f"{rt.plural}/log", "singularName": "", "namespaced": rt.namespaced,
                    "kind": rt.kind, "verbs": ["get"]})
    if rt.binding:
        out.append({"name": f"{rt.plural}/binding", "singularName": "",
                    "namespaced": rt.namespaced, "kind": "Binding", "verbs": ["create"]})
    if rt.token:
        out.append({"name": f"{rt.plural}/token", "singularName": "",
                    "namespaced": rt.namespaced, "group": "authentication.k8s.io",
                    "version": "v1", "kind": "TokenRequest", "verbs": ["create"]})
    return out


def api_resource_list(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    types = registry.in_group_version(group, version)
    if not types:
        return None
    resources = [r for rt in sorted(types, key=lambda t: t.plural) for r in _resource(rt)]
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


# --- aggregated discovery (apidiscovery.k8s.io/v2): one answer for /api, one for /apis ----

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def wants_aggregated(accept: str) -> bool:
    """Whether the client (kubectl, client-go) asked for aggregated discovery v2."""
    return any("as=APIGroupDiscoveryList" in part and "v=v2" in part
               and "apidiscovery.k8s.io" in part for part in accept.split(","))


def _kind_ref(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "version": version, "kind": kind}


def _aggregated_resource(rt: ResourceType) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resource": rt.plural,
        "responseKind": _kind_ref(rt.group, rt.version, rt.kind),
        "scope": "Namespaced" if rt.namespaced else "Cluster",
        "singularResource": rt.singular,
        "verbs": ["create"] if rt.review else list(ALL_VERBS),
    }
    if rt.short_names:
        out["shortNames"] = list(rt.short_names)
    if rt.categories:
        out["categories"] = list(rt.categories)
    subs = []
    if rt.status:
        subs.append({"subresource": "status",
                     "responseKind": _kind_ref(rt.group, rt.version, rt.kind),
                     "verbs": ["get", "patch", "update"]})
    if rt.scale is not None:
        subs.append({"subresource": "scale",
                     "responseKind": _kind_ref("autoscaling", "v1", "Scale"),
                     "verbs": ["get", "patch", "update"]})
    if rt.log:
        subs.append({"subresource": "log", "responseKind": _kind_ref("", "v1", "Pod"),
                     "verbs": ["get"]})
    if rt.binding:
        subs.append({"subresource": "binding", "responseKind": _kind_ref("", "v1", "Binding"),
                     "verbs": ["create"]})
    if rt.token:
        subs.append({"subresource": "token", "responseKind": _kind_ref(
            "authentication.k8s.io", "v1", "TokenRequest"), "verbs": ["create"]})
    if subs:
        out["subresources"] = subs
    return out


def aggregated(registry: Registry, *, core: bool) -> dict[str, Any]:
    """``/api`` (core=True) or ``/apis`` as an ``APIGroupDiscoveryList``."""
    items = []
    for group, versions in sorted(registry.group_versions().items()):
        if (group == "") != core:
            continue
        items.append({
            "metadata": {"name": group, "creationTimestamp": None},
            "versions": [{
                "version": v,
                "resources": [_aggregated_resource(rt) for rt in sorted(
                    registry.in_group_version(group, v), key=lambda t: t.plural)],
                "freshness": "Current",
            } for v in versions],
        })
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {}, "items": items}
