"""What the API server does to an object before storing it.

Defaulting (the fields Kubernetes fills in that controllers rely on:
Deployment replicas and strategy, Service clusterIP/targetPort/nodePort, pod
phase, Secret ``stringData``), validation (names, the fields brix's
controllers need, CRD schemas) and CustomResourceDefinition status.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import itertools
from collections.abc import Iterable
from typing import Any

from localkube.api import errors, schema
from localkube.api.errors import Cause
from localkube.api.meta import name_problem
from localkube.api.resources import ResourceType, crd_resource_types
from localkube.api.selectors import LabelSelector, SelectorError

NODE_PORT_RANGE = range(30000, 32768)
SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/16")


class Admission:
    """Defaulting and validation; keeps what must be unique (cluster IPs, node ports)."""

    def __init__(self) -> None:
        self._cluster_ips = itertools.islice(SERVICE_CIDR.hosts(), 10, None)

    def admit(
        self, rt: ResourceType, obj: dict[str, Any], *, old: dict[str, Any] | None,
        existing: Iterable[dict[str, Any]] = (), strict: bool = False,
    ) -> dict[str, Any]:
        """The object to store, or an ``ApiError`` (422 with causes, mostly).

        ``existing`` are the objects of the same type (for unique values).
        """
        obj = copy.deepcopy(obj)
        md = obj.setdefault("metadata", {})
        if not isinstance(md, dict):
            raise errors.bad_request("metadata must be an object")
        name = md.get("name", "")
        causes: list[Cause] = []
        problem = name_problem(name, label=rt.key == ("", "namespaces")) if name else None
        if not name:
            causes.append(Cause(reason="FieldValueRequired", message="Required value: name or "
                                "generateName is required", field="metadata.name"))
        elif problem:
            causes.append(Cause(reason="FieldValueInvalid",
                                message=f'Invalid value: "{name}": {problem}',
                                field="metadata.name"))
        causes += _label_causes(md)
        if causes:
            raise errors.invalid(group=rt.group, kind=rt.kind, name=name, causes=causes)
        if rt.custom and rt.schema:
            obj = self._custom(rt, obj, strict=strict)
        fn = getattr(self, f"_{rt.kind.lower()}", None)
        if fn is not None and not rt.custom:
            obj = fn(rt, obj, old=old, existing=existing)
        return obj

    # --- custom resources ------------------------------------------------------

    def _custom(self, rt: ResourceType, obj: dict[str, Any], *, strict: bool) -> dict[str, Any]:
        assert rt.schema is not None
        pruned, dropped = schema.prune(rt.schema, obj)
        if dropped and strict:
            raise errors.bad_request(
                "strict decoding error: "
                + ", ".join(f'unknown field "{d}"' for d in dropped)
            )
        obj = schema.apply_defaults(rt.schema, pruned)
        causes = schema.validate(rt.schema, obj)
        if causes:
            raise errors.invalid(group=rt.group, kind=rt.kind,
                                 name=obj["metadata"].get("name", ""), causes=causes)
        return obj

    # --- built-in kinds (method names are the lowercased kind) ------------------

    def _namespace(self, rt: ResourceType, obj: dict[str, Any], **_: Any) -> dict[str, Any]:
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
        labels = obj["metadata"].setdefault("labels", {})
        labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
        return obj

    def _pod(self, rt: ResourceType, obj: dict[str, Any], *, old: dict[str, Any] | None,
             **_: Any) -> dict[str, Any]:
        spec = obj.setdefault("spec", {})
        causes = _pod_spec_causes(spec, "spec")
        if causes:
            raise errors.invalid(group="", kind="Pod", name=obj["metadata"]["name"],
                                 causes=causes)
        _default_pod_spec(spec)
        if old is None:
            obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        return obj

    def _deployment(self, rt: ResourceType, obj: dict[str, Any], **_: Any) -> dict[str, Any]:
        return self._workload(obj, "Deployment")

    def _replicaset(self, rt: ResourceType, obj: dict[str, Any], **_: Any) -> dict[str, Any]:
        return self._workload(obj, "ReplicaSet")

    def _workload(self, obj: dict[str, Any], kind: str) -> dict[str, Any]:
        spec = obj.setdefault("spec", {})
        name = obj["metadata"]["name"]
        causes: list[Cause] = []
        selector = spec.get("selector")
        template = spec.get("template") or {}
        tlabels = (template.get("metadata") or {}).get("labels") or {}
        if not selector:
            causes.append(Cause(reason="FieldValueRequired", message="Required value",
                                field="spec.selector"))
        else:
            try:
                sel = LabelSelector.from_object(selector)
            except SelectorError as exc:
                causes.append(Cause(reason="FieldValueInvalid", message=str(exc),
                                    field="spec.selector"))
            else:
                if not sel:
                    causes.append(Cause(reason="FieldValueInvalid",
                                        message="Invalid value: empty selector is invalid "
                                        "for deployment", field="spec.selector"))
                elif not sel.matches(tlabels):
                    causes.append(Cause(
                        reason="FieldValueInvalid",
                        message=f"Invalid value: {tlabels!r}: `selector` does not match "
                        "template `labels`", field="spec.template.metadata.labels"))
        replicas = spec.get("replicas", 1)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            causes.append(Cause(reason="FieldValueInvalid",
                                message=f"Invalid value: {replicas!r}: must be greater than "
                                "or equal to 0", field="spec.replicas"))
        causes += _pod_spec_causes(template.get("spec") or {}, "spec.template.spec")
        if causes:
            raise errors.invalid(group="apps", kind=kind, name=name, causes=causes)
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        if kind == "Deployment":
            spec.setdefault("progressDeadlineSeconds", 600)
            strategy = spec.setdefault("strategy", {})
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                ru = strategy.setdefault("rollingUpdate", {})
                ru.setdefault("maxSurge", "25%")
                ru.setdefault("maxUnavailable", "25%")
        _default_pod_spec(template.setdefault("spec", {}))
        return obj

    def _service(self, rt: ResourceType, obj: dict[str, Any], *, old: dict[str, Any] | None,
                 existing: Iterable[dict[str, Any]], **_: Any) -> dict[str, Any]:
        spec = obj.setdefault("spec", {})
        name = obj["metadata"]["name"]
        old_spec = (old or {}).get("spec") or {}
        stype = spec.setdefault("type", "ClusterIP")
        if stype not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
            raise errors.invalid(group="", kind="Service", name=name, causes=[Cause(
                reason="FieldValueNotSupported",
                message=f'Unsupported value: "{stype}": supported values: "ClusterIP", '
                '"ExternalName", "LoadBalancer", "NodePort"', field="spec.type")])
        spec.setdefault("sessionAffinity", "None")
        if stype != "ExternalName":
            if "clusterIP" not in spec:
                spec["clusterIP"] = old_spec.get("clusterIP") or str(next(self._cluster_ips))
            if spec["clusterIP"] != "None":
                spec.setdefault("clusterIPs", [spec["clusterIP"]])
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
        used = {p.get("nodePort") for svc in existing
                if svc["metadata"]["name"] != name
                or svc["metadata"].get("namespace") != obj["metadata"].get("namespace")
                for p in (svc.get("spec") or {}).get("ports") or ()}
        old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                     for p in old_spec.get("ports") or ()}
        causes = []
        for n, port in enumerate(spec.get("ports") or []):
            if "port" not in port:
                causes.append(Cause(reason="FieldValueRequired", message="Required value",
                                    field=f"spec.ports[{n}].port"))
                continue
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port["port"])
            if stype in ("NodePort", "LoadBalancer"):
                if "nodePort" in port:
                    if port["nodePort"] in used:
                        causes.append(Cause(
                            reason="FieldValueInvalid",
                            message=f"Invalid value: {port['nodePort']}: provided port is "
                            "already allocated", field=f"spec.ports[{n}].nodePort"))
                else:
                    port["nodePort"] = old_ports.get((port["port"], port["protocol"])) or next(
                        p for p in NODE_PORT_RANGE if p not in used)
                used.add(port["nodePort"])
        if causes:
            raise errors.invalid(group="", kind="Service", name=name, causes=causes)
        if stype == "LoadBalancer":
            obj.setdefault("status", {}).setdefault("loadBalancer", {})
        else:
            obj.setdefault("status", {"loadBalancer": {}})
        return obj

    def _secret(self, rt: ResourceType, obj: dict[str, Any], **_: Any) -> dict[str, Any]:
        string_data = obj.pop("stringData", None) or {}
        data = obj.setdefault("data", {}) if string_data or "data" in obj else None
        if data is not None:
            for k, v in string_data.items():
                data[k] = base64.b64encode(str(v).encode()).decode()
        if not obj.get("type"):
            obj["type"] = "Opaque"
        return obj

    def _customresourcedefinition(self, rt: ResourceType, obj: dict[str, Any],
                                  **_: Any) -> dict[str, Any]:
        return admit_crd(obj)


def _label_causes(md: dict[str, Any]) -> list[Cause]:
    causes = []
    for what in ("labels", "annotations"):
        values = md.get(what)
        if values is None:
            continue
        if not isinstance(values, dict):
            causes.append(Cause(reason="FieldValueTypeInvalid", message="must be a map",
                                field=f"metadata.{what}"))
            continue
        for k, v in values.items():
            if not isinstance(v, str):
                causes.append(Cause(reason="FieldValueTypeInvalid",
                                    message=f"Invalid value: {v!r}: must be a string",
                                    field=f"metadata.{what}.{k}"))
            elif what == "labels" and (len(v) > 63 or (v and name_problem(
                    v.lower().replace("_", "-").replace(".", "-"), label=True))):
                causes.append(Cause(reason="FieldValueInvalid",
                                    message=f'Invalid value: "{v}": a valid label must be an '
                                    "empty string or consist of alphanumeric characters, "
                                    "'-', '_' or '.', and must start and end with an "
                                    "alphanumeric character", field="metadata.labels"))
    return causes


def _pod_spec_causes(spec: dict[str, Any], where: str) -> list[Cause]:
    containers = spec.get("containers")
    if not containers:
        return [Cause(reason="FieldValueRequired", message="Required value",
                      field=f"{where}.containers")]
    causes = []
    seen = set()
    for n, c in enumerate(containers):
        if not isinstance(c, dict) or not c.get("name"):
            causes.append(Cause(reason="FieldValueRequired", message="Required value",
                                field=f"{where}.containers[{n}].name"))
            continue
        if c["name"] in seen:
            causes.append(Cause(reason="FieldValueDuplicate",
                                message=f'Duplicate value: "{c["name"]}"',
                                field=f"{where}.containers[{n}].name"))
        seen.add(c["name"])
    return causes


def _default_pod_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        if not isinstance(c, dict):
            continue
        image = str(c.get("image", ""))
        c.setdefault("imagePullPolicy",
                     "Always" if image.endswith(":latest") or ":" not in image else "IfNotPresent")
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        for port in c.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")


def admit_crd(obj: dict[str, Any]) -> dict[str, Any]:
    """Validate a CustomResourceDefinition and give it the status of an established one."""
    name = obj["metadata"]["name"]
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    causes = []
    for fld in ("group", "scope"):
        if not spec.get(fld):
            causes.append(Cause(reason="FieldValueRequired", message="Required value",
                                field=f"spec.{fld}"))
    if spec.get("scope") and spec["scope"] not in ("Namespaced", "Cluster"):
        causes.append(Cause(reason="FieldValueNotSupported",
                            message=f'Unsupported value: "{spec["scope"]}": supported values: '
                            '"Cluster", "Namespaced"', field="spec.scope"))
    for fld in ("plural", "kind"):
        if not names.get(fld):
            causes.append(Cause(reason="FieldValueRequired", message="Required value",
                                field=f"spec.names.{fld}"))
    if names.get("plural") and spec.get("group") and name != f"{names['plural']}.{spec['group']}":
        causes.append(Cause(reason="FieldValueInvalid",
                            message=f'Invalid value: "{name}": must be spec.names.plural+"."+'
                            "spec.group", field="metadata.name"))
    versions = spec.get("versions") or []
    if not versions:
        causes.append(Cause(reason="FieldValueRequired", message="Required value",
                            field="spec.versions"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        causes.append(Cause(reason="FieldValueInvalid",
                            message="Invalid value: must have exactly one version marked as "
                            "storage version", field="spec.versions"))
    for n, v in enumerate(versions):
        s = (v.get("schema") or {}).get("openAPIV3Schema")
        if s is None:
            causes.append(Cause(reason="FieldValueRequired",
                                message="Required value: schemas are required",
                                field=f"spec.versions[{n}].schema.openAPIV3Schema"))
        for c in v.get("additionalPrinterColumns") or []:
            if not c.get("name") or not c.get("jsonPath"):
                causes.append(Cause(reason="FieldValueRequired", message="Required value",
                                    field=f"spec.versions[{n}].additionalPrinterColumns"))
    if causes:
        raise errors.invalid(group="apiextensions.k8s.io", kind="CustomResourceDefinition",
                             name=name, causes=causes)
    crd_resource_types(obj)  # raises nothing once the fields above are there
    return obj


def crd_status(obj: dict[str, Any], when: str) -> dict[str, Any]:
    """The status of an established CRD whose names are accepted."""
    spec = obj["spec"]
    names = dict(spec["names"])
    names.setdefault("singular", names["kind"].lower())
    names.setdefault("listKind", names["kind"] + "List")
    stored = [v["name"] for v in spec["versions"] if v.get("storage")]
    old = obj.get("status") or {}
    return {
        "acceptedNames": names,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": when},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": when},
        ],
        "storedVersions": sorted(set(old.get("storedVersions") or []) | set(stored)),
    }
