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
    with pytest.raises(ProtobufError, match=r"Deployment \(apps/v1\).*kubectl apply -f"):
        decode(envelope("apps/v1", "Deployment", meta("d")))


@pytest.mark.parametrize("body", [b"{}", b"k8s\x00\x0a\xff", b"k8s\x00\x0f"])
def test_broken_bodies_are_errors(body: bytes) -> None:
    with pytest.raises(ProtobufError):
        decode(body)
