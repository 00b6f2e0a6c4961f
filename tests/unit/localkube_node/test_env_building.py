"""A container's environment: values, downward API, ConfigMaps, Secrets, envFrom, order."""

from __future__ import annotations

import base64

import pytest

from localkube.node.envbuild import EnvError, PodFacts, build_env, referenced_names

POD = {
    "metadata": {"name": "web-abc", "namespace": "team", "uid": "u-1",
                 "labels": {"app": "web"}, "annotations": {"note": "hi"}},
    "spec": {"serviceAccountName": "runner", "containers": []},
}
FACTS = PodFacts.of(POD, pod_ip="127.0.0.12", host_ip="127.0.0.1", node_name="localkube")
NODE_VARS = {"BIND_HOST": "127.0.0.12", "POD_IP": "127.0.0.12", "KUBECONFIG": "/k"}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


CONFIGMAPS = {"settings": {"data": {"MODE": "fast", "LEVEL": "3", "bad key": "x"}}}
SECRETS = {"creds": {"data": {"TOKEN": b64("s3cret"), "USER": b64("bob")}}}


def env_of(container: dict[str, object]) -> dict[str, str]:
    return build_env(container, FACTS, node_vars=NODE_VARS, configmaps=CONFIGMAPS,
                     secrets=SECRETS, node_allocatable={"cpu": "4"})


def test_plain_values_and_references_to_earlier_ones() -> None:
    env = env_of({"env": [
        {"name": "A", "value": "1"},
        {"name": "URL", "value": "http://$(POD_IP):$(PORT)/$(A)"},
        {"name": "PORT", "value": "8000"},
    ]})
    assert env["A"] == "1"
    # PORT is defined after URL, so it is not expanded there (as in Kubernetes).
    assert env["URL"] == "http://127.0.0.12:$(PORT)/1"
    assert env["BIND_HOST"] == env["POD_IP"] == "127.0.0.12"
    assert env["KUBECONFIG"] == "/k"


@pytest.mark.parametrize(("path", "value"), [
    ("metadata.name", "web-abc"),
    ("metadata.namespace", "team"),
    ("metadata.uid", "u-1"),
    ("status.podIP", "127.0.0.12"),
    ("status.hostIP", "127.0.0.1"),
    ("spec.nodeName", "localkube"),
    ("spec.serviceAccountName", "runner"),
    ("metadata.labels['app']", "web"),
    ("metadata.annotations['note']", "hi"),
])
def test_field_refs(path: str, value: str) -> None:
    env = env_of({"env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": path}}}]})
    assert env["X"] == value


def test_configmap_and_secret_key_refs() -> None:
    env = env_of({"env": [
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "MODE"}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "TOKEN"}}},
        {"name": "GONE", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k",
                                                        "optional": True}}},
    ]})
    assert env["MODE"] == "fast"
    assert env["TOKEN"] == "s3cret"
    assert "GONE" not in env


def test_env_from_with_prefix_and_env_overriding_it() -> None:
    env = env_of({
        "envFrom": [{"configMapRef": {"name": "settings"}},
                    {"secretRef": {"name": "creds"}, "prefix": "DB_"}],
        "env": [{"name": "LEVEL", "value": "9"}],
    })
    assert env["MODE"] == "fast"
    assert env["LEVEL"] == "9"
    assert env["DB_TOKEN"] == "s3cret"
    assert env["DB_USER"] == "bob"
    assert "bad key" not in env


def test_env_can_override_the_node_variables() -> None:
    env = env_of({"env": [{"name": "KUBECONFIG", "value": "/mine"}]})
    assert env["KUBECONFIG"] == "/mine"


def test_resource_field_ref_from_limits_and_from_the_node() -> None:
    env = env_of({"resources": {"limits": {"memory": "1Gi"}}, "env": [
        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                           "divisor": "1Mi"}}},
        {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
    ]})
    assert env["MEM"] == "1024"
    assert env["CPU"] == "4"


@pytest.mark.parametrize(("container", "message"), [
    ({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "a"}}}]},
     "configmap 'nope' not found"),
    ({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "nope"}}}]},
     "couldn't find key nope in secret 'creds'"),
    ({"envFrom": [{"secretRef": {"name": "missing"}}]}, "secret 'missing' not found"),
    ({"env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}]},
     "fieldRef 'spec.bogus' is not supported"),
    ({"env": [{"value": "nameless"}]}, "an env entry has no name"),
])
def test_missing_references_are_clear_errors(container: dict[str, object], message: str) -> None:
    with pytest.raises(EnvError, match=message.replace("(", r"\(")):
        env_of(container)


def test_referenced_names_cover_env_and_env_from() -> None:
    pod = {"spec": {"containers": [{
        "envFrom": [{"configMapRef": {"name": "a"}}, {"secretRef": {"name": "s1"}}],
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "b", "key": "k"}}},
                {"name": "Y", "valueFrom": {"secretKeyRef": {"name": "s2", "key": "k"}}}],
    }]}}
    assert referenced_names(pod) == ({"a", "b"}, {"s1", "s2"})
