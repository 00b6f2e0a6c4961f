"""Prometheus HTTP SD target groups, with the labels of the pod role."""

from __future__ import annotations

from typing import Any

from localkube.api.promsd import sanitize, target_groups


def pod(name: str, ip: str | None, *, ready: bool = True, **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "models", "uid": f"uid-{name}",
                     "labels": {"brix.dev/model": "tiny", "app": "engine"},
                     "annotations": {"note": "x"}, **meta},
        "spec": {"nodeName": "localkube", "containers": [
            {"name": "engine", "image": "e", "ports": [{"name": "http", "containerPort": 8000}]},
            {"name": "sidecar", "image": "s", "ports": [
                {"name": "sidecar", "containerPort": 8080, "protocol": "TCP"}]},
            {"name": "noports", "image": "n"},
        ]},
        "status": {"phase": "Running", "podIP": ip, "conditions": [
            {"type": "Ready", "status": "True" if ready else "False"}]},
    }


def test_one_group_per_container_port_with_pod_role_labels() -> None:
    groups = target_groups([pod("a", "127.0.0.10")])
    assert [g["targets"] for g in groups] == [["127.0.0.10:8000"], ["127.0.0.10:8080"],
                                              ["127.0.0.10"]]
    labels = groups[1]["labels"]
    assert labels["__meta_kubernetes_namespace"] == "models"
    assert labels["__meta_kubernetes_pod_name"] == "a"
    assert labels["__meta_kubernetes_pod_ip"] == "127.0.0.10"
    assert labels["__meta_kubernetes_pod_ready"] == "true"
    assert labels["__meta_kubernetes_pod_container_name"] == "sidecar"
    assert labels["__meta_kubernetes_pod_container_port_name"] == "sidecar"
    assert labels["__meta_kubernetes_pod_container_port_number"] == "8080"
    assert labels["__meta_kubernetes_pod_label_brix_dev_model"] == "tiny"
    assert labels["__meta_kubernetes_pod_labelpresent_brix_dev_model"] == "true"
    assert labels["__meta_kubernetes_pod_annotation_note"] == "x"
    assert all(isinstance(v, str) for g in groups for v in g["labels"].values())


def test_only_ready_pods_with_an_address_by_default() -> None:
    pods = [pod("a", "127.0.0.10"), pod("b", "127.0.0.11", ready=False), pod("c", None),
            pod("d", "127.0.0.12", deletionTimestamp="2026-01-01T00:00:00Z")]
    assert {g["labels"]["__meta_kubernetes_pod_name"] for g in target_groups(pods)} == {"a"}
    names = {g["labels"]["__meta_kubernetes_pod_name"]
             for g in target_groups(pods, ready_only=False)}
    assert names == {"a", "b"}


def test_port_name_filter() -> None:
    groups = target_groups([pod("a", "127.0.0.10")], port_name="sidecar")
    assert [g["targets"] for g in groups] == [["127.0.0.10:8080"]]


def test_controller_labels_come_from_the_controlling_owner() -> None:
    refs = [{"kind": "Deployment", "name": "tiny", "controller": True, "uid": "u"}]
    (g, *_) = target_groups([pod("a", "127.0.0.10", ownerReferences=refs)])
    assert g["labels"]["__meta_kubernetes_pod_controller_kind"] == "Deployment"
    assert g["labels"]["__meta_kubernetes_pod_controller_name"] == "tiny"


def test_label_names_are_sanitized_as_prometheus_does() -> None:
    assert sanitize("app.kubernetes.io/name") == "app_kubernetes_io_name"
