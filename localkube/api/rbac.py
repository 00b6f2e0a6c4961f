"""Kubernetes RBAC decisions. Purely computational: the RBAC objects come in as dicts.

A request is described by ``Attributes`` (who, verb, and either a resource with its
API group, subresource, namespace and name, or a non-resource URL path). It is
allowed when a rule of a role bound to the user (or one of the user's groups, or
the user's ServiceAccount) matches it, as Kubernetes' RBAC authorizer decides:

- a ``RoleBinding`` grants its role's rules in its own namespace (it may refer to a
  ``ClusterRole``: that role's rules, in the binding's namespace only); a
  ``ClusterRoleBinding`` grants a ``ClusterRole``'s rules in every namespace and for
  cluster-scoped resources and non-resource URLs;
- a rule matches when its ``verbs``, ``apiGroups`` and ``resources`` match (``*``
  matches anything; ``pods/log`` names a subresource, ``*/scale`` any resource's
  subresource, ``pods`` never ``pods/log``), and, if it has ``resourceNames``, the
  request names one of them (so ``list``, ``watch``, ``create`` and
  ``deletecollection`` without a name never match such a rule);
- ``nonResourceURLs`` match the path exactly, or by a trailing ``*`` prefix.

Users in ``system:masters`` may do everything (as Kubernetes' privileged-group
authorizer ahead of RBAC). Every authenticated user has the rules of Kubernetes'
bootstrap roles ``system:discovery``, ``system:basic-user`` and
``system:public-info-viewer`` (``BOOTSTRAP_RULES``): discovery, /version, health
checks, and the self-reviews. Roles are not aggregated (``aggregationRule`` is
ignored: localkube has no controller filling in aggregated ClusterRoles).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS = "system:anonymous"
SA_PREFIX = "system:serviceaccount:"

JsonObj = Mapping[str, Any]


@dataclass(frozen=True)
class UserInfo:
    """Who is asking, as authentication found out."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"username": self.name, "groups": list(self.groups)}
        if self.uid:
            out["uid"] = self.uid
        return out


def service_account_user(namespace: str, name: str, uid: str = "") -> UserInfo:
    """The user a ServiceAccount's token authenticates as, with Kubernetes' groups."""
    return UserInfo(name=f"{SA_PREFIX}{namespace}:{name}", uid=uid,
                    groups=("system:serviceaccounts", f"system:serviceaccounts:{namespace}",
                            AUTHENTICATED))


def service_account_of(username: str) -> tuple[str, str] | None:
    """(namespace, name) when ``username`` is a ServiceAccount's, else None."""
    if not username.startswith(SA_PREFIX):
        return None
    parts = username[len(SA_PREFIX):].split(":")
    if len(parts) != 2 or not all(parts):
        return None
    return parts[0], parts[1]


@dataclass(frozen=True, kw_only=True)
class Attributes:
    """One request as the authorizer sees it."""

    user: UserInfo
    verb: str
    resource_request: bool = True
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""


@dataclass(frozen=True)
class Rule:
    """One PolicyRule."""

    verbs: tuple[str, ...]
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    @classmethod
    def of(cls, rule: JsonObj) -> Rule:
        def strs(key: str) -> tuple[str, ...]:
            value = rule.get(key) or ()
            return tuple(str(v) for v in value) if isinstance(value, list | tuple) else ()
        return cls(verbs=strs("verbs"), api_groups=strs("apiGroups"),
                   resources=strs("resources"), resource_names=strs("resourceNames"),
                   non_resource_urls=strs("nonResourceURLs"))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"verbs": list(self.verbs)}
        if self.non_resource_urls:
            out["nonResourceURLs"] = list(self.non_resource_urls)
            return out
        out["apiGroups"] = list(self.api_groups)
        out["resources"] = list(self.resources)
        if self.resource_names:
            out["resourceNames"] = list(self.resource_names)
        return out

    def matches(self, a: Attributes) -> bool:
        if not _has(self.verbs, a.verb):
            return False
        if not a.resource_request:
            return any(u in (a.path, "*") or (u.endswith("*") and a.path.startswith(u[:-1]))
                       for u in self.non_resource_urls)
        if not _has(self.api_groups, a.api_group):
            return False
        if not _resource_matches(self.resources, a.resource, a.subresource):
            return False
        return not self.resource_names or a.name in self.resource_names


def _has(values: Sequence[str], wanted: str) -> bool:
    return "*" in values or wanted in values


def _resource_matches(resources: Sequence[str], resource: str, sub: str) -> bool:
    combined = f"{resource}/{sub}" if sub else resource
    for r in resources:
        if r in ("*", combined):
            return True
        if sub and r == f"*/{sub}":
            return True
    return False


