"""Kubernetes Events about pods (what ``kubectl describe`` shows), written best-effort.

A failure to write an Event is logged and never stops the caller.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from localkube.node.client import EVENTS, ApiClient, ApiError, JsonObj
from localkube.node.podstatus import now_rfc3339

log = logging.getLogger(__name__)

COMPONENT = "kubelet"


class EventRecorder:
    def __init__(self, api: ApiClient, *, host: str) -> None:
        self._api = api
        self._host = host
        self._tasks: set[asyncio.Task[None]] = set()

    def pod(self, pod: JsonObj, reason: str, message: str, *, warning: bool = False,
            field_path: str | None = None, component: str = COMPONENT) -> None:
        """Record an Event about ``pod`` in the background."""
        meta = pod.get("metadata") or {}
        ns = str(meta.get("namespace") or "default")
        ref: JsonObj = {"kind": "Pod", "apiVersion": "v1", "namespace": ns,
                        "name": meta.get("name"), "uid": meta.get("uid")}
        if field_path:
            ref["fieldPath"] = field_path
        now = now_rfc3339()
        body: JsonObj = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta.get('name')}.{uuid.uuid4().hex[:16]}", "namespace": ns},
            "involvedObject": ref, "reason": reason, "message": message,
            "type": "Warning" if warning else "Normal", "count": 1,
            "firstTimestamp": now, "lastTimestamp": now,
            "source": {"component": component, "host": self._host},
            "reportingComponent": component, "reportingInstance": self._host,
        }
        task = asyncio.create_task(self._write(ns, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, ns: str, body: JsonObj) -> None:
        try:
            await self._api.create(EVENTS, ns, body)
        except (ApiError, OSError, TimeoutError) as exc:
            log.debug("event not written: %s", exc)
        except Exception as exc:  # the client's transport errors, among others
            log.debug("event not written: %s", exc)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
