"""Label and field selectors: parsing and matching. Purely computational.

Label selectors take Kubernetes' string syntax: ``a=b``, ``a==b``, ``a!=b``,
``a in (x,y)``, ``a notin (x,y)``, ``a`` (exists) and ``!a`` (does not exist),
joined by commas. Field selectors take ``path=value``, ``path==value`` and
``path!=value``, where the path is a dotted field of the object
(``metadata.name``, ``status.phase``, ``spec.nodeName``, ``involvedObject.uid``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Op = Literal["=", "!=", "in", "notin", "exists", "!"]


class SelectorError(ValueError):
    """A selector that does not parse; the message says where."""


@dataclass(frozen=True)
class Requirement:
    key: str
    op: Op
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op == "=":
            return present and labels[self.key] in self.values
        if self.op == "in":
            return present and labels[self.key] in self.values
        # "!=" and "notin" match objects without the label, as in Kubernetes.
        return not present or labels[self.key] not in self.values


_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_VALUE = r"[-A-Za-z0-9_.]*"
_TERM = re.compile(
    rf"""\s*(?:
        (?P<not>!)\s*(?P<nkey>{_KEY})
      | (?P<skey>{_KEY})\s*(?P<sop>in|notin)\s*\((?P<set>[^)]*)\)
      | (?P<key>{_KEY})\s*(?P<op>==|!=|=)\s*(?P<value>{_VALUE})
      | (?P<ekey>{_KEY})
    )\s*(?:,|$)""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> LabelSelector:
        if text is None or not text.strip():
            return cls()
        reqs: list[Requirement] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = _TERM.match(text, pos)
            if m is None or m.end() == pos:
                raise SelectorError(
                    f"unable to parse requirement: invalid label selector {text!r} "
                    f"at position {pos}: {text[pos:]!r}"
                )
            pos = m.end()
            if m.group("not"):
                reqs.append(Requirement(m.group("nkey"), "!"))
            elif m.group("skey"):
                values = frozenset(v.strip() for v in m.group("set").split(",") if v.strip())
                op: Op = "in" if m.group("sop") == "in" else "notin"
                reqs.append(Requirement(m.group("skey"), op, values))
            elif m.group("key"):
                op = "!=" if m.group("op") == "!=" else "="
                reqs.append(Requirement(m.group("key"), op, frozenset([m.group("value")])))
            else:
                reqs.append(Requirement(m.group("ekey"), "exists"))
        return cls(tuple(reqs))

    @classmethod
    def from_object(cls, selector: Mapping[str, Any] | None) -> LabelSelector:
        """A ``metav1.LabelSelector`` (matchLabels, matchExpressions)."""
        if not selector:
            return cls()
        reqs = [Requirement(k, "=", frozenset([str(v)]))
                for k, v in (selector.get("matchLabels") or {}).items()]
        ops: dict[str, Op] = {"In": "in", "NotIn": "notin", "Exists": "exists",
                              "DoesNotExist": "!"}
        for expr in selector.get("matchExpressions") or []:
            op = ops.get(expr.get("operator", ""))
            if op is None:
                raise SelectorError(f"unknown matchExpressions operator {expr.get('operator')!r}")
            reqs.append(Requirement(expr["key"], op, frozenset(expr.get("values") or ())))
        return cls(tuple(reqs))

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def __bool__(self) -> bool:
        return bool(self.requirements)

    def __str__(self) -> str:
        parts = []
        for r in self.requirements:
            if r.op == "exists":
                parts.append(r.key)
            elif r.op == "!":
                parts.append(f"!{r.key}")
            elif r.op in ("=", "!="):
                parts.append(f"{r.key}{r.op}{next(iter(r.values))}")
            else:
                parts.append(f"{r.key} {r.op} ({','.join(sorted(r.values))})")
        return ",".join(parts)


@dataclass(frozen=True)
class FieldRequirement:
    path: tuple[str, ...]
    negate: bool
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return (field_value(obj, self.path) == self.value) != self.negate


def field_value(obj: Mapping[str, Any], path: tuple[str, ...]) -> str:
    """The string form of a field, "" when absent (as Kubernetes' field sets do)."""
    cur: Any = obj
    for part in path:
        if not isinstance(cur, Mapping) or part not in cur:
            return ""
        cur = cur[part]
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


_FIELD_TERM = re.compile(
    r"\s*(?P<path>[A-Za-z0-9_.]+)\s*(?P<op>==|!=|=)\s*(?P<value>[^,]*?)\s*(?:,|$)")


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> FieldSelector:
        if text is None or not text.strip():
            return cls()
        reqs = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = _FIELD_TERM.match(text, pos)
            if m is None or m.end() == pos:
                raise SelectorError(
                    f"invalid field selector {text!r} at position {pos}: {text[pos:]!r} "
                    "(expected field=value, field==value or field!=value)"
                )
            pos = m.end()
            reqs.append(FieldRequirement(
                tuple(m.group("path").split(".")), m.group("op") == "!=", m.group("value"),
            ))
        return cls(tuple(reqs))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all(r.matches(obj) for r in self.requirements)

    def exact(self, path: str) -> str | None:
        """The value an ``=`` requirement on ``path`` asks for, if any (to narrow lookups)."""
        want = tuple(path.split("."))
        for r in self.requirements:
            if r.path == want and not r.negate:
                return r.value
        return None

    def __bool__(self) -> bool:
        return bool(self.requirements)
