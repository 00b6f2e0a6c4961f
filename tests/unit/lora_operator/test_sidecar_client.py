"""The sidecar client's error classification (httpx MockTransport: no sockets).

Each test drives its coroutine in a fresh event loop (see ``in_new_loop``).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from lora_operator.model import Loaded, PodInfo
from lora_operator.sidecar import SidecarError, Sidecars
from tests.unit.lora_operator._loop import in_new_loop

POD = PodInfo(namespace="ns", name="p", model="m", ip="10.0.0.9", ready=True, port=8080)
Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler) -> Sidecars:
    return Sidecars(timeout=1.0, max_concurrent=4, transport=httpx.MockTransport(handler))


def openai_error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, "type": "x",
                                                  "param": None, "code": "c"}})


@in_new_loop
async def test_list_load_unload_speak_the_management_api() -> None:
    seen: list[tuple[str, str, str | None, bytes]] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append((req.method, str(req.url), req.headers.get("authorization"), req.content))
        if req.method == "GET":
            return httpx.Response(200, json={"object": "list", "data": [
                {"name": "sql", "source": "file:///a", "sha256": None}]})
        if req.method == "POST":
            return httpx.Response(201, json={"name": "sql", "status": "loaded"})
        return httpx.Response(200, json={"name": "sql", "status": "unloaded"})

    sc = client(handler)
    try:
        assert await sc.list(POD, token="t0k") == (Loaded("sql", "file:///a"),)
        await sc.load(POD, name="sql", source="https://h/a.tgz", sha256="f" * 64, token=None)
        await sc.unload(POD, name="a b", token="t0k")
    finally:
        await sc.aclose()
    assert seen[0][:3] == ("GET", "http://10.0.0.9:8080/v1/adapters", "Bearer t0k")
    assert seen[1][0] == "POST"
    assert seen[1][2] is None
    assert json.loads(seen[1][3]) == {"name": "sql", "source": "https://h/a.tgz",
                                      "sha256": "f" * 64}
    assert seen[2][:2] == ("DELETE", "http://10.0.0.9:8080/v1/adapters/a%20b")


@pytest.mark.parametrize(
    ("response", "kind", "needle"),
    [
        (openai_error(400, "path is outside the adapter roots"), "refused", "outside"),
        (httpx.Response(422, json={"detail": "bad body"}), "refused", "bad body"),
        (openai_error(401, "missing token"), "unauthorized", "401"),
        (openai_error(503, "engine down"), "unreachable", "engine down"),
        (httpx.Response(502, text="gateway"), "unreachable", "502"),
    ],
)
@in_new_loop
async def test_load_failures_are_classified(response: httpx.Response, kind: str,
                                            needle: str) -> None:
    sc = client(lambda _: response)
    try:
        with pytest.raises(SidecarError) as exc:
            await sc.load(POD, name="sql", source="file:///x", sha256=None, token=None)
    finally:
        await sc.aclose()
    assert exc.value.kind == kind
    assert needle in exc.value.message


@in_new_loop
async def test_connection_errors_and_timeouts_are_unreachable() -> None:
    def refuse(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=req)

    def slow(req: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=req)

    for handler, needle in ((refuse, "connection refused"), (slow, "no answer within 1s")):
        sc = client(handler)
        try:
            with pytest.raises(SidecarError) as exc:
                await sc.list(POD, token=None)
        finally:
            await sc.aclose()
        assert exc.value.kind == "unreachable"
        assert needle in exc.value.message


@in_new_loop
async def test_unloading_what_is_not_there_is_fine_and_a_garbled_list_is_not() -> None:
    sc = client(lambda r: httpx.Response(404) if r.method == "DELETE"
                else httpx.Response(200, json={"what": 1}))
    try:
        await sc.unload(POD, name="sql", token=None)
        with pytest.raises(SidecarError, match="bad answer"):
            await sc.list(POD, token=None)
    finally:
        await sc.aclose()


@in_new_loop
async def test_a_pod_without_an_ip_is_not_called() -> None:
    sc = client(lambda _: pytest.fail("no call expected"))
    try:
        with pytest.raises(SidecarError, match="no IP"):
            await sc.list(PodInfo(namespace="ns", name="p", model="m", ip=None, ready=True),
                          token=None)
    finally:
        await sc.aclose()


@in_new_loop
async def test_a_connection_closed_under_a_request_is_tried_once_more() -> None:
    calls = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req.method)
        if len(calls) == 1:
            raise httpx.RemoteProtocolError("Server disconnected", request=req)
        return httpx.Response(200, json={"name": "sql", "status": "unloaded"})

    sc = client(handler)
    try:
        await sc.unload(POD, name="sql", token=None)
    finally:
        await sc.aclose()
    assert calls == ["DELETE", "DELETE"]


@in_new_loop
async def test_loading_gets_the_longer_timeout() -> None:
    seen: dict[str, float] = {}

    def handler(req: httpx.Request) -> httpx.Response:
        seen[req.method] = req.extensions["timeout"]["read"]
        return httpx.Response(200, json={"object": "list", "data": []})

    sc = Sidecars(timeout=3.0, load_timeout=300.0, max_concurrent=2,
                  transport=httpx.MockTransport(handler))
    try:
        await sc.list(POD, token=None)
        await sc.load(POD, name="sql", source="file:///a", sha256=None, token=None)
        await sc.unload(POD, name="sql", token=None)
    finally:
        await sc.aclose()
    assert seen == {"GET": 3.0, "POST": 300.0, "DELETE": 3.0}
