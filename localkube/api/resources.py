"""The kinds localkube serves: built-ins, and custom resources from CRDs.

A ``ResourceType`` is one resource of one group/version as discovery
describes it. Objects are stored per (group, plural), whatever version they
were written through (localkube does no conversion between versions).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True, kw_only=True)
class ScalePaths:
    """Where a resource keeps what its ``scale`` subresource shows (JSON paths, dotted)."""

    spec_replicas: str = ".spec.replicas"
    status_replicas: str = ".status.replicas"
    label_selector: str | None = ".status.selector"


@dataclass(frozen=True, kw_only=True)
class PrinterColumn:
    """One ``additionalPrinterColumns`` entry of a CRD version."""

    name: str
    type: str
    json_path: str
    description: str = ""
    priority: int = 0
    format: str = ""


@dataclass(frozen=True, kw_only=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status: bool = False  # has a status subresource
    scale: ScalePaths | None = None
    log: bool = False  # pods/log
    binding: bool = False  # pods/binding
    token: bool = False  # serviceaccounts/token (TokenRequest)
    # Custom resources only:
    schema: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    printer_columns: tuple[PrinterColumn, ...] = ()
    custom: bool = False
    # Reviews (access, identity) are answered, not stored: their only verb is create.
    review: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def subresources(self) -> list[str]:
        out = []
        if self.status:
            out.append("status")
        if self.scale is not None:
            out.append("scale")
        if self.log:
            out.append("log")
        if self.binding:
            out.append("binding")
        if self.token:
            out.append("token")
        return out


def _core(plural: str, kind: str, *, namespaced: bool = True, short: tuple[str, ...] = (),
          status: bool = False, **kw: Any) -> ResourceType:
    return ResourceType(group="", version="v1", plural=plural, kind=kind, namespaced=namespaced,
                        singular=kind.lower(), short_names=short, status=status, **kw)


def _g(group: str, version: str, plural: str, kind: str, *, namespaced: bool = True,
       short: tuple[str, ...] = (), status: bool = False, **kw: Any) -> ResourceType:
    return ResourceType(group=group, version=version, plural=plural, kind=kind,
                        namespaced=namespaced, singular=kind.lower(), short_names=short,
                        status=status, **kw)


_RBAC = "rbac.authorization.k8s.io"

BUILTINS: tuple[ResourceType, ...] = (
    _core("namespaces", "Namespace", namespaced=False, short=("ns",), status=True),
    _core("pods", "Pod", short=("po",), status=True, log=True, binding=True, categories=("all",)),
    _core("services", "Service", short=("svc",), status=True, categories=("all",)),
    _core("endpoints", "Endpoints", short=("ep",)),
    _core("configmaps", "ConfigMap", short=("cm",)),
    _core("secrets", "Secret"),
    _core("serviceaccounts", "ServiceAccount", short=("sa",), token=True),
    _core("events", "Event", short=("ev",)),
    _core("nodes", "Node", namespaced=False, short=("no",), status=True),
    _core("resourcequotas", "ResourceQuota", short=("quota",), status=True),
    _core("limitranges", "LimitRange", short=("limits",)),
    _core("persistentvolumeclaims", "PersistentVolumeClaim", short=("pvc",), status=True),
    _g("apps", "v1", "deployments", "Deployment", short=("deploy",), status=True,
       scale=ScalePaths(label_selector=".spec.selector"), categories=("all",)),
    _g("apps", "v1", "replicasets", "ReplicaSet", short=("rs",), status=True,
       scale=ScalePaths(label_selector=".spec.selector"), categories=("all",)),
    _g("events.k8s.io", "v1", "events", "Event", short=("ev",)),
    _g("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"),
    _g("coordination.k8s.io", "v1", "leases", "Lease"),
    _g("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
       namespaced=False, short=("crd", "crds"), status=True),
    _g(_RBAC, "v1", "roles", "Role"),
    _g(_RBAC, "v1", "rolebindings", "RoleBinding"),
    _g(_RBAC, "v1", "clusterroles", "ClusterRole", namespaced=False),
    _g(_RBAC, "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
    _g("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler",
       short=("hpa",), status=True, categories=("all",)),
    _g("autoscaling", "v1", "horizontalpodautoscalers", "HorizontalPodAutoscaler",
       short=("hpa",), status=True, categories=("all",)),
    _g("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", short=("netpol",)),
    _g("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", short=("pdb",),
       status=True),
    _g("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview",
       namespaced=False, review=True),
    _g("authorization.k8s.io", "v1", "selfsubjectrulesreviews", "SelfSubjectRulesReview",
       namespaced=False, review=True),
    _g("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview",
       namespaced=False, review=True),
    _g("authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview",
       namespaced=False, review=True),
)

# Preferred version of each group with several (discovery lists it first).
PREFERRED = {"autoscaling": "v2"}


class Registry:
    """The resource types served now: the built-ins plus those of established CRDs."""

    def __init__(self, builtins: Iterable[ResourceType] = BUILTINS) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._by_crd: dict[str, list[ResourceType]] = {}
        for rt in builtins:
            self._types[(rt.group, rt.version, rt.plural)] = rt

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def any_version(self, group: str, plural: str) -> ResourceType | None:
        """A type stored under (group, plural), the preferred version if several."""
        found = [rt for rt in self._types.values() if rt.key == (group, plural)]
        if not found:
            return None
        pref = PREFERRED.get(group)
        for rt in found:
            if rt.version == pref:
                return rt
        return found[0]

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(list(self._types.values()))

    def group_versions(self) -> dict[str, list[str]]:
        """group -> its versions, preferred first (the core group is "")."""
        out: dict[str, list[str]] = {}
        for rt in self._types.values():
            versions = out.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)
        for group, versions in out.items():
            pref = PREFERRED.get(group)
            versions.sort(key=lambda v: (v != pref, _version_order(v)))
        return out

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self._types.values() if (rt.group, rt.version) == (group, version)]

    def set_crd(self, crd_name: str, types: list[ResourceType]) -> None:
        self.remove_crd(crd_name)
        for rt in types:
            self._types[(rt.group, rt.version, rt.plural)] = rt
        self._by_crd[crd_name] = types

    def remove_crd(self, crd_name: str) -> list[ResourceType]:
        types = self._by_crd.pop(crd_name, [])
        for rt in types:
            self._types.pop((rt.group, rt.version, rt.plural), None)
        return types



def _version_order(version: str) -> tuple[int, int, int]:
    """Kubernetes' version priority: GA > beta > alpha, then higher numbers first."""
    import re

    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (3, 0, 0)
    major = int(m.group(1))
    stage = {"alpha": 2, "beta": 1, None: 0}[m.group(2)]
    minor = int(m.group(3) or 0)
    return (stage, -major, -minor)


