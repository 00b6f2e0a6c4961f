"""RBAC is least-privilege: no wildcard, and each workload under its own account.

That each account is granted exactly what its component uses is checked against
what the components really do: the end-to-end flows run every component under its
ServiceAccount on localkube, which enforces RBAC and writes an audit log, and
``tests/e2e/test_sim_stack.py::test_each_account_used_exactly_what_its_role_grants``
compares the log with the Roles rendered here.
"""

from __future__ import annotations

from brix.contract import MODEL_LABEL
from tests.helpers.manifests import render
from tests.helpers.rbac_audit import granted


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


def test_only_brix_accounts_are_bound() -> None:
    assert set(granted(render("base"))) == {
        "brix-system:brix-gateway", "brix-system:brix-lora-operator", "brix-system:brix-scaler"}


def test_each_workload_runs_as_its_own_account() -> None:
    for obj in render("base"):
        if obj["kind"] == "Deployment":
            assert obj["spec"]["template"]["spec"]["serviceAccountName"] == obj["metadata"]["name"]
    for overlay in ("models", "overlays/gpu"):
        for obj in render(overlay):
            if obj["kind"] == "Deployment" and MODEL_LABEL in obj["metadata"]["labels"]:
                # inference pods need no API access
                assert obj["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
