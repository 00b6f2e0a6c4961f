"""Kubernetes protobuf request bodies, for the kinds kubectl's generators send.

``kubectl create namespace|configmap|secret|serviceaccount|deployment`` and
``kubectl run`` send typed objects as ``application/vnd.kubernetes.protobuf``
(client-go has no fallback to JSON). This decodes those kinds, with the fields
those commands set (a pod's containers: name, image, command, args, ports,
env, ...), into the JSON form; any other kind is refused with an error that
names it. Purely computational.

The envelope is ``k8s\\x00`` then a ``runtime.Unknown``: typeMeta (1:
apiVersion, 2: kind), raw (2: the object's own message).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

MAGIC = b"k8s\x00"


class ProtobufError(ValueError):
    """A body that cannot be decoded (the message says which kind, or why)."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ProtobufError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) pairs: ints for varints and fixed, bytes for the rest."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield num, value
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise ProtobufError("truncated field")
            yield num, buf[pos:pos + size]
            pos += size
        elif wire == 1:
            yield num, int.from_bytes(buf[pos:pos + 8], "little")
            pos += 8
        elif wire == 5:
            yield num, int.from_bytes(buf[pos:pos + 4], "little")
            pos += 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")


def _str(v: int | bytes) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _map(entries: list[bytes], *, binary: bool = False) -> dict[str, str]:
    out = {}
    for entry in entries:
        k = v = b""
        for num, val in fields(entry):
            if num == 1 and isinstance(val, bytes):
                k = val
            elif num == 2 and isinstance(val, bytes):
                v = val
        out[k.decode()] = base64.b64encode(v).decode() if binary else v.decode()
    return out


def _group(buf: bytes) -> dict[int, list[int | bytes]]:
    out: dict[int, list[int | bytes]] = {}
    for num, val in fields(buf):
        out.setdefault(num, []).append(val)
    return out


def _bytes_list(values: list[int | bytes]) -> list[bytes]:
    return [v for v in values if isinstance(v, bytes)]


def _owner(buf: bytes) -> dict[str, Any]:
    f = _group(buf)
    out: dict[str, Any] = {}
    for num, name in ((5, "apiVersion"), (1, "kind"), (3, "name"), (4, "uid")):
        if num in f:
            out[name] = _str(f[num][-1])
    for num, name in ((6, "controller"), (7, "blockOwnerDeletion")):
        if num in f:
            out[name] = bool(f[num][-1])
    return out


def object_meta(buf: bytes) -> dict[str, Any]:
    f = _group(buf)
    md: dict[str, Any] = {}
    for num, name in ((1, "name"), (2, "generateName"), (3, "namespace")):
        if num in f and _str(f[num][-1]):
            md[name] = _str(f[num][-1])
    if 11 in f:
        md["labels"] = _map(_bytes_list(f[11]))
    if 12 in f:
        md["annotations"] = _map(_bytes_list(f[12]))
    if 13 in f:
        md["ownerReferences"] = [_owner(b) for b in _bytes_list(f[13])]
    if 14 in f:
        md["finalizers"] = [_str(v) for v in f[14]]
    return md


