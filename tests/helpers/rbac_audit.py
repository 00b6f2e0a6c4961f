"""What brix's ServiceAccounts are granted (rendered from k8s/base) and what they used
(localkube's audit log), as {account: {(apiGroup, resource[/subresource]): verbs}}."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

Grants = dict[str, dict[tuple[str, str], set[str]]]
SA_PREFIX = "system:serviceaccount:"


def granted(objects: Iterable[dict[str, Any]]) -> Grants:
    """Per ServiceAccount (``namespace:name``), what its bound roles grant."""
    objects = list(objects)
    roles = {(o["kind"], o["metadata"]["name"]): o for o in objects
             if o["kind"] in ("Role", "ClusterRole")}
    out: Grants = defaultdict(lambda: defaultdict(set))
    for binding in (o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        role = roles[(binding["roleRef"]["kind"], binding["roleRef"]["name"])]
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount", subject
            account = f"{subject['namespace']}:{subject['name']}"
            for rule in role["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        out[account][(group, resource)] |= set(rule["verbs"])
    return out


def used(records: Iterable[dict[str, Any]]) -> tuple[Grants, list[dict[str, Any]]]:
    """Per ServiceAccount, the resource requests it made (allowed or not), and the
    requests that were refused (403)."""
    out: Grants = defaultdict(lambda: defaultdict(set))
    refused = []
    for rec in records:
        user = str(rec.get("user", ""))
        if not user.startswith(SA_PREFIX) or "resource" not in rec:
            continue
        account = user[len(SA_PREFIX):]
        resource = rec["resource"] + (f"/{rec['subresource']}" if rec["subresource"] else "")
        out[account][(rec["apiGroup"], resource)].add(rec["verb"])
        if rec.get("decision") == "forbid":
            refused.append(rec)
    return out, refused


def differences(grants: Grants, uses: Grants, accounts: Iterable[str]
                ) -> dict[str, dict[str, dict[tuple[str, str], list[str]]]]:
    """For each account: what it was granted and never used, and what it used and lacks."""
    out = {}
    for account in accounts:
        have, did = grants.get(account, {}), uses.get(account, {})
        unused = {k: sorted(v - did.get(k, set())) for k, v in have.items()
                  if v - did.get(k, set())}
        lacking = {k: sorted(v - have.get(k, set())) for k, v in did.items()
                   if v - have.get(k, set())}
        if unused or lacking:
            out[account] = {"granted, never used": unused, "used, not granted": lacking}
    return out
