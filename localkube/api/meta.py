"""Small helpers on object metadata and time."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def human_age(text: str | None, *, at: dt.datetime | None = None) -> str:
    """``5s``, ``3m``, ``2h``, ``4d`` as kubectl shows ages; ``<unknown>`` when absent."""
    when = parse_time(text)
    if when is None:
        return "<unknown>"
    secs = max(0, int(((at or now()) - when).total_seconds()))
    if secs < 120:
        return f"{secs}s"
    mins = secs // 60
    if mins < 10:
        return f"{mins}m{secs % 60}s" if secs % 60 else f"{mins}m"
    if mins < 180:
        return f"{mins}m"
    hours = mins // 60
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d"


def name_problem(name: str, *, label: bool = False) -> str | None:
    """Why ``name`` is not a valid object name (DNS-1123 subdomain or label), or None."""
    limit = 63 if label else 253
    rx = _DNS_LABEL if label else _DNS_SUBDOMAIN
    if len(name) > limit:
        return f"must be no more than {limit} characters"
    if not rx.fullmatch(name):
        what = "RFC 1123 label" if label else "RFC 1123 subdomain"
        return (f"a lowercase {what} must consist of lower case alphanumeric characters, "
                "'-' or '.', and must start and end with an alphanumeric character")
    return None


def meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, Mapping) else {}


def get_path(obj: Any, dotted: str) -> Any:
    """The value at a simple JSON path (``.spec.replicas``), or None."""
    cur = obj
    for part in [p for p in dotted.split(".") if p]:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def set_path(obj: dict[str, Any], dotted: str, value: Any) -> None:
    """Set a simple JSON path in place, creating maps on the way (``obj`` must be a copy)."""
    parts = [p for p in dotted.split(".") if p]
    cur = obj
    for part in parts[:-1]:
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[part] = nxt
        cur = nxt
    cur[parts[-1]] = value
