"""Kubernetes Events about pods (what ``kubectl describe`` shows), written best-effort.

Repeats are aggregated as Kubernetes does: the same reason and message about
the same pod update one Event's ``count`` and ``lastTimestamp``, and at most
once per ``REPEAT_WRITE_SECONDS`` (a probe failing every second does not write
an Event every second). A failure to write an Event is logged and never stops
the caller.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Final

from localkube.node.client import EVENTS, ApiClient, JsonObj
from localkube.node.podstatus import now_rfc3339

log = logging.getLogger(__name__)

COMPONENT: Final = "kubelet"
REPEAT_WRITE_SECONDS: Final = 10.0


@dataclass
class _Seen:
    name: str
    namespace: str
    count: int
    written_at: float


class EventRecorder:
    def __init__(self, api: ApiClient, *, host: str) -> None:
        self._api = api
        self._host = host
        self._tasks: set[asyncio.Task[None]] = set()
        self._seen: dict[tuple[str, str, str, str], _Seen] = {}

    def pod(self, pod: JsonObj, reason: str, message: str, *, warning: bool = False,
            field_path: str | None = None, component: str = COMPONENT) -> None:
        """Record an Event about ``pod`` in the background."""
        meta = pod.get("metadata") or {}
        ns = str(meta.get("namespace") or "default")
        key = (str(meta.get("uid", "")), field_path or "", reason, message)
        now = now_rfc3339()
        seen = self._seen.get(key)
        if seen is not None:
            seen.count += 1
            if time.monotonic() - seen.written_at < REPEAT_WRITE_SECONDS:
                return
            seen.written_at = time.monotonic()
            self._spawn(self._api.patch(EVENTS, ns, seen.name,
                                        {"count": seen.count, "lastTimestamp": now}))
            return
        ref: JsonObj = {"kind": "Pod", "apiVersion": "v1", "namespace": ns,
                        "name": meta.get("name"), "uid": meta.get("uid")}
        if field_path:
            ref["fieldPath"] = field_path
        name = f"{meta.get('name')}.{uuid.uuid4().hex[:16]}"
        body: JsonObj = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": ref, "reason": reason, "message": message,
            "type": "Warning" if warning else "Normal", "count": 1,
            "firstTimestamp": now, "lastTimestamp": now,
            "source": {"component": component, "host": self._host},
            "reportingComponent": component, "reportingInstance": self._host,
        }
        self._seen[key] = _Seen(name=name, namespace=ns, count=1, written_at=time.monotonic())
        self._spawn(self._api.create(EVENTS, ns, body))

    def forget(self, pod_uid: str) -> None:
        """Drop what is remembered about a pod that is gone."""
        for key in [k for k in self._seen if k[0] == pod_uid]:
            del self._seen[key]

    def _spawn(self, write: Awaitable[JsonObj]) -> None:
        task = asyncio.create_task(self._write(write))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, write: Awaitable[JsonObj]) -> None:
        try:
            await write
        except Exception as exc:  # API errors and the client's transport errors alike
            log.debug("event not written: %s", exc)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
