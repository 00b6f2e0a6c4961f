"""Only the operator (and the scrapers) reach sidecars; only the gateway reaches engines."""

from __future__ import annotations

from typing import Any

from brix.contract import ENGINE_PORT, MODEL_LABEL, SIDECAR_PORT
from tests.helpers.manifests import render


def _peers_for_port(policy: dict[str, Any], port: int) -> list[dict[str, Any]]:
    peers: list[dict[str, Any]] = []
    for rule in policy["spec"].get("ingress", []):
        if any(p["port"] == port for p in rule.get("ports", [])):
            peers.extend(rule.get("from", []))
    return peers


def _names(peers: list[dict[str, Any]]) -> set[str]:
    out = set()
    for peer in peers:
        pod = peer.get("podSelector", {})
        ns = (
            peer.get("namespaceSelector", {})
            .get("matchLabels", {})
            .get("kubernetes.io/metadata.name")
        )
        if "matchLabels" in pod:
            out.add(f"{ns}/{pod['matchLabels']['app.kubernetes.io/name']}")
        elif pod.get("matchExpressions") == [{"key": MODEL_LABEL, "operator": "Exists"}]:
            out.add("same-namespace/inference-pods")
        elif ns and not pod:
            out.add(f"{ns}/*")
        else:
            raise AssertionError(f"unexpected peer {peer}")
    return out


def test_inference_pods_accept_only_known_peers() -> None:
    policies = [o for o in render("models") if o["kind"] == "NetworkPolicy"]
    (policy,) = [
        p
        for p in policies
        if p["spec"]["podSelector"].get("matchExpressions")
        == [{"key": MODEL_LABEL, "operator": "Exists"}]
    ]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert _names(_peers_for_port(policy, ENGINE_PORT)) == {
        "brix-system/brix-gateway",
        "same-namespace/inference-pods",
    }
    assert _names(_peers_for_port(policy, SIDECAR_PORT)) == {
        "brix-system/brix-gateway",
        "brix-system/brix-lora-operator",
        "monitoring/*",
    }
    ports = {p["port"] for r in policy["spec"]["ingress"] for p in r["ports"]}
    assert ports == {ENGINE_PORT, SIDECAR_PORT}, "no other port of an inference pod is open"


def test_controllers_accept_only_their_callers() -> None:
    policies = {o["metadata"]["name"]: o for o in render("base") if o["kind"] == "NetworkPolicy"}
    assert _names(_peers_for_port(policies["brix-scaler"], 9100)) == {"keda/*"}
    assert _names(_peers_for_port(policies["brix-scaler"], 9101)) == {"monitoring/*"}
    assert policies["brix-lora-operator"]["spec"]["ingress"] == []
