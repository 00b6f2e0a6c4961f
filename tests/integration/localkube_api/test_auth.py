"""Authentication and RBAC authorization, through kubectl, the official client and HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.helpers.localkube import admin_http, anonymous_http, kubeconfig_parts, kubectl
from tests.integration.localkube_api.conftest import Localkube

pytestmark = pytest.mark.integration

RBAC = "rbac.authorization.k8s.io/v1"


@pytest.fixture
def ns(localkube: Localkube) -> str:
    name = f"auth-{uuid.uuid4().hex[:8]}"
    kubectl(localkube.kubeconfig, "create", "namespace", name)
    return name


def grant(localkube: Localkube, ns: str, sa: str, rules: list[dict[str, Any]]) -> None:
    docs = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": ns}},
        {"apiVersion": RBAC, "kind": "Role", "metadata": {"name": sa, "namespace": ns},
         "rules": rules},
        {"apiVersion": RBAC, "kind": "RoleBinding", "metadata": {"name": sa, "namespace": ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sa},
         "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]},
    ]
    kubectl(localkube.kubeconfig, "apply", "-f", "-", input=yaml.safe_dump_all(docs))


def token(localkube: Localkube, ns: str, sa: str) -> str:
    return kubectl(localkube.kubeconfig, "create", "token", sa, "-n", ns).stdout.strip()


@pytest.fixture
def as_sa(localkube: Localkube) -> Iterator[Any]:
    made: list[httpx.Client] = []

    def make(bearer: str) -> httpx.Client:
        c = anonymous_http(localkube.kubeconfig)
        c.headers["Authorization"] = f"Bearer {bearer}"
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def test_no_or_unknown_token_is_401_with_a_status(localkube: Localkube, as_sa: Any) -> None:
    with anonymous_http(localkube.kubeconfig) as anonymous:
        r = anonymous.get("/api/v1/namespaces/default/configmaps")
    assert r.status_code == 401
    assert r.json() == {"kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Failure", "message": "Unauthorized",
                        "reason": "Unauthorized", "code": 401}
    forged = token(localkube, "default", "default")[:-4] + "0000"
    for bad in ("nonsense", forged):
        assert as_sa(bad).get("/api").status_code == 401


def test_a_service_account_may_do_what_its_role_grants(localkube: Localkube, ns: str,
                                                       as_sa: Any) -> None:
    grant(localkube, ns, "reader", [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
         "resourceNames": ["visible"]},
    ])
    kc = localkube.kubeconfig
    kubectl(kc, "create", "configmap", "c", "-n", ns, "--from-literal=a=b")
    for name in ("visible", "hidden"):
        kubectl(kc, "create", "secret", "generic", name, "-n", ns, "--from-literal=k=v")
    sa = as_sa(token(localkube, ns, "reader"))
    assert sa.get(f"/api/v1/namespaces/{ns}/configmaps/c").json()["data"] == {"a": "b"}
    assert sa.get(f"/api/v1/namespaces/{ns}/secrets/visible").status_code == 200
    assert sa.get(f"/api/v1/namespaces/{ns}/secrets/hidden").status_code == 403
    assert sa.get(f"/api/v1/namespaces/{ns}/secrets").status_code == 403  # list: no name
    r = sa.delete(f"/api/v1/namespaces/{ns}/configmaps/c")
    assert r.status_code == 403
    assert r.json()["reason"] == "Forbidden"
    assert r.json()["message"] == (
        f'configmaps "c" is forbidden: User "system:serviceaccount:{ns}:reader" cannot '
        f'delete resource "configmaps" in API group "" in the namespace "{ns}"')
    other = sa.get("/api/v1/namespaces/default/configmaps")
    assert other.status_code == 403
    assert 'in the namespace "default"' in other.json()["message"]
    assert sa.get("/apis/apps/v1/deployments").json()["message"].endswith(
        'cannot list resource "deployments" in API group "apps" at the cluster scope')
    whoami = sa.post("/apis/authentication.k8s.io/v1/selfsubjectreviews",
                     json={"apiVersion": "authentication.k8s.io/v1",
                           "kind": "SelfSubjectReview"}).json()["status"]["userInfo"]
    assert whoami["username"] == f"system:serviceaccount:{ns}:reader"
    assert set(whoami["groups"]) == {"system:serviceaccounts", f"system:serviceaccounts:{ns}",
                                     "system:authenticated"}
    assert sa.get("/api").status_code == 200  # discovery, as system:discovery grants


def test_deleting_the_service_account_revokes_its_tokens(localkube: Localkube, ns: str,
                                                         as_sa: Any) -> None:
    grant(localkube, ns, "brief", [{"apiGroups": [""], "resources": ["configmaps"],
                                    "verbs": ["list"]}])
    sa = as_sa(token(localkube, ns, "brief"))
    assert sa.get(f"/api/v1/namespaces/{ns}/configmaps").status_code == 200
    kubectl(localkube.kubeconfig, "delete", "serviceaccount", "brief", "-n", ns)
    kubectl(localkube.kubeconfig, "create", "serviceaccount", "brief", "-n", ns)
    assert sa.get(f"/api/v1/namespaces/{ns}/configmaps").status_code == 401  # another uid


def test_kubectl_auth_can_i_as_a_service_account(localkube: Localkube, ns: str) -> None:
    grant(localkube, ns, "scaler", [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]},
        {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["patch"]},
    ])
    kc = localkube.kubeconfig
    who = f"--as=system:serviceaccount:{ns}:scaler"

    def can(*args: str) -> str:
        out = kubectl(kc, "auth", "can-i", who, "-n", ns, *args, check=False)
        return out.stdout.strip()

    assert can("list", "deployments.apps") == "yes"
    assert can("patch", "deployments.apps", "--subresource=scale") == "yes"
    assert can("patch", "deployments.apps") == "no"
    assert can("get", "pods") == "no"
    assert kubectl(kc, "auth", "can-i", who, "-n", "default", "list", "deployments.apps",
                   check=False).stdout.strip() == "no"
    listed = kubectl(kc, "auth", "can-i", who, "-n", ns, "--list").stdout
    assert "deployments.apps/scale" in listed
    assert "pods " not in listed
    denied = kubectl(kc, who, "-n", ns, "get", "pods", check=False)
    assert denied.returncode != 0
    assert (f'User "system:serviceaccount:{ns}:scaler" cannot list resource "pods"'
            in denied.stderr)


def test_the_official_client_as_a_service_account(localkube: Localkube, ns: str) -> None:
    grant(localkube, ns, "podreader", [{"apiGroups": [""], "resources": ["pods"],
                                        "verbs": ["list"]}])
    server, _, ca_pem = kubeconfig_parts(localkube.kubeconfig)
    cfg = client.Configuration()
    cfg.host = server
    cfg.api_key = {"authorization": f"Bearer {token(localkube, ns, 'podreader')}"}
    ca_file = localkube.kubeconfig.parent / "tls" / "ca.crt"
    assert ca_file.read_text() == ca_pem
    cfg.ssl_ca_cert = str(ca_file)
    with client.ApiClient(cfg) as api:
        core = client.CoreV1Api(api)
        assert core.list_namespaced_pod(ns).items == []
        with pytest.raises(ApiException) as exc:
            core.list_namespaced_secret(ns)
        assert exc.value.status == 403


def test_impersonation_needs_the_right_to_impersonate(localkube: Localkube, ns: str,
                                                      as_sa: Any) -> None:
    grant(localkube, ns, "plain", [{"apiGroups": [""], "resources": ["configmaps"],
                                    "verbs": ["list"]}])
    sa = as_sa(token(localkube, ns, "plain"))
    r = sa.get(f"/api/v1/namespaces/{ns}/configmaps",
               headers={"Impersonate-User": "kubernetes-admin"})
    assert r.status_code == 403
    assert "cannot impersonate" in r.json()["message"]
    with admin_http(localkube.kubeconfig) as admin:
        r = admin.get(f"/api/v1/namespaces/{ns}/secrets",
                      headers={"Impersonate-User": f"system:serviceaccount:{ns}:plain"})
    assert r.status_code == 403


def test_subject_access_reviews_answer_for_another_user(localkube: Localkube, ns: str) -> None:
    grant(localkube, ns, "viewer", [{"apiGroups": [""], "resources": ["services"],
                                     "verbs": ["get"]}])
    user = f"system:serviceaccount:{ns}:viewer"
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"]

    def review(verb: str) -> dict[str, Any]:
        with admin_http(localkube.kubeconfig) as admin:
            r = admin.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json={
                "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": {"user": user, "groups": groups, "resourceAttributes": {
                    "namespace": ns, "verb": verb, "resource": "services", "name": "s"}}})
        assert r.status_code == 201, r.text
        status: dict[str, Any] = r.json()["status"]
        return status

    assert review("get")["allowed"] is True
    assert review("delete")["allowed"] is False
    with admin_http(localkube.kubeconfig) as admin:
        bad = admin.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json={
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}}})
    assert bad.status_code == 400
    assert "spec.user" in bad.json()["message"]


def test_bad_token_and_review_requests_are_clear_errors(localkube: Localkube, ns: str) -> None:
    kubectl(localkube.kubeconfig, "create", "serviceaccount", "sa", "-n", ns)
    base = f"/api/v1/namespaces/{ns}/serviceaccounts"
    with admin_http(localkube.kubeconfig) as admin:
        short = admin.post(f"{base}/sa/token", json={"spec": {"expirationSeconds": 5}})
        assert short.status_code == 400
        assert "expirationSeconds" in short.json()["message"]
        missing = admin.post(f"{base}/nobody/token", json={"spec": {}})
        assert missing.status_code == 404
        assert missing.json()["reason"] == "NotFound"
        empty = admin.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", json={
            "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {}})
        assert empty.status_code == 400
        assert "resourceAttributes" in empty.json()["message"]
