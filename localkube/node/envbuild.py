"""A container's environment, built as the kubelet builds it. Purely computational.

Order (later wins): the node's own variables (``BIND_HOST`` and ``POD_IP`` =
the pod's address, ``HOSTNAME``, ``TMPDIR``, ``KUBERNETES_SERVICE_HOST``/``_PORT``),
then ``envFrom`` sources in order, then ``env`` entries in order. An ``env``
value's ``$(VAR)`` references are expanded from what is defined before it. ``valueFrom`` supports
``fieldRef`` (metadata.name/namespace/uid/labels['k']/annotations['k'],
spec.nodeName, spec.serviceAccountName, status.podIP/podIPs/hostIP/hostIPs),
``resourceFieldRef``, ``configMapKeyRef`` and ``secretKeyRef``. A missing
required ConfigMap, Secret or key is an ``EnvError`` (the kubelet reports the
container as waiting with ``CreateContainerConfigError`` and tries again).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any, Final

from localkube.node.expansion import expand

JsonObj = dict[str, Any]

_ENV_NAME: Final = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_SUBSCRIPT: Final = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class EnvError(Exception):
    """The environment cannot be built (a missing reference, an unsupported field)."""


@dataclass(frozen=True, kw_only=True)
class PodFacts:
    """What the downward API can tell a container about its pod."""

    name: str
    namespace: str
    uid: str
    pod_ip: str
    host_ip: str
    node_name: str
    service_account: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]

    @classmethod
    def of(cls, pod: JsonObj, *, pod_ip: str, host_ip: str, node_name: str) -> PodFacts:
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        return cls(
            name=str(meta.get("name", "")), namespace=str(meta.get("namespace") or "default"),
            uid=str(meta.get("uid", "")), pod_ip=pod_ip, host_ip=host_ip,
            node_name=str(spec.get("nodeName") or node_name),
            service_account=str(spec.get("serviceAccountName") or "default"),
            labels=dict(meta.get("labels") or {}), annotations=dict(meta.get("annotations") or {}),
        )


def field_value(facts: PodFacts, path: str) -> str:
    """The value of a downward-API ``fieldPath``."""
    simple = {
        "metadata.name": facts.name, "metadata.namespace": facts.namespace,
        "metadata.uid": facts.uid, "spec.nodeName": facts.node_name,
        "spec.serviceAccountName": facts.service_account, "status.podIP": facts.pod_ip,
        "status.podIPs": facts.pod_ip, "status.hostIP": facts.host_ip,
        "status.hostIPs": facts.host_ip,
    }
    if path in simple:
        return simple[path]
    m = _SUBSCRIPT.match(path)
    if m:
        source = facts.labels if m.group(1) == "labels" else facts.annotations
        return source.get(m.group(2), "")
    raise EnvError(f"fieldRef {path!r} is not supported")


def referenced_names(pod: JsonObj) -> tuple[set[str], set[str]]:
    """(ConfigMap names, Secret names) that the pod's containers' env refers to."""
    configmaps: set[str] = set()
    secrets: set[str] = set()
    spec = pod.get("spec") or {}
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for source in c.get("envFrom") or []:
            if "configMapRef" in source:
                configmaps.add(source["configMapRef"].get("name", ""))
            if "secretRef" in source:
                secrets.add(source["secretRef"].get("name", ""))
        for var in c.get("env") or []:
            vf = var.get("valueFrom") or {}
            if "configMapKeyRef" in vf:
                configmaps.add(vf["configMapKeyRef"].get("name", ""))
            if "secretKeyRef" in vf:
                secrets.add(vf["secretKeyRef"].get("name", ""))
    return configmaps, secrets


def object_data(obj: JsonObj, *, secret: bool) -> dict[str, str]:
    """A ConfigMap's or Secret's data as text (Secrets' base64 decoded)."""
    out: dict[str, str] = {}
    if secret:
        for key, value in (obj.get("data") or {}).items():
            try:
                out[key] = base64.b64decode(str(value), validate=True).decode("utf-8", "replace")
            except (binascii.Error, ValueError) as exc:
                raise EnvError(f"secret key {key!r} is not valid base64") from exc
        out.update({k: str(v) for k, v in (obj.get("stringData") or {}).items()})
    else:
        out.update({k: str(v) for k, v in (obj.get("data") or {}).items()})
        for key, value in (obj.get("binaryData") or {}).items():
            out[key] = base64.b64decode(str(value)).decode("utf-8", "replace")
    return out


def _ref_value(ref: JsonObj, objects: Mapping[str, JsonObj], what: str, *,
               secret: bool) -> str | None:
    name, key = str(ref.get("name", "")), str(ref.get("key", ""))
    optional = bool(ref.get("optional", False))
    obj = objects.get(name)
    if obj is None:
        if optional:
            return None
        raise EnvError(f"{what} {name!r} not found")
    data = object_data(obj, secret=secret)
    if key not in data:
        if optional:
            return None
        raise EnvError(f"couldn't find key {key} in {what} {name!r}")
    return data[key]


def _resource_value(ref: JsonObj, container: JsonObj, node_allocatable: Mapping[str, str]) -> str:
    resource = str(ref.get("resource", ""))
    kind, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    raw = (resources.get(kind) or {}).get(name)
    if raw is None:
        raw = (resources.get("limits") or {}).get(name) or node_allocatable.get(name)
    if raw is None:
        raise EnvError(f"resourceFieldRef {resource!r} is not supported")
    divisor = parse_quantity(str(ref.get("divisor") or "1"))
    value = parse_quantity(str(raw)) / (divisor or Decimal(1))
    return str(int(value.to_integral_value(rounding=ROUND_CEILING)))


_SUFFIXES: Final[dict[str, int | Decimal]] = {
    "": 1, "m": Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
}


def parse_quantity(text: str) -> Decimal:
    """A Kubernetes quantity ("500m", "2Gi", "1") as a number."""
    m = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", text.strip())
    if not m or m.group(2) not in _SUFFIXES:
        raise EnvError(f"bad quantity {text!r}")
    return Decimal(m.group(1)) * Decimal(_SUFFIXES[m.group(2)])


def build_env(
    container: JsonObj,
    facts: PodFacts,
    *,
    node_vars: Mapping[str, str],
    configmaps: Mapping[str, JsonObj],
    secrets: Mapping[str, JsonObj],
    node_allocatable: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The container's variables (not the process's base environment such as PATH)."""
    env: dict[str, str] = dict(node_vars)
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix") or "")
        if "configMapRef" in source:
            ref, objects, secret, what = source["configMapRef"], configmaps, False, "configmap"
        elif "secretRef" in source:
            ref, objects, secret, what = source["secretRef"], secrets, True, "secret"
        else:
            raise EnvError("envFrom needs configMapRef or secretRef")
        obj = objects.get(str(ref.get("name", "")))
        if obj is None:
            if ref.get("optional"):
                continue
            raise EnvError(f"{what} {ref.get('name')!r} not found")
        for key, value in object_data(obj, secret=secret).items():
            if _ENV_NAME.match(prefix + key):
                env[prefix + key] = value
    for var in container.get("env") or []:
        name = str(var.get("name", ""))
        if not name:
            raise EnvError("an env entry has no name")
        if "valueFrom" in var:
            found = _value_from(var["valueFrom"], container, facts, configmaps=configmaps,
                                secrets=secrets, node_allocatable=node_allocatable or {})
            if found is None:
                continue
            env[name] = found
        else:
            env[name] = expand(str(var.get("value") or ""), env)
    return env


def _value_from(vf: JsonObj, container: JsonObj, facts: PodFacts, *,
                configmaps: Mapping[str, JsonObj], secrets: Mapping[str, JsonObj],
                node_allocatable: Mapping[str, str]) -> str | None:
    if "fieldRef" in vf:
        return field_value(facts, str(vf["fieldRef"].get("fieldPath", "")))
    if "configMapKeyRef" in vf:
        return _ref_value(vf["configMapKeyRef"], configmaps, "configmap", secret=False)
    if "secretKeyRef" in vf:
        return _ref_value(vf["secretKeyRef"], secrets, "secret", secret=True)
    if "resourceFieldRef" in vf:
        return _resource_value(vf["resourceFieldRef"], container, node_allocatable)
    raise EnvError(f"valueFrom {sorted(vf)} is not supported")