def _namespace(f: dict[int, list[int | bytes]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if 2 in f:
        spec = _group(_bytes_list(f[2])[-1])
        if 1 in spec:
            out["spec"] = {"finalizers": [_str(v) for v in spec[1]]}
    return out


def _configmap(f: dict[int, list[int | bytes]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if 2 in f:
        out["data"] = _map(_bytes_list(f[2]))
    if 3 in f:
        out["binaryData"] = _map(_bytes_list(f[3]), binary=True)
    if 4 in f:
        out["immutable"] = bool(f[4][-1])
    return out


def _secret(f: dict[int, list[int | bytes]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if 2 in f:
        out["data"] = _map(_bytes_list(f[2]), binary=True)
    if 3 in f:
        out["type"] = _str(f[3][-1])
    if 4 in f:
        out["stringData"] = _map(_bytes_list(f[4]))
    if 5 in f:
        out["immutable"] = bool(f[5][-1])
    return out


def _serviceaccount(f: dict[int, list[int | bytes]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if 3 in f:
        out["imagePullSecrets"] = [{"name": _str(_group(b).get(1, [b""])[-1])}
                                   for b in _bytes_list(f[3])]
    if 4 in f:
        out["automountServiceAccountToken"] = bool(f[4][-1])
    return out


def _strings(values: list[int | bytes]) -> list[str]:
    return [_str(v) for v in values]


def _int(v: int | bytes) -> int:
    """A varint as the signed int32/int64 it encodes."""
    n = v if isinstance(v, int) else 0
    return n - (1 << 64) if n >= 1 << 63 else n


def _container(buf: bytes) -> dict[str, Any]:
    f = _group(buf)
    out: dict[str, Any] = {}
    # Go encodes empty strings and zeros of non-pointer fields: JSON omits them.
    for num, name in ((1, "name"), (2, "image"), (5, "workingDir"), (14, "imagePullPolicy")):
        if num in f and _str(f[num][-1]):
            out[name] = _str(f[num][-1])
    for num, name in ((3, "command"), (4, "args")):
        if num in f:
            out[name] = _strings(f[num])
    if 6 in f:
        ports = []
        for b in _bytes_list(f[6]):
            pf = _group(b)
            port: dict[str, Any] = {}
            if 1 in pf and _str(pf[1][-1]):
                port["name"] = _str(pf[1][-1])
            if 2 in pf and _int(pf[2][-1]):
                port["hostPort"] = _int(pf[2][-1])
            if 3 in pf:
                port["containerPort"] = _int(pf[3][-1])
            if 4 in pf and _str(pf[4][-1]):
                port["protocol"] = _str(pf[4][-1])
            ports.append(port)
        out["ports"] = ports
    if 7 in f:
        env = []
        for b in _bytes_list(f[7]):
            ef = _group(b)
            var: dict[str, Any] = {"name": _str(ef.get(1, [b""])[-1])}
            if 2 in ef and _str(ef[2][-1]):
                var["value"] = _str(ef[2][-1])
            env.append(var)
        out["env"] = env
    return out


def _pod_spec(buf: bytes) -> dict[str, Any]:
    f = _group(buf)
    out: dict[str, Any] = {}
    if 2 in f:
        out["containers"] = [_container(b) for b in _bytes_list(f[2])]
    if 20 in f:
        out["initContainers"] = [_container(b) for b in _bytes_list(f[20])]
    for num, name in ((3, "restartPolicy"), (6, "dnsPolicy"), (8, "serviceAccountName"),
                      (10, "nodeName")):
        if num in f and _str(f[num][-1]):
            out[name] = _str(f[num][-1])
    if 4 in f:
        out["terminationGracePeriodSeconds"] = _int(f[4][-1])
    if 7 in f:
        out["nodeSelector"] = _map(_bytes_list(f[7]))
    return out


def _pod(f: dict[int, list[int | bytes]]) -> dict[str, Any]:
    return {"spec": _pod_spec(_bytes_list(f[2])[-1])} if 2 in f else {}


def _deployment(f: dict[int, list[int | bytes]]) -> dict[str, Any]:
    if 2 not in f:
        return {}
    sf = _group(_bytes_list(f[2])[-1])
    spec: dict[str, Any] = {}
    if 1 in sf:
        spec["replicas"] = _int(sf[1][-1])
    if 2 in sf:
        sel = _group(_bytes_list(sf[2])[-1])
        spec["selector"] = {"matchLabels": _map(_bytes_list(sel.get(1, [])))}
    if 3 in sf:
        tf = _group(_bytes_list(sf[3])[-1])
        template: dict[str, Any] = {}
        if 1 in tf:
            template["metadata"] = object_meta(_bytes_list(tf[1])[-1])
        if 2 in tf:
            template["spec"] = _pod_spec(_bytes_list(tf[2])[-1])
        spec["template"] = template
    return {"spec": spec}


def _attributes(buf: bytes, names: tuple[tuple[int, str], ...]) -> dict[str, Any]:
    f = _group(buf)
    return {name: _str(f[num][-1]) for num, name in names if num in f and _str(f[num][-1])}


_RESOURCE_ATTRS = ((1, "namespace"), (2, "verb"), (3, "group"), (4, "version"),
                   (5, "resource"), (6, "subresource"), (7, "name"))
_NON_RESOURCE_ATTRS = ((1, "path"), (2, "verb"))


def _access_review(f: dict[int, list[int | bytes]]) -> dict[str, Any]:
    """(Self)SubjectAccessReview: spec.resourceAttributes (1) or nonResourceAttributes (2);
    a SubjectAccessReview's user (3), groups (4) and uid (6)."""
    spec: dict[str, Any] = {}
    if 2 in f:
        sf = _group(_bytes_list(f[2])[-1])
        if 1 in sf:
            spec["resourceAttributes"] = _attributes(_bytes_list(sf[1])[-1], _RESOURCE_ATTRS)
        if 2 in sf:
            spec["nonResourceAttributes"] = _attributes(_bytes_list(sf[2])[-1],
                                                        _NON_RESOURCE_ATTRS)
        if 3 in sf:
            spec["user"] = _str(sf[3][-1])
        if 4 in sf:
            spec["groups"] = [_str(v) for v in sf[4]]
        if 6 in sf:
            spec["uid"] = _str(sf[6][-1])
    return {"spec": spec}


def _token_request(f: dict[int, list[int | bytes]]) -> dict[str, Any]:
    """TokenRequest: spec (2) with audiences (1) and expirationSeconds (4)."""
    spec: dict[str, Any] = {}
    if 2 in f:
        sf = _group(_bytes_list(f[2])[-1])
        if 1 in sf:
            spec["audiences"] = [_str(v) for v in sf[1]]
        if 4 in sf:
            spec["expirationSeconds"] = _int(sf[4][-1])
    return {"spec": spec}


def _rules_review(f: dict[int, list[int | bytes]]) -> dict[str, Any]:
    if 2 in f:
        return {"spec": _attributes(_bytes_list(f[2])[-1], ((1, "namespace"),))}
    return {"spec": {}}


DECODERS: dict[tuple[str, str], Callable[[dict[int, list[int | bytes]]], dict[str, Any]]] = {
    ("v1", "Namespace"): _namespace,
    ("v1", "ConfigMap"): _configmap,
    ("v1", "Secret"): _secret,
    ("v1", "ServiceAccount"): _serviceaccount,
    ("v1", "Pod"): _pod,
    ("apps/v1", "Deployment"): _deployment,
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): _access_review,
    ("authorization.k8s.io/v1", "SubjectAccessReview"): _access_review,
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview"): _rules_review,
    ("authentication.k8s.io/v1", "SelfSubjectReview"): lambda f: {},
    ("authentication.k8s.io/v1", "TokenRequest"): _token_request,
}


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object of a supported kind."""
    if not body.startswith(MAGIC):
        raise ProtobufError("not a Kubernetes protobuf body (no k8s\\0 prefix)")
    envelope = _group(body[len(MAGIC):])
    api_version = kind = ""
    if 1 in envelope:
        tm = _group(_bytes_list(envelope[1])[-1])
        api_version = _str(tm.get(1, [b""])[-1])
        kind = _str(tm.get(2, [b""])[-1])
    decoder = DECODERS.get((api_version, kind))
    if decoder is None:
        supported = ", ".join(k for _, k in DECODERS)
        raise ProtobufError(
            f"localkube decodes protobuf bodies only for {supported}; this one is a "
            f"{kind or 'unknown kind'} ({api_version or '?'}): send it as JSON or YAML "
            "(e.g. kubectl apply -f or kubectl create -f with a manifest)")
    raw = _group(_bytes_list(envelope.get(2, [b""]))[-1])
    obj: dict[str, Any] = {"apiVersion": api_version, "kind": kind}
    obj["metadata"] = object_meta(_bytes_list(raw[1])[-1]) if 1 in raw else {}
    obj.update(decoder(raw))
    return obj
