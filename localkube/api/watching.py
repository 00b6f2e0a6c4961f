"""Watch streams: one JSON event per line, as changes are committed.

The request's parameters (``resourceVersion``, ``sendInitialEvents``,
``timeoutSeconds``, ``allowWatchBookmarks``) are read here; the store decides
what the watch sees. Events queued when the watch starts (initial ADDED events,
a replayed history) are sent first; after that each commit writes to the
stream itself through the watcher's sink. A resourceVersion older than the
history is answered, as Kubernetes does, with an ``ERROR`` event carrying a 410
``Status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from localkube.api import errors, tables
from localkube.api.errors import ApiError
from localkube.api.resources import ResourceType
from localkube.api.responses import JSON, dumps, send_chunk, table_request, view
from localkube.api.selectors import FieldSelector, LabelSelector
from localkube.api.store import Event, EventType, Store

INITIAL_END = "BOOKMARK-INITIAL"  # queued after the initial events when asked for


@dataclass(frozen=True)
class WatchParams:
    since: int | None  # None: start with ADDED events for what exists
    initial_end_bookmark: bool
    timeout: float | None
    bookmarks: bool

    @classmethod
    def parse(cls, query: Any) -> WatchParams:
        rv = query.get("resourceVersion", "")
        initial = query.get("sendInitialEvents") in ("true", "1")
        since: int | None
        if rv in ("", "0") or initial:
            since = None
        elif rv.isdigit():
            since = int(rv)
        else:
            raise errors.bad_request(f"invalid resourceVersion {rv!r}")
        timeout: float | None = None
        if query.get("timeoutSeconds"):
            try:
                timeout = float(query["timeoutSeconds"])
            except ValueError:
                raise errors.bad_request("timeoutSeconds must be a number") from None
        return cls(since=since, initial_end_bookmark=initial, timeout=timeout,
                   bookmarks=query.get("allowWatchBookmarks") in ("true", "1"))


def bookmark(rt: ResourceType, rv: int, *, initial_end: bool = False) -> bytes:
    md: dict[str, Any] = {"resourceVersion": str(rv)}
    if initial_end:
        md["annotations"] = {"k8s.io/initial-events-end": "true"}
    return dumps({"type": "BOOKMARK", "object": {
        "kind": rt.kind, "apiVersion": rt.api_version, "metadata": md}}) + b"\n"


def encode(rt: ResourceType, etype: EventType, event: Event, table: str | None,
           headers: bool) -> bytes:
    """One event line; plain JSON lines are cached on the event for every watcher."""
    if table is not None:
        obj = tables.to_table(rt, [event.obj], include=table,
                              resource_version=event.obj["metadata"]["resourceVersion"],
                              headers=headers)
        return dumps({"type": etype, "object": obj}) + b"\n"
    key = etype if event.obj.get("apiVersion") == rt.api_version else (
        f"{etype} {rt.api_version}")
    line = event.encoded.get(key)
    if line is None:
        line = dumps({"type": etype, "object": view(rt, event.obj)}) + b"\n"
        event.encoded[key] = line
    return line


async def stream(
    request: web.Request, store: Store, rt: ResourceType, namespace: str | None, *,
    labels: LabelSelector, fields: FieldSelector, bookmark_interval: float,
) -> web.StreamResponse:
    params = WatchParams.parse(request.query)
    table = table_request(request)
    resp = web.StreamResponse(headers={"Content-Type": JSON,
                                       "Cache-Control": "no-cache, private"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    try:
        watcher = store.watch(rt, namespace, labels=labels, fields=fields, since=params.since)
    except ApiError as exc:
        await resp.write(dumps({"type": "ERROR", "object": exc.status()}) + b"\n")
        await resp.write_eof()
        return resp
    if params.initial_end_bookmark:
        watcher.queue.put_nowait((INITIAL_END, None))  # type: ignore[arg-type]
    deadline = time.monotonic() + params.timeout if params.timeout is not None else None
    first = True

    def line(etype: EventType, event: Event | None) -> bytes:
        nonlocal first
        if etype == INITIAL_END or event is None:
            return bookmark(rt, store.rv, initial_end=True)
        data = encode(rt, etype, event, table, first)
        first = False
        return data

    def sink(etype: EventType, event: Event) -> bool:
        return send_chunk(request, line(etype, event))

    try:
        while True:
            if watcher.sink is None:
                # What was queued first goes out in order; then commits write directly.
                chunks = []
                ended = False
                while not watcher.queue.empty():
                    item = watcher.queue.get_nowait()
                    if item is None:
                        ended = True
                        break
                    chunks.append(line(*item))
                if (chunks and not send_chunk(request, b"".join(chunks))) or ended:
                    break
                watcher.sink = sink
            wait = bookmark_interval if params.bookmarks else 60.0
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    break
            try:
                async with asyncio.timeout(wait):
                    item = await watcher.queue.get()
            except TimeoutError:
                if params.bookmarks and (deadline is None or time.monotonic() < deadline) and (
                        not send_chunk(request, bookmark(rt, store.rv))):
                    break
                continue
            if item is None:
                break
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        store.unwatch(watcher)
    with contextlib.suppress(ConnectionResetError):
        await resp.write_eof()
    return resp
