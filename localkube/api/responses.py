"""How the API writes JSON answers, chunks of a stream, and objects in a version."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from localkube.api.resources import ResourceType

JSON = "application/json"


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=dumps(obj), status=status, content_type=JSON)


def view(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """The object as served through ``rt``'s version (no field conversion, as a CRD's
    ``None`` conversion strategy: the apiVersion is the one asked for)."""
    if obj.get("apiVersion") == rt.api_version:
        return obj
    return {**obj, "apiVersion": rt.api_version}


def table_request(request: web.Request) -> str | None:
    """``include`` (Metadata, Object, None) when the client asked for a Table, else None."""
    accept = request.headers.get("Accept", "")
    first = accept.split(",")[0]
    if "as=Table" not in first:
        return None
    return request.query.get("includeObject", "Metadata")


def send_chunk(request: web.Request, data: bytes) -> bool:
    """Write one chunk of a chunked response straight to the socket; False once it is gone.

    The watch stream is the hot path of every controller: this skips the per-write
    work of aiohttp's writer (the framing is the same, so both may be mixed; a
    ``StreamResponse`` has sent its headers once prepared). The transport buffers
    what a slow client has not read yet.
    """
    transport = request.transport
    if transport is None or transport.is_closing():
        return False
    transport.write(b"%x\r\n%b\r\n" % (len(data), data))
    return True
