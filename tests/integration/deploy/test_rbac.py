"""RBAC is least-privilege: no wildcard, and no verb a component does not use.

``USES`` is the specification: each (component, apiGroup, resource) with the
verbs the component's code calls and why. The rendered ClusterRoles and Roles
must grant exactly these, no more and no fewer.
"""

from __future__ import annotations

from collections import defaultdict

from brix.contract import MODEL_LABEL
from tests.helpers.manifests import render

USES: dict[str, dict[tuple[str, str], set[str]]] = {
    "brix-gateway": {
        ("", "pods"): {"get", "list", "watch"},  # discovery of model pods
        ("apps", "deployments"): {"get", "list", "watch"},  # "exists, no ready pod" -> hold
        ("brix.dev", "loraadapters"): {"get", "list", "watch"},  # adapter -> loadedPods
    },
    "brix-lora-operator": {
        ("brix.dev", "loraadapters"): {"get", "list", "watch", "patch"},  # finalizer, Kopf state
        ("brix.dev", "loraadapters/status"): {"get", "patch"},  # status from observation
        ("", "pods"): {"get", "list", "watch"},  # pods of base models
        ("", "events"): {"create"},  # load/unload/failure
        ("events.k8s.io", "events"): {"create"},
        ("kopf.dev", "clusterkopfpeerings"): {
            "get",
            "list",
            "watch",
            "patch",
            "create",  # the operator creates its peering object at start
        },  # one active replica
        ("apiextensions.k8s.io", "customresourcedefinitions"): {
            "get",
            "list",
            "watch",
        },  # Kopf scan
    },
    "brix-scaler": {
        ("apps", "deployments"): {"get", "list", "watch"},  # annotated Deployments
        ("apps", "deployments/scale"): {"get", "patch"},  # the only write path
        ("autoscaling", "horizontalpodautoscalers"): {"get", "list", "watch"},  # skip HPA targets
        ("", "events"): {"create"},  # decisions
        ("coordination.k8s.io", "leases"): {"get", "create", "update"},  # leader election
    },
}


def _granted() -> dict[str, dict[tuple[str, str], set[str]]]:
    objects = render("base")
    roles = {
        (o["kind"], o["metadata"]["name"]): o
        for o in objects
        if o["kind"] in ("Role", "ClusterRole")
    }
    granted: dict[str, dict[tuple[str, str], set[str]]] = defaultdict(lambda: defaultdict(set))
    for binding in (o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        role = roles[(binding["roleRef"]["kind"], binding["roleRef"]["name"])]
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount"
            for rule in role["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        granted[subject["name"]][(group, resource)] |= set(rule["verbs"])
    return granted


def test_no_wildcards_anywhere() -> None:
    for obj in render("base"):
        if obj["kind"] not in ("Role", "ClusterRole"):
            continue
        for rule in obj["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(field, []), (
                    f"{obj['metadata']['name']}: wildcard {field}"
                )
            assert "nonResourceURLs" not in rule
            assert "resourceNames" not in rule or rule["resourceNames"]


def test_each_component_gets_exactly_what_it_uses() -> None:
    granted = _granted()
    assert set(granted) == set(USES), "a ServiceAccount is bound that no component uses, or missing"
    for account, uses in USES.items():
        have = {k: v for k, v in granted[account].items()}
        extra = {
            k: sorted(v - uses.get(k, set())) for k, v in have.items() if v - uses.get(k, set())
        }
        missing = {
            k: sorted(v - have.get(k, set())) for k, v in uses.items() if v - have.get(k, set())
        }
        assert not extra, f"{account} is granted verbs it does not use: {extra}"
        assert not missing, f"{account} lacks verbs it uses: {missing}"


def test_each_workload_runs_as_its_own_account() -> None:
    for obj in render("base"):
        if obj["kind"] == "Deployment":
            assert obj["spec"]["template"]["spec"]["serviceAccountName"] == obj["metadata"]["name"]
    for overlay in ("models", "overlays/gpu"):
        for obj in render(overlay):
            if obj["kind"] == "Deployment" and MODEL_LABEL in obj["metadata"]["labels"]:
                # inference pods need no API access
                assert obj["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
