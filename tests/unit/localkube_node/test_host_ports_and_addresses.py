"""Which ports of 127.0.0.1 open to which pods; pod address allocation."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from localkube.node.addresses import AddressPool, listening_addresses
from localkube.node.proxy import desired_ports, load_balancer_status


def pod(name: str, ip: str, *, ready: bool = True, host_port: int | None = None,
        labels: dict[str, str] | None = None) -> dict[str, Any]:
    port: dict[str, Any] = {"name": "http", "containerPort": 8000}
    if host_port:
        port["hostPort"] = host_port
    return {
        "metadata": {"name": name, "namespace": "default", "labels": labels or {"app": "gw"}},
        "spec": {"containers": [{"name": "c", "ports": [port]}]},
        "status": {"podIP": ip, "phase": "Running",
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def service(kind: str, node_port: int | None) -> dict[str, Any]:
    port: dict[str, Any] = {"port": 80, "targetPort": "http"}
    if node_port:
        port["nodePort"] = node_port
    return {"metadata": {"name": "gw", "namespace": "default"},
            "spec": {"type": kind, "selector": {"app": "gw"}, "ports": [port]}}


def test_host_port_goes_to_its_own_ready_pod() -> None:
    plans = desired_ports([pod("a", "127.0.0.10", host_port=18000)], [])
    assert plans[18000].backends == [("127.0.0.10", 8000)]


def test_host_port_of_an_unready_pod_is_held_without_backends() -> None:
    plans = desired_ports([pod("a", "127.0.0.10", ready=False, host_port=18000)], [])
    assert plans[18000].backends == []


def test_a_second_pod_on_the_same_host_port_does_not_take_it() -> None:
    plans = desired_ports([pod("b", "127.0.0.11", host_port=18000),
                           pod("a", "127.0.0.10", host_port=18000)], [])
    assert plans[18000].owner == "pod default/a"
    assert plans[18000].backends == [("127.0.0.10", 8000)]


def test_node_port_service_goes_to_every_ready_pod() -> None:
    pods = [pod("a", "127.0.0.10"), pod("b", "127.0.0.11"), pod("c", "127.0.0.12", ready=False)]
    plans = desired_ports(pods, [service("NodePort", 30080)])
    assert sorted(plans[30080].backends) == [("127.0.0.10", 8000), ("127.0.0.11", 8000)]


@pytest.mark.parametrize(("kind", "node_port"), [("ClusterIP", None), ("NodePort", None)])
def test_services_without_a_node_port_open_nothing(kind: str, node_port: int | None) -> None:
    assert desired_ports([pod("a", "127.0.0.10")], [service(kind, node_port)]) == {}


def test_addresses_start_at_10_are_distinct_and_reused(tmp_path: Path) -> None:
    pool = AddressPool(tmp_path, listening=set)
    a, b, c = (pool.acquire(x) for x in ("a", "b", "c"))
    assert (a, b, c) == ("127.0.0.10", "127.0.0.11", "127.0.0.12")
    assert pool.acquire("a") == a                       # same owner, same address
    pool.release("b")
    assert pool.acquire("d") == "127.0.0.11"            # the lowest free one again
    assert pool.acquire("e", preferred="127.0.0.40") == "127.0.0.40"
    assert pool.acquire("f", preferred="127.0.0.40") == "127.0.0.13"   # taken
    assert pool.acquire("g", preferred="10.0.0.1") == "127.0.0.14"     # not ours


def test_the_pool_goes_past_254(tmp_path: Path) -> None:
    pool = AddressPool(tmp_path, listening=set)
    addrs = [pool.acquire(str(i)) for i in range(246)]
    assert addrs[-1] == "127.0.1.10"
    assert len(set(addrs)) == 246
    pool.close()


def test_two_pools_on_one_machine_never_share_an_address(tmp_path: Path) -> None:
    """As two localkubes would: each address is claimed machine-wide."""
    first, second = AddressPool(tmp_path, listening=set), AddressPool(tmp_path, listening=set)
    a = first.acquire("pod-a")
    b = second.acquire("pod-b")
    assert (a, b) == ("127.0.0.10", "127.0.0.11")
    assert second.acquire("pod-c", preferred=a) == "127.0.0.12"
    first.release("pod-a")
    assert second.acquire("pod-d") == a                 # free again once released
    first.close()
    second.close()


def test_an_address_something_listens_on_is_skipped(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.10", 0))
        sock.listen()
        assert "127.0.0.10" in listening_addresses()
        pool = AddressPool(tmp_path)  # the machine's real listening sockets
        got = pool.acquire("pod-a")
        assert got != "127.0.0.10"
        assert got not in listening_addresses()
        pool.close()


def test_load_balancer_service_opens_its_port_and_node_port() -> None:
    svc = service("LoadBalancer", 30081)
    svc["spec"]["ports"][0]["port"] = 18080
    plans = desired_ports([pod("a", "127.0.0.10")], [svc])
    assert plans[18080].backends == [("127.0.0.10", 8000)]
    assert plans[30081].backends == [("127.0.0.10", 8000)]
    assert load_balancer_status(svc) == {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}
    assert load_balancer_status(service("NodePort", 30081)) is None
