"""The three patch formats of the Kubernetes API. Purely computational.

- JSON merge patch (RFC 7386, ``application/merge-patch+json``): maps merge,
  ``null`` deletes, anything else replaces.
- JSON patch (RFC 6902, ``application/json-patch+json``): a list of operations.
- Strategic merge patch (``application/strategic-merge-patch+json``): a merge
  patch in which lists with a merge key (containers by ``name``, ports by
  ``containerPort``, ...) merge item by item, with the directives ``kubectl
  apply`` sends (``$patch``, ``$retainKeys``, ``$setElementOrder/<field>``,
  ``$deleteFromPrimitiveList/<field>``). The merge keys of the built-in kinds
  that brix's manifests use are listed below; other lists are replaced, as for
  lists without a strategy in Kubernetes.

Every function returns a new document and leaves its inputs untouched.
"""

from __future__ import annotations

import copy
from typing import Any

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


class PatchError(ValueError):
    """A patch that cannot be applied; the message says why."""


# --- JSON merge patch -------------------------------------------------------


def merge_patch(original: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(original) if isinstance(original, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- JSON patch -------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"JSON pointer {path!r} must start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], part: str, *, allow_end: bool) -> int:
    if allow_end and part == "-":
        return len(container)
    if not part.isdigit():
        raise PatchError(f"invalid array index {part!r}")
    idx = int(part)
    if idx > len(container) or (idx == len(container) and not allow_end):
        raise PatchError(f"array index {idx} out of range")
    return idx


def _parent(doc: Any, parts: list[str]) -> Any:
    cur = doc
    for token in parts[:-1]:
        if isinstance(cur, dict):
            if token not in cur:
                raise PatchError(f"path element {token!r} not found")
            cur = cur[token]
        elif isinstance(cur, list):
            cur = cur[_index(cur, token, allow_end=False)]
        else:
            raise PatchError(f"cannot traverse into {type(cur).__name__} at {token!r}")
    return cur


def _get(doc: Any, parts: list[str]) -> Any:
    if not parts:
        return doc
    parent = _parent(doc, parts)
    token = parts[-1]
    if isinstance(parent, dict):
        if token not in parent:
            raise PatchError(f"path {'/'.join(parts)!r} not found")
        return parent[token]
    if isinstance(parent, list):
        return parent[_index(parent, token, allow_end=False)]
    raise PatchError(f"path {'/'.join(parts)!r} not found")


def _remove(doc: Any, parts: list[str]) -> Any:
    if not parts:
        raise PatchError("cannot remove the whole document")
    parent = _parent(doc, parts)
    token = parts[-1]
    if isinstance(parent, dict):
        if token not in parent:
            raise PatchError(f"cannot remove {'/'.join(parts)!r}: not found")
        return parent.pop(token)
    if isinstance(parent, list):
        return parent.pop(_index(parent, token, allow_end=False))
    raise PatchError(f"cannot remove {'/'.join(parts)!r}")


def _add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent = _parent(doc, parts)
    token = parts[-1]
    if isinstance(parent, dict):
        parent[token] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, token, allow_end=True), value)
    else:
        raise PatchError(f"cannot add at {'/'.join(parts)!r}")
    return doc


