"""RBAC decisions, with the examples of Kubernetes' "Using RBAC Authorization" page."""

from __future__ import annotations

from typing import Any

import pytest

from localkube.api.rbac import (
    Attributes,
    Policy,
    UserInfo,
    forbidden_message,
    request_verb,
    service_account_user,
)

pytestmark = pytest.mark.unit

G = "rbac.authorization.k8s.io"


def role(name: str, ns: str, *rules: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "Role", "metadata": {"name": name, "namespace": ns}, "rules": list(rules)}


def cluster_role(name: str, *rules: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "ClusterRole", "metadata": {"name": name}, "rules": list(rules)}


def binding(name: str, ns: str | None, kind: str, role_name: str,
            *subjects: dict[str, Any]) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name}
    if ns is not None:
        md["namespace"] = ns
    return {"metadata": md, "roleRef": {"apiGroup": G, "kind": kind, "name": role_name},
            "subjects": list(subjects)}


JANE = UserInfo(name="jane", groups=("system:authenticated",))
DAVE = UserInfo(name="dave", groups=("system:authenticated",))
MANAGER = UserInfo(name="manager", groups=("manager", "system:authenticated"))

# The page's examples: pod-reader (Role, default), read-pods (RoleBinding to jane),
# secret-reader (ClusterRole) bound by a RoleBinding to dave in development, and by a
# ClusterRoleBinding to the group manager everywhere.
POLICY = Policy(
    roles=[role("pod-reader", "default",
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "watch", "list"]})],
    cluster_roles=[
        cluster_role("secret-reader", {"apiGroups": [""], "resources": ["secrets"],
                                       "verbs": ["get", "watch", "list"]}),
        cluster_role("configmap-updater", {"apiGroups": [""], "resources": ["configmaps"],
                                           "resourceNames": ["my-configmap"],
                                           "verbs": ["update", "get"]}),
        cluster_role("pod-and-pod-logs-reader", {"apiGroups": [""],
                                                 "resources": ["pods", "pods/log"],
                                                 "verbs": ["get", "list"]}),
        cluster_role("health", {"nonResourceURLs": ["/healthz", "/healthz/*"],
                                "verbs": ["get", "post"]}),
        cluster_role("any-scale", {"apiGroups": ["apps"], "resources": ["*/scale"],
                                   "verbs": ["patch"]}),
    ],
    role_bindings=[
        binding("read-pods", "default", "Role", "pod-reader",
                {"kind": "User", "name": "jane", "apiGroup": G}),
        binding("read-secrets", "development", "ClusterRole", "secret-reader",
                {"kind": "User", "name": "dave", "apiGroup": G}),
        binding("update-cm", "default", "ClusterRole", "configmap-updater",
                {"kind": "ServiceAccount", "name": "cm", "namespace": "default"}),
        binding("logs", "team", "ClusterRole", "pod-and-pod-logs-reader",
                {"kind": "Group", "name": "system:serviceaccounts:team", "apiGroup": G}),
        binding("scale", "team", "ClusterRole", "any-scale",
                {"kind": "ServiceAccount", "name": "scaler"}),  # namespace: the binding's
    ],
    cluster_role_bindings=[
        binding("read-secrets-global", None, "ClusterRole", "secret-reader",
                {"kind": "Group", "name": "manager", "apiGroup": G}),
        binding("health", None, "ClusterRole", "health",
                {"kind": "Group", "name": "system:authenticated", "apiGroup": G}),
    ],
)


def res(user: UserInfo, verb: str, resource: str, ns: str = "", *, group: str = "",
        sub: str = "", name: str = "") -> Attributes:
    return Attributes(user=user, verb=verb, api_group=group, resource=resource,
                      subresource=sub, namespace=ns, name=name)


def test_a_role_binding_grants_its_role_in_its_namespace_only() -> None:
    assert POLICY.allows(res(JANE, "list", "pods", "default"))
    assert POLICY.allows(res(JANE, "get", "pods", "default", name="p"))
    assert not POLICY.allows(res(JANE, "delete", "pods", "default", name="p"))
    assert not POLICY.allows(res(JANE, "list", "pods", "other"))
    assert not POLICY.allows(res(JANE, "list", "pods"))  # all namespaces
    assert not POLICY.allows(res(JANE, "list", "secrets", "default"))


def test_a_role_binding_to_a_cluster_role_grants_it_in_the_binding_namespace() -> None:
    assert POLICY.allows(res(DAVE, "get", "secrets", "development", name="s"))
    assert not POLICY.allows(res(DAVE, "get", "secrets", "default", name="s"))


