"""Decoding the protobuf bodies kubectl's generators send."""

from __future__ import annotations

import base64

import pytest

from localkube.api.protobuf import ProtobufError, decode


def varint(n: int) -> bytes:
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num: int, value: bytes | int) -> bytes:
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    return varint(num << 3 | 2) + varint(len(value)) + value


def entry(k: str, v: bytes) -> bytes:
    return field(1, k.encode()) + field(2, v)


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = field(1, api_version.encode()) + field(2, kind.encode())
    return b"k8s\x00" + field(1, type_meta) + field(2, raw) + field(4, b"application/"
                                                                     b"vnd.kubernetes.protobuf")


def meta(name: str, **labels: str) -> bytes:
    out = field(1, name.encode()) + field(3, b"ns")
    for k, v in labels.items():
        out += field(11, entry(k, v.encode()))
    return field(1, out)


def test_configmap() -> None:
    raw = meta("cfg", app="x") + field(2, entry("a", b"1")) + field(2, entry("b", b"2"))
    assert decode(envelope("v1", "ConfigMap", raw)) == {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cfg", "namespace": "ns", "labels": {"app": "x"}},
        "data": {"a": "1", "b": "2"}}


def test_secret_data_is_base64_in_json() -> None:
    raw = meta("s") + field(2, entry("pw", b"\x00secret")) + field(3, b"Opaque")
    obj = decode(envelope("v1", "Secret", raw))
    assert base64.b64decode(obj["data"]["pw"]) == b"\x00secret"
    assert obj["type"] == "Opaque"


def test_namespace_with_finalizers() -> None:
    raw = field(1, field(1, b"team")) + field(2, field(1, b"kubernetes"))
    assert decode(envelope("v1", "Namespace", raw)) == {
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"},
        "spec": {"finalizers": ["kubernetes"]}}


def test_other_kinds_are_refused_by_name() -> None:
    with pytest.raises(ProtobufError, match=r"Role \(rbac.authorization.k8s.io/v1\).*apply -f"):
        decode(envelope("rbac.authorization.k8s.io/v1", "Role", meta("r")))


@pytest.mark.parametrize("body", [b"{}", b"k8s\x00\x0a\xff", b"k8s\x00\x0f"])
def test_broken_bodies_are_errors(body: bytes) -> None:
    with pytest.raises(ProtobufError):
        decode(body)


def container(name: str, image: str, *command: str, port: int = 0) -> bytes:
    out = field(1, name.encode()) + field(2, image.encode())
    for part in command:
        out += field(3, part.encode())
    out += field(5, b"")  # Go writes empty strings of non-pointer fields
    if port:
        out += field(6, field(1, b"") + field(2, 0) + field(3, port) + field(4, b""))
    return out


def test_deployment_as_kubectl_create_deployment_sends_it() -> None:
    labels = field(11, entry("app", b"web"))
    template = field(1, labels) + field(2, field(2, container(
        "img", "img:1", "python", "-m", "http.server", port=8080)) + field(3, b"Always"))
    spec = field(1, 3) + field(2, field(1, entry("app", b"web"))) + field(3, template)
    obj = decode(envelope("apps/v1", "Deployment", field(1, field(1, b"web") + labels)
                          + field(2, spec)))
    assert obj["spec"]["replicas"] == 3
    assert obj["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    assert obj["spec"]["template"]["metadata"] == {"labels": {"app": "web"}}
    assert obj["spec"]["template"]["spec"] == {
        "containers": [{"name": "img", "image": "img:1",
                        "command": ["python", "-m", "http.server"],
                        "ports": [{"containerPort": 8080}]}],
        "restartPolicy": "Always"}


def test_pod_as_kubectl_run_sends_it() -> None:
    spec = field(2, container("demo", "x", "sleep", "5")) + field(4, 7)
    obj = decode(envelope("v1", "Pod", field(1, field(1, b"demo")) + field(2, spec)))
    assert obj["spec"]["containers"][0]["command"] == ["sleep", "5"]
    assert obj["spec"]["terminationGracePeriodSeconds"] == 7
