"""Parsing LoraAdapters, Pods and sidecar answers; label selectors."""

from __future__ import annotations

from typing import Any

import pytest

from brix.contract import MODEL_LABEL
from lora_operator.model import (
    AdapterSpec,
    InvalidSpec,
    LabelSelector,
    Loaded,
    PodInfo,
    parse_adapter_list,
)


def adapter(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": "sql", "generation": 2},
            "spec": {"baseModel": "m", "source": "file:///a", **spec}}


def test_adapter_spec_from_an_object() -> None:
    s = AdapterSpec.from_body(adapter(sha256="AB" * 32, replicas=2,
                                      podSelector={"matchLabels": {"zone": "a"}}))
    assert (s.namespace, s.name, s.base_model, s.source) == ("ns", "sql", "m", "file:///a")
    assert s.sha256 == "ab" * 32
    assert s.replicas == 2
    assert s.generation == 2
    assert s.pod_selector.matches({"zone": "a"})
    assert not s.pod_selector.matches({"zone": "b"})


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"baseModel": None}, "spec.baseModel"),
        ({"source": ""}, "spec.source"),
        ({"replicas": -1}, "spec.replicas"),
        ({"podSelector": {"matchExpressions": [{"key": "k", "operator": "In"}]}},
         "spec.podSelector.matchExpressions[0].values"),
        ({"podSelector": {"matchExpressions": [{"key": "k", "operator": "Near"}]}},
         "spec.podSelector.matchExpressions[0].operator"),
    ],
)
def test_invalid_specs_name_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSpec, match=field.replace("[", r"\[").replace("]", r"\]")):
        AdapterSpec.from_body(adapter(**spec))


@pytest.mark.parametrize(
    ("expr", "labels", "expected"),
    [
        ({"key": "g", "operator": "In", "values": ["a"]}, {"g": "a"}, True),
        ({"key": "g", "operator": "In", "values": ["a"]}, {}, False),
        ({"key": "g", "operator": "NotIn", "values": ["a"]}, {"g": "b"}, True),
        ({"key": "g", "operator": "NotIn", "values": ["a"]}, {}, True),
        ({"key": "g", "operator": "NotIn", "values": ["a"]}, {"g": "a"}, False),
        ({"key": "g", "operator": "Exists"}, {"g": ""}, True),
        ({"key": "g", "operator": "Exists"}, {}, False),
        ({"key": "g", "operator": "DoesNotExist"}, {}, True),
        ({"key": "g", "operator": "DoesNotExist"}, {"g": "x"}, False),
    ],
)
def test_selector_operators(expr: dict[str, Any], labels: dict[str, str], expected: bool) -> None:
    assert LabelSelector.parse({"matchExpressions": [expr]}).matches(labels) is expected


def pod_body(*, ready: str = "True", deleting: bool = False, port: int | None = 9090
             ) -> dict[str, Any]:
    ports = [{"name": "http", "containerPort": 8000}]
    if port is not None:
        ports.append({"name": "sidecar", "containerPort": port})
    meta: dict[str, Any] = {"namespace": "ns", "name": "p1", "labels": {MODEL_LABEL: "m"}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {"containers": [{"name": "engine", "ports": ports[:1]},
                                {"name": "sidecar", "ports": ports[1:]}]},
        "status": {"phase": "Running", "podIP": "10.1.2.3",
                   "conditions": [{"type": "Ready", "status": ready}]},
    }


def test_pod_info_reads_ip_readiness_and_the_sidecar_port() -> None:
    p = PodInfo.from_body(pod_body())
    assert (p.name, p.model, p.ip, p.ready, p.port) == ("p1", "m", "10.1.2.3", True, 9090)
    assert p.sidecar_url == "http://10.1.2.3:9090"
    assert not PodInfo.from_body(pod_body(ready="False")).ready
    assert not PodInfo.from_body(pod_body(deleting=True)).ready
    assert PodInfo.from_body(pod_body(port=None)).port == 8080


def test_sidecar_adapter_lists() -> None:
    answer = {"object": "list", "data": [
        {"name": "sql", "base_model": "m", "path": "/a", "source": "file:///a",
         "sha256": None},
        {"name": "chat", "source": None},
    ]}
    assert parse_adapter_list(answer) == (Loaded("sql", "file:///a", None, "/a"), Loaded("chat"))
    assert parse_adapter_list(["x"]) == (Loaded("x"),)
    with pytest.raises(ValueError, match="expected a list"):
        parse_adapter_list({"nope": 1})
    with pytest.raises(ValueError, match="unexpected adapter entry"):
        parse_adapter_list([{"source": "file:///a"}])
