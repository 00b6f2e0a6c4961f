"""Endpoints and EndpointSlices built from a Service and its pods."""

from __future__ import annotations

from typing import Any

from localkube.node.endpoints import (
    SERVICE_NAME_LABEL,
    build_endpoints,
    build_slices,
    selector_matches,
    service_pods,
)

SERVICE: dict[str, Any] = {
    "metadata": {"name": "web", "namespace": "default", "uid": "s1"},
    "spec": {"selector": {"app": "web"},
             "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
}


def pod(name: str, ip: str | None, *, ready: bool, app: str = "web", port: int = 8000,
        ns: str = "default", deleting: bool = False, phase: str = "Running") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "uid": f"u-{name}",
                            "labels": {"app": app}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status: dict[str, Any] = {"phase": phase, "conditions": [
        {"type": "Ready", "status": "True" if ready else "False"}]}
    if ip:
        status["podIP"] = ip
    return {"metadata": meta, "status": status, "spec": {"containers": [
        {"name": "c", "ports": [{"name": "http", "containerPort": port}]}]}}


def test_selector_matching() -> None:
    assert selector_matches({"a": "1"}, {"a": "1", "b": "2"})
    assert not selector_matches({"a": "1"}, {"a": "2"})
    assert not selector_matches({}, {"a": "1"})


def test_only_selected_addressed_unfinished_pods_of_the_namespace() -> None:
    pods = [pod("a", "127.0.0.10", ready=True), pod("b", None, ready=False),
            pod("c", "127.0.0.11", ready=True, app="other"),
            pod("d", "127.0.0.12", ready=True, ns="elsewhere"),
            pod("e", "127.0.0.13", ready=False, phase="Succeeded")]
    assert [p["metadata"]["name"] for p in service_pods(SERVICE, pods)] == ["a"]


def test_endpoints_split_ready_and_not_ready_and_resolve_named_ports() -> None:
    pods = [pod("a", "127.0.0.10", ready=True), pod("b", "127.0.0.11", ready=False),
            pod("c", "127.0.0.12", ready=True, deleting=True)]
    ep = build_endpoints(SERVICE, pods)
    assert ep["metadata"]["name"] == "web"
    assert ep["metadata"]["ownerReferences"][0]["uid"] == "s1"
    (subset,) = ep["subsets"]
    assert [a["ip"] for a in subset["addresses"]] == ["127.0.0.10"]
    assert [a["ip"] for a in subset["notReadyAddresses"]] == ["127.0.0.11"]
    assert subset["ports"] == [{"name": "http", "port": 8000, "protocol": "TCP"}]
    assert subset["addresses"][0]["targetRef"] == {
        "kind": "Pod", "namespace": "default", "name": "a", "uid": "u-a"}


def test_pods_with_different_ports_get_separate_subsets_and_slices() -> None:
    pods = [pod("a", "127.0.0.10", ready=True, port=8000),
            pod("b", "127.0.0.11", ready=True, port=9000)]
    ep = build_endpoints(SERVICE, pods)
    assert sorted(s["ports"][0]["port"] for s in ep["subsets"]) == [8000, 9000]
    slices = build_slices(SERVICE, pods)
    assert len(slices) == 2
    assert len({s["metadata"]["name"] for s in slices}) == 2


def test_slices_carry_conditions_and_the_service_label() -> None:
    pods = [pod("a", "127.0.0.10", ready=True), pod("b", "127.0.0.11", ready=False),
            pod("c", "127.0.0.12", ready=True, deleting=True)]
    (es,) = build_slices(SERVICE, pods)
    assert es["addressType"] == "IPv4"
    assert es["metadata"]["labels"][SERVICE_NAME_LABEL] == "web"
    conditions = {e["targetRef"]["name"]: e["conditions"] for e in es["endpoints"]}
    assert conditions["a"] == {"ready": True, "serving": True, "terminating": False}
    assert conditions["b"] == {"ready": False, "serving": False, "terminating": False}
    assert conditions["c"] == {"ready": False, "serving": True, "terminating": True}


def test_no_pods_means_empty_endpoints_and_one_empty_slice() -> None:
    svc = {**SERVICE, "spec": {"selector": {"app": "web"},
                               "ports": [{"port": 80, "targetPort": 8080}]}}
    assert build_endpoints(svc, [])["subsets"] == []
    (es,) = build_slices(svc, [])
    assert es["endpoints"] == []
    assert es["ports"] == [{"port": 8080, "protocol": "TCP"}]


def test_publish_not_ready_addresses() -> None:
    svc = {**SERVICE, "spec": {**SERVICE["spec"], "publishNotReadyAddresses": True}}
    (subset,) = build_endpoints(svc, [pod("b", "127.0.0.11", ready=False)])["subsets"]
    assert [a["ip"] for a in subset["addresses"]] == ["127.0.0.11"]
