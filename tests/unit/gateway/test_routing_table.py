"""The routing table: API objects -> endpoints of models and adapters."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.static import ConfigError, parse_services, parse_static_routes
from gateway.table import (
    Endpoint,
    ModelEntry,
    RoutingTable,
    adapter_state,
    deployment_state,
    key_of,
    pod_state,
)


def pod(name: str, model: str | None = "m1", *, ip: str | None = "10.0.0.1", ready: bool = True,
        namespace: str = "default", phase: str = "Running", deleting: bool = False,
        ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    labels = {"brix.dev/model": model} if model else {}
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    if ports is None:
        ports = [{"name": "http", "containerPort": 8000},
                 {"name": "sidecar", "containerPort": 8080}]
    status: dict[str, Any] = {"phase": phase, "conditions": [
        {"type": "Ready", "status": "True" if ready else "False"}]}
    if ip:
        status["podIP"] = ip
    return {"metadata": meta, "spec": {"containers": [{"name": "engine", "ports": ports}]},
            "status": status}


def adapter(name: str, base: str, loaded: list[str], namespace: str = "default") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace},
            "spec": {"baseModel": base, "source": "file:///x"},
            "status": {"loadedPods": [{"name": n, "ip": "10.9.9.9"} for n in loaded]}}


def put(table: RoutingTable, obj: dict[str, Any], kind: str = "pods") -> None:
    to_state = {"pods": pod_state, "adapters": adapter_state, "deployments": deployment_state}
    state = to_state[kind](obj)
    table.upsert(kind, key_of(obj), state)  # type: ignore[arg-type]


def test_a_ready_pod_is_an_endpoint_at_its_ip_and_named_ports() -> None:
    state = pod_state(pod("p1", ports=[{"name": "http", "containerPort": 9000},
                                       {"name": "sidecar", "containerPort": 9090}]))
    assert state is not None
    assert state.endpoint == Endpoint("p1", "http://10.0.0.1:9000", "http://10.0.0.1:9090")


@pytest.mark.parametrize("obj", [
    pod("p", ready=False), pod("p", ip=None), pod("p", deleting=True), pod("p", phase="Pending"),
])
def test_pods_that_are_not_candidates(obj: dict[str, Any]) -> None:
    state = pod_state(obj)
    assert state is not None
    assert state.endpoint is None


def test_unlabelled_pod_and_default_ports() -> None:
    assert pod_state(pod("p", model=None)) is None
    state = pod_state(pod("p", ports=[]))
    assert state is not None
    assert state.endpoint == Endpoint("p", "http://10.0.0.1:8000", None)
    ipv6 = pod_state(pod("p", ip="fd00::1"))
    assert ipv6 is not None
    assert ipv6.endpoint is not None
    assert ipv6.endpoint.url == "http://[fd00::1]:8000"


def test_pods_follow_readiness_and_deletion() -> None:
    table = RoutingTable()
    put(table, pod("p1", ip="10.0.0.1"))
    put(table, pod("p2", ip="10.0.0.2", ready=False))
    route = table.route("m1")
    assert route is not None
    assert [e.name for e in route.endpoints] == ["p1"]
    put(table, pod("p2", ip="10.0.0.2"))
    route = table.route("m1")
    assert route is not None
    assert [e.name for e in route.endpoints] == ["p1", "p2"]
    put(table, pod("p1", ip="10.0.0.1", ready=False))
    table.delete("pods", ("default", "p2"))
    assert table.route("m1") is None
    assert table.exists("m1")  # p1 is still there, not ready
    table.delete("pods", ("default", "p1"))
    assert not table.exists("m1")


def test_a_deployment_or_the_config_makes_a_model_exist_with_no_pod() -> None:
    table = RoutingTable(hold_models=["cold"])
    assert table.exists("cold")
    assert table.route("cold") is None
    assert not table.exists("m2")
    put(table, {"metadata": {"name": "d", "namespace": "ns", "labels": {"brix.dev/model": "m2"}}},
        "deployments")
    assert table.exists("m2")
    assert table.route("m2") is None
    table.delete("deployments", ("ns", "d"))
    assert not table.exists("m2")


def test_adapters_route_to_their_loaded_ready_pods() -> None:
    table = RoutingTable()
    put(table, pod("p1", ip="10.0.0.1"))
    put(table, pod("p2", ip="10.0.0.2"))
    put(table, adapter("sql", "m1", []), "adapters")
    assert table.route("sql") is None
    assert table.exists("sql")
    assert table.base_model("sql") == "m1"
    put(table, adapter("sql", "m1", ["p2", "gone"]), "adapters")
    route = table.route("sql")
    assert route is not None
    assert route.model == "m1"
    assert [e.name for e in route.endpoints] == ["p2"]
    assert table.models() == [ModelEntry("m1"), ModelEntry("sql", "m1")]
    put(table, pod("p2", ip="10.0.0.2", ready=False))
    assert table.route("sql") is None
    assert table.models() == [ModelEntry("m1")]


def test_adapter_pods_are_looked_up_in_its_namespace() -> None:
    table = RoutingTable()
    put(table, pod("p1", ip="10.0.0.1", namespace="a"))
    put(table, adapter("sql", "m1", ["p1"], namespace="b"), "adapters")
    assert table.route("sql") is None


def test_replace_swaps_one_namespace_and_keeps_the_others() -> None:
    table = RoutingTable()
    put(table, pod("p1", ip="10.0.0.1", namespace="a"))
    put(table, pod("p2", ip="10.0.0.2", namespace="b"))
    fresh = pod("p3", ip="10.0.0.3", namespace="a")
    table.replace("pods", {key_of(fresh): pod_state(fresh)}, namespace="a")  # type: ignore[dict-item]
    route = table.route("m1")
    assert route is not None
    assert sorted(e.name for e in route.endpoints) == ["p2", "p3"]
    table.replace("pods", {})
    assert table.route("m1") is None


def test_every_change_sets_the_change_event() -> None:
    table = RoutingTable()
    event = table.changed()
    assert not event.is_set()
    put(table, pod("p1"))
    assert event.is_set()
    assert not table.changed().is_set()


def test_static_routes_and_service_mode() -> None:
    routes = parse_static_routes(["m1=http://127.0.0.1:9/", "m1=http://127.0.0.1:10"])
    assert [e.url for e in routes["m1"]] == ["http://127.0.0.1:9", "http://127.0.0.1:10"]
    services = parse_services(["llama-70b=llama-70b-svc", "small=small-svc.models:9000"])
    assert services["llama-70b"] == [Endpoint("llama-70b-svc", "http://llama-70b-svc:8000")]
    assert services["small"] == [Endpoint("small-svc.models", "http://small-svc.models:9000")]
    table = RoutingTable(static={**routes, **services})
    route = table.route("llama-70b")
    assert route is not None
    assert route.endpoints[0].url == "http://llama-70b-svc:8000"
    assert [m.id for m in table.models()] == ["llama-70b", "m1", "small"]


@pytest.mark.parametrize(("entry", "message"), [
    ("m1", "expected MODEL=URL"),
    ("=http://x", "expected MODEL=URL"),
    ("m1=ftp://x", "is not an http"),
    ("m1=localhost:80", "is not an http"),
])
def test_bad_static_routes_are_refused(entry: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_static_routes([entry])


@pytest.mark.parametrize(("entries", "message"), [
    (["m1"], "expected MODEL=SERVICE"),
    (["m1=svc:http"], "expected SERVICE"),
    (["m1=svc:70000"], "expected SERVICE"),
    (["m1=a", "m1=b"], "mapped twice"),
])
def test_bad_services_are_refused(entries: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_services(entries)