def json_patch(original: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise PatchError("a JSON patch is a list of operations")
    doc = copy.deepcopy(original)
    for n, op in enumerate(operations):
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"operation {n}: needs 'op' and 'path'")
        kind = op["op"]
        parts = _pointer(op["path"])
        if kind == "add":
            doc = _add(doc, parts, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            _remove(doc, parts)
        elif kind == "replace":
            _get(doc, parts)  # must exist
            if parts:
                _remove(doc, parts)
            doc = _add(doc, parts, copy.deepcopy(op.get("value")))
        elif kind == "move":
            value = _remove(doc, _pointer(op["from"]))
            doc = _add(doc, parts, value)
        elif kind == "copy":
            doc = _add(doc, parts, copy.deepcopy(_get(doc, _pointer(op["from"]))))
        elif kind == "test":
            if _get(doc, parts) != op.get("value"):
                raise PatchError(f"operation {n}: test failed at {op['path']!r}")
        else:
            raise PatchError(f"operation {n}: unknown op {kind!r}")
    return doc


# --- Strategic merge patch --------------------------------------------------

# (path suffix of field names) -> merge key. Longer suffixes win.
_MERGE_KEYS: dict[tuple[str, ...], str] = {
    ("containers",): "name",
    ("initContainers",): "name",
    ("ephemeralContainers",): "name",
    ("env",): "name",
    ("volumes",): "name",
    ("volumeMounts",): "mountPath",
    ("volumeDevices",): "devicePath",
    ("containers", "ports"): "containerPort",
    ("initContainers", "ports"): "containerPort",
    ("imagePullSecrets",): "name",
    ("hostAliases",): "ip",
    ("conditions",): "type",
    ("ownerReferences",): "uid",
    ("topologySpreadConstraints",): "topologyKey",
    ("podIPs",): "ip",
    ("hostIPs",): "ip",
    ("resourceClaims",): "name",
}
# Exact paths (from the object's root) -> merge key.
_EXACT_MERGE_KEYS: dict[tuple[str, ...], str] = {
    ("spec", "ports"): "port",  # Service
}
# Lists of scalars merged as sets (patchStrategy: merge).
_PRIMITIVE_MERGE = {("metadata", "finalizers"), ("spec", "finalizers")}


def merge_key(path: tuple[str, ...]) -> str | None:
    if path in _EXACT_MERGE_KEYS:
        return _EXACT_MERGE_KEYS[path]
    best: str | None = None
    best_len = 0
    for suffix, key in _MERGE_KEYS.items():
        if len(suffix) > best_len and path[-len(suffix):] == suffix:
            best, best_len = key, len(suffix)
    return best


class _Deleted:
    pass


_DELETE = _Deleted()


def _strip(value: Any) -> Any:
    """A patch value without directives, for values that are inserted whole."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items()
                if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def strategic_merge_patch(original: Any, patch: Any) -> Any:
    result = _smp_map(original, patch, ())
    if result is _DELETE:
        raise PatchError("a strategic merge patch cannot delete the whole object")
    return result


def _smp_map(original: Any, patch: Any, path: tuple[str, ...]) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return _strip({k: v for k, v in patch.items() if k != "$patch"})
    if directive == "delete":
        return _DELETE
    if directive not in (None, "merge"):
        raise PatchError(f"unknown $patch directive {directive!r}")
    result = copy.deepcopy(original) if isinstance(original, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        sub = (*path, key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = _smp_map(result.get(key), value, sub)
            if merged is _DELETE:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _smp_list(result.get(key), value, sub)
        else:
            result[key] = value
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            if isinstance(result.get(name), list):
                result[name] = [x for x in result[name] if x not in value]
    for key, value in patch.items():
        if key.startswith("$setElementOrder/"):
            name = key.split("/", 1)[1]
            if isinstance(result.get(name), list):
                result[name] = _reorder(result[name], value, merge_key((*path, name)))
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _smp_list(original: Any, patch: list[Any], path: tuple[str, ...]) -> list[Any]:
    key = merge_key(path)
    if key is None:
        if path[-2:] in _PRIMITIVE_MERGE or path in _PRIMITIVE_MERGE:
            base = list(original) if isinstance(original, list) else []
            return base + [x for x in patch if x not in base]
        return [_strip(v) for v in patch]
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [_strip(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    result: list[Any] = copy.deepcopy(original) if isinstance(original, list) else []
    for item in patch:
        if not isinstance(item, dict):
            raise PatchError(f"{'.'.join(path)}: expected objects with merge key {key!r}")
        if item.get("$patch") == "delete":
            result = [r for r in result
                      if not (isinstance(r, dict) and r.get(key) == item.get(key))]
            continue
        for idx, existing in enumerate(result):
            if isinstance(existing, dict) and existing.get(key) == item.get(key):
                result[idx] = _smp_map(existing, item, path)
                break
        else:
            result.append(_strip(item))
    return result


def _reorder(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    def ident(x: Any) -> Any:
        if key is not None and isinstance(x, dict):
            return x.get(key)
        return x

    wanted = [ident(o) for o in order]
    placed = [i for w in wanted for i in items if ident(i) == w]
    rest = [i for i in items if ident(i) not in wanted]
    return placed + rest


def apply_patch(original: dict[str, Any], patch: Any, content_type: str) -> Any:
    """Apply ``patch`` of the given media type to ``original``."""
    if content_type == MERGE_PATCH:
        return merge_patch(original, patch)
    if content_type == JSON_PATCH:
        return json_patch(original, patch)
    if content_type in (STRATEGIC_MERGE_PATCH, APPLY_PATCH):
        return strategic_merge_patch(original, patch)
    raise PatchError(f"unsupported patch type {content_type!r}")