# Kubernetes' bootstrap policy for every authenticated user (system:discovery,
# system:basic-user, system:public-info-viewer), as rules rather than objects.
BOOTSTRAP_RULES: tuple[Rule, ...] = (
    Rule(verbs=("get",), non_resource_urls=(
        "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/readyz", "/version",
        "/version/", "/openapi", "/openapi/*")),
    Rule(verbs=("create",), api_groups=("authorization.k8s.io",),
         resources=("selfsubjectaccessreviews", "selfsubjectrulesreviews")),
    Rule(verbs=("create",), api_groups=("authentication.k8s.io",),
         resources=("selfsubjectreviews",)),
)
# What anyone may read without a token (Kubernetes' system:public-info-viewer), plus
# localkube's own endpoints for Prometheus' service discovery and its statistics.
PUBLIC_RULES: tuple[Rule, ...] = (
    Rule(verbs=("get",), non_resource_urls=(
        "/healthz", "/livez", "/readyz", "/version", "/version/", "/localkube/v1/*")),
)


@dataclass(frozen=True)
class Policy:
    """The RBAC objects of the cluster (lists of plain objects)."""

    roles: Sequence[JsonObj] = ()
    cluster_roles: Sequence[JsonObj] = ()
    role_bindings: Sequence[JsonObj] = ()
    cluster_role_bindings: Sequence[JsonObj] = ()
    _index: dict[tuple[str, str, str], list[Rule]] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for r in self.roles:
            md = r.get("metadata") or {}
            self._index[("Role", str(md.get("namespace", "")), str(md.get("name", "")))] = [
                Rule.of(x) for x in r.get("rules") or [] if isinstance(x, Mapping)]
        for r in self.cluster_roles:
            md = r.get("metadata") or {}
            self._index[("ClusterRole", "", str(md.get("name", "")))] = [
                Rule.of(x) for x in r.get("rules") or [] if isinstance(x, Mapping)]

    def _role_rules(self, ref: JsonObj, namespace: str) -> list[Rule]:
        kind = str(ref.get("kind", ""))
        name = str(ref.get("name", ""))
        if kind == "ClusterRole":
            return self._index.get(("ClusterRole", "", name), [])
        if kind == "Role":
            return self._index.get(("Role", namespace, name), [])
        return []

    def rules_for(self, user: UserInfo, namespace: str) -> list[Rule]:
        """Every rule that applies to ``user`` in ``namespace`` ("" : cluster-wide only)."""
        out = list(BOOTSTRAP_RULES) if AUTHENTICATED in user.groups else []
        for b in self.cluster_role_bindings:
            if _binds(b, user):
                out += self._role_rules(b.get("roleRef") or {}, "")
        if namespace:
            for b in self.role_bindings:
                ns = str((b.get("metadata") or {}).get("namespace", ""))
                if ns == namespace and _binds(b, user, binding_namespace=ns):
                    out += self._role_rules(b.get("roleRef") or {}, ns)
        return out

    def allows(self, a: Attributes) -> bool:
        if MASTERS in a.user.groups:
            return True
        rules: Iterable[Rule]
        if a.user.name == ANONYMOUS:
            rules = PUBLIC_RULES
        else:
            rules = [*PUBLIC_RULES, *self.rules_for(
                a.user, a.namespace if a.resource_request else "")]
        return any(rule.matches(a) for rule in rules)


def _binds(binding: JsonObj, user: UserInfo, *, binding_namespace: str = "") -> bool:
    for s in binding.get("subjects") or []:
        if not isinstance(s, Mapping):
            continue
        kind, name = s.get("kind"), s.get("name")
        if kind == "User" and name == user.name:
            return True
        if kind == "Group" and name in user.groups:
            return True
        if kind == "ServiceAccount":
            ns = s.get("namespace") or binding_namespace
            if user.name == f"{SA_PREFIX}{ns}:{name}":
                return True
    return False


def forbidden_message(a: Attributes) -> str:
    """Kubernetes' wording of a 403."""
    who = f'User "{a.user.name}" cannot {a.verb}'
    if not a.resource_request:
        return f'{who} path "{a.path}"'
    res = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    where = f'in the namespace "{a.namespace}"' if a.namespace else "at the cluster scope"
    return f'{who} resource "{res}" in API group "{a.api_group}" {where}'


def request_verb(method: str, *, has_name: bool, watch: bool) -> str:
    """The RBAC verb of a resource request."""
    if method in {"GET", "HEAD"}:
        if watch:
            return "watch"
        return "get" if has_name else "list"
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "delete" if has_name else "deletecollection"
    return method.lower()