def crd_resource_types(crd: dict[str, Any]) -> list[ResourceType]:
    """The resource types a CustomResourceDefinition serves (one per served version)."""
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    out = []
    for v in spec.get("versions", []):
        if not v.get("served", True):
            continue
        sub = v.get("subresources") or {}
        scale = sub.get("scale")
        columns = tuple(
            PrinterColumn(
                name=c["name"], type=c.get("type", "string"), json_path=c["jsonPath"],
                description=c.get("description", ""), priority=int(c.get("priority", 0)),
                format=c.get("format", ""),
            )
            for c in v.get("additionalPrinterColumns") or []
        )
        out.append(ResourceType(
            group=spec["group"], version=v["name"], plural=names["plural"], kind=names["kind"],
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            singular=names.get("singular") or names["kind"].lower(),
            short_names=tuple(names.get("shortNames") or ()),
            categories=tuple(names.get("categories") or ()),
            status="status" in sub,
            scale=ScalePaths(
                spec_replicas=scale["specReplicasPath"],
                status_replicas=scale["statusReplicasPath"],
                label_selector=scale.get("labelSelectorPath"),
            ) if scale else None,
            schema=(v.get("schema") or {}).get("openAPIV3Schema"),
            printer_columns=columns,
            custom=True,
        ))
    return out
