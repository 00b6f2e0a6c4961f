"""brix.http_guard: writes gathered per loop turn, and the brix.disconnect extension."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from brix.http_guard import DISCONNECT_EXTENSION, CoalescedWrites, guarded_protocol

pytestmark = pytest.mark.unit


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def test_writes_of_one_turn_leave_as_one() -> None:
    raw = _Transport()
    t = CoalescedWrites(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(b"HTTP/1.1 200 OK\r\n\r\n")
    t.write(b"body")
    assert raw.writes == []
    assert t.get_write_buffer_size() == len(b"HTTP/1.1 200 OK\r\n\r\nbody")
    await asyncio.sleep(0)
    assert raw.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    t.write(b"next")
    await asyncio.sleep(0)
    assert raw.writes[-1] == b"next"
    assert t.get_extra_info("peername") == "info:peername"  # the rest is the transport's


async def test_close_sends_what_is_pending_first_and_abort_drops_it() -> None:
    raw = _Transport()
    t = CoalescedWrites(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(b"last words")
    t.close()
    assert raw.writes == [b"last words"]
    assert raw.closed
    raw2 = _Transport()
    t2 = CoalescedWrites(raw2, asyncio.get_running_loop())  # type: ignore[arg-type]
    t2.write(b"never")
    t2.abort()
    await asyncio.sleep(0)
    assert raw2.writes == []
    assert raw2.aborted


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@contextlib.asynccontextmanager
async def _server(app: Any, **options: Any) -> AsyncIterator[_Server]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off",
                            loop="asyncio", http=guarded_protocol(header_timeout=10,
                                                                  max_header_bytes=65536),
                            **options)
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    await asyncio.wait_for(server.ready.wait(), 30)
    try:
        yield server
    finally:
        server.should_exit = True
        await task


def _port(server: uvicorn.Server) -> int:
    return int(server.servers[0].sockets[0].getsockname()[1])


async def test_the_server_calls_back_when_the_client_leaves_before_the_answer() -> None:
    left = asyncio.Event()
    registered = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        scope["extensions"][DISCONNECT_EXTENSION](left.set)
        registered.set()
        await left.wait()  # an answer that never comes

    async with _server(app) as server:
        _, writer = await asyncio.open_connection("127.0.0.1", _port(server))
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        await asyncio.wait_for(registered.wait(), 30)
        writer.close()
        await asyncio.wait_for(left.wait(), 30)  # a bound, not a measured time
        assert left.is_set()


async def test_no_call_back_once_the_answer_has_gone() -> None:
    calls: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        scope["extensions"][DISCONNECT_EXTENSION](lambda: calls.append("left"))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async with _server(app) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", _port(server))
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        body = await asyncio.wait_for(reader.readexactly(2), 30)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        async with asyncio.timeout(30):  # until the server has seen the close
            while server.server_state.connections:  # noqa: ASYNC110 - uvicorn's set, no event
                await asyncio.sleep(0.01)
    assert head.startswith(b"HTTP/1.1 200")
    assert body == b"ok"
    assert calls == []


async def test_the_callback_is_let_go_once_the_answer_has_gone() -> None:
    """A kept-alive connection does not hold its last request's callback (nor what the
    callback holds) while it idles."""

    class Callback:
        def __call__(self) -> None:
            pass

    refs: list[weakref.ref[Callback]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        callback = Callback()
        refs.append(weakref.ref(callback))
        scope["extensions"][DISCONNECT_EXTENSION](callback)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    # Kept alive longer than the wait below: the connection's end would let go of all.
    async with _server(app, timeout_keep_alive=60) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", _port(server))
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        await asyncio.wait_for(reader.readexactly(2), 30)
        assert len(refs) == 1
        async with asyncio.timeout(20):  # the connection open, kept alive
            while refs[0]() is not None:
                gc.collect()
                await asyncio.sleep(0.01)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