def test_a_cluster_role_binding_grants_everywhere() -> None:
    assert POLICY.allows(res(MANAGER, "list", "secrets", "anywhere"))
    assert POLICY.allows(res(MANAGER, "list", "secrets"))  # across namespaces


def test_resource_names_match_only_requests_that_name_the_object() -> None:
    cm = service_account_user("default", "cm")
    assert POLICY.allows(res(cm, "update", "configmaps", "default", name="my-configmap"))
    assert not POLICY.allows(res(cm, "update", "configmaps", "default", name="other"))
    assert not POLICY.allows(res(cm, "list", "configmaps", "default"))


def test_subresources_are_named_apart() -> None:
    reader = service_account_user("team", "anyone")  # by its group
    assert POLICY.allows(res(reader, "get", "pods", "team", sub="log", name="p"))
    assert POLICY.allows(res(reader, "list", "pods", "team"))
    jane_logs = res(JANE, "get", "pods", "default", sub="log", name="p")
    assert not POLICY.allows(jane_logs)  # pods does not grant pods/log
    scaler = service_account_user("team", "scaler")
    assert POLICY.allows(res(scaler, "patch", "deployments", "team", group="apps", sub="scale",
                             name="d"))
    assert not POLICY.allows(res(scaler, "patch", "deployments", "team", group="apps",
                                 name="d"))
    assert not POLICY.allows(res(scaler, "patch", "deployments", "team", sub="scale",
                                 name="d"))  # another API group


def test_non_resource_urls_exactly_or_by_prefix() -> None:
    def path(p: str, verb: str = "get") -> Attributes:
        return Attributes(user=JANE, verb=verb, resource_request=False, path=p)
    assert POLICY.allows(path("/healthz/etcd", "post"))
    assert POLICY.allows(path("/api"))  # system:discovery, for every authenticated user
    assert not POLICY.allows(path("/metrics"))
    assert not POLICY.allows(path("/api", "post"))


def test_masters_may_do_everything_and_anonymous_only_public_paths() -> None:
    admin = UserInfo(name="admin", groups=("system:masters",))
    assert POLICY.allows(res(admin, "delete", "nodes", name="n"))
    anonymous = UserInfo(name="system:anonymous", groups=("system:unauthenticated",))
    assert POLICY.allows(Attributes(user=anonymous, verb="get", resource_request=False,
                                    path="/readyz"))
    assert not POLICY.allows(Attributes(user=anonymous, verb="get", resource_request=False,
                                        path="/api"))


def test_service_accounts_get_kubernetes_groups_and_rules_reviews_list_what_applies() -> None:
    sa = service_account_user("team", "scaler")
    assert sa.name == "system:serviceaccount:team:scaler"
    assert sa.groups == ("system:serviceaccounts", "system:serviceaccounts:team",
                         "system:authenticated")
    rules = [r.to_dict() for r in POLICY.rules_for(sa, "team")]
    assert {"verbs": ["patch"], "apiGroups": ["apps"], "resources": ["*/scale"]} in rules
    assert {"verbs": ["get", "list"], "apiGroups": [""],
            "resources": ["pods", "pods/log"]} in rules
    assert not [r for r in POLICY.rules_for(sa, "default") if r.resources == ("*/scale",)]


def test_forbidden_messages_read_as_kubernetes_writes_them() -> None:
    assert forbidden_message(res(JANE, "list", "deployments", "ns", group="apps")) == (
        'User "jane" cannot list resource "deployments" in API group "apps" in the '
        'namespace "ns"')
    assert forbidden_message(res(JANE, "patch", "deployments", group="apps", sub="scale")) == (
        'User "jane" cannot patch resource "deployments/scale" in API group "apps" at the '
        "cluster scope")
    assert forbidden_message(Attributes(user=JANE, verb="get", resource_request=False,
                                        path="/metrics")) == (
        'User "jane" cannot get path "/metrics"')


@pytest.mark.parametrize(("method", "named", "watch", "verb"), [
    ("GET", True, False, "get"), ("GET", False, False, "list"), ("GET", False, True, "watch"),
    ("POST", False, False, "create"), ("PUT", True, False, "update"),
    ("PATCH", True, False, "patch"), ("DELETE", True, False, "delete"),
    ("DELETE", False, False, "deletecollection"),
])
def test_request_verbs(method: str, named: bool, watch: bool, verb: str) -> None:
    assert request_verb(method, has_name=named, watch=watch) == verb
