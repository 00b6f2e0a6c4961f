"""An audit record per request: one JSON line each in a file (``--audit-log``).

Each line: ``user``, ``groups``, ``verb``, and for resource requests ``apiGroup``,
``resource``, ``subresource``, ``namespace``, ``name``; for others ``path``; then
the answer's ``code`` and the authorizer's ``decision`` (``allow``, ``forbid``, or
``unauthenticated``). Like Kubernetes' audit log at the ``Metadata`` level, written
when the answer is complete, except for a watch: recorded (code 200) as soon as it
is allowed, since its stream may last for minutes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO, Any

from localkube.api.rbac import Attributes


def record(attrs: Attributes, *, code: int, decision: str) -> dict[str, Any]:
    """The audit line of one request."""
    out: dict[str, Any] = {"ts": round(time.time(), 3), "user": attrs.user.name,
                           "groups": list(attrs.user.groups), "verb": attrs.verb}
    if attrs.resource_request:
        out.update(apiGroup=attrs.api_group, resource=attrs.resource,
                   subresource=attrs.subresource, namespace=attrs.namespace, name=attrs.name)
    else:
        out["path"] = attrs.path
    out.update(code=code, decision=decision)
    return out


class AuditLog:
    """Appends records to ``path`` (line-buffered, so a reader sees whole lines)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[str] | None = path.open("a", encoding="utf-8", buffering=1)

    def write(self, rec: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(rec, separators=(",", ":")) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read(path: Path) -> list[dict[str, Any]]:
    """Every record in an audit log file."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out
