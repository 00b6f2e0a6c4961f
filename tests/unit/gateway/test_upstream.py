"""gateway.upstream against small asyncio servers on loopback, each answering as a test needs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from gateway.upstream import (
    BrokenAnswer,
    ClosedBeforeAnswer,
    ConnectFailed,
    Target,
    UpstreamPool,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


def _run(coro: Coroutine[Any, Any, None]) -> None:
    # A private loop, closed after (asyncio.run would orphan the thread's current
    # loop, the one the looptime plugin made for sync tests).
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(coro)
    finally:
        loop.close()


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await reader.readexactly(length)


async def _serve(handler: Handler) -> tuple[asyncio.Server, Target]:
    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
            await reader.read()  # until the client lets the connection go
        finally:
            writer.close()

    server = await asyncio.start_server(closing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, Target.of(f"http://127.0.0.1:{port}/v1/completions")


async def _post(pool: UpstreamPool, target: Target, *, first_byte: float = 5.0
                ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    answer = await pool.post(target, [(b"x-a", b"1")], b'{"model":"m"}', connect_timeout=2,
                             first_byte_timeout=first_byte)
    body = b""
    try:
        while (chunk := await answer.next_chunk(5)) is not None:
            body += chunk
    except BaseException:
        answer.close()
        raise
    answer.release()
    return answer.status, answer.headers, body


def test_sends_the_request_as_given_and_reuses_the_connection() -> None:
    async def main() -> None:
        requests: list[bytes] = []
        connections = 0

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            while True:
                try:
                    requests.append(await _read_request(reader))
                except asyncio.IncompleteReadError:
                    return
                writer.write(OK)

        server, target = await _serve(handler)
        pool = UpstreamPool(asyncio.get_running_loop(), limit=4)
        for _ in range(3):
            status, headers, body = await _post(pool, target)
            assert (status, body) == (200, b"{}")
            assert (b"content-type", b"application/json") in headers
        assert connections == 1
        head, _, body = requests[0].partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"POST /v1/completions HTTP/1.1"
        assert sorted(lines[1:]) == sorted([b"host: " + target.authority.encode(), b"x-a: 1",
                                            b"content-length: 13"])
        assert body == b'{"model":"m"}'
        pool.close()
        server.close()
        await asyncio.sleep(0.05)

    _run(main())


def test_a_chunked_answer_comes_de_chunked_and_one_until_close_ends_at_eof() -> None:
    async def main() -> None:
        async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                         b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")

        async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it")
            await writer.drain()
            writer.close()

        pool = UpstreamPool(asyncio.get_running_loop(), limit=4)
        for handler, expected in ((chunked, b"hello world"), (until_close, b"all of it")):
            server, target = await _serve(handler)
            assert (await _post(pool, target))[2] == expected
            server.close()
        pool.close()
        await asyncio.sleep(0.05)

    _run(main())


def test_failures_are_told_apart() -> None:
    async def main() -> None:
        async def silent_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _read_request(reader)
            writer.close()

        async def cut_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npart")
            await writer.drain()
            writer.close()

        async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _read_request(reader)
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")

        async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _read_request(reader)  # and no answer

        pool = UpstreamPool(asyncio.get_running_loop(), limit=4)
        cases: list[tuple[Handler, type[BaseException]]] = [
            (silent_close, ClosedBeforeAnswer), (cut_body, BrokenAnswer),
            (garbage, BrokenAnswer), (never, TimeoutError)]
        for handler, error in cases:
            server, target = await _serve(handler)
            with pytest.raises(error):
                await _post(pool, target, first_byte=0.3)
            server.close()
        server, target = await _serve(silent_close)
        server.close()
        await server.wait_closed()
        with pytest.raises(ConnectFailed):  # nothing listens there any more
            await _post(pool, target)
        assert pool._open == 0  # every failed connection was let go
        pool.close()
        await asyncio.sleep(0.05)  # the servers' handlers see their clients go

    _run(main())


def test_bad_urls_are_refused() -> None:
    with pytest.raises(ValueError, match="not an http"):
        Target.of("ftp://host/x")
    assert Target.of("https://pod.ns:8443/base/v1/completions").key == ("pod.ns", 8443, True)


def test_beyond_the_limit_a_request_waits_until_a_connection_is_let_go() -> None:
    async def main() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                try:
                    await _read_request(reader)
                except asyncio.IncompleteReadError:
                    return
                writer.write(OK)

        one, target_one = await _serve(handler)
        two, target_two = await _serve(handler)
        pool = UpstreamPool(asyncio.get_running_loop(), limit=1)
        first = await pool.post(target_one, [], b"", connect_timeout=2, first_byte_timeout=5)
        second = asyncio.ensure_future(_post(pool, target_two))
        await asyncio.sleep(0.1)
        assert not second.done()  # the one connection is in use
        assert await first.next_chunk(5) == b"{}"
        first.release()  # a request waits for room: closed rather than kept idle
        assert (await asyncio.wait_for(second, 5))[2] == b"{}"
        assert pool._open == 1
        # Kept idle (nobody waited); a request elsewhere closes it to make room.
        assert (await asyncio.wait_for(_post(pool, target_one), 5))[2] == b"{}"
        assert pool._open == 1
        pool.close()
        one.close()
        two.close()
        await asyncio.sleep(0.05)

    _run(main())


def _pieces(pieces: list[bytes], gap: float, *, end: bool = True, times: int = 1) -> Handler:
    """``times`` chunked answers on a connection, one piece every ``gap`` seconds;
    ``end=False``: silence after the pieces."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(times):
            await _read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            for piece in pieces:
                await asyncio.sleep(gap)
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
            if end:
                writer.write(b"0\r\n\r\n")
    return handler


def _keeper(into: list[bytes]) -> Callable[[bytes], bool]:
    """A writer that keeps what it is given and can always take more."""
    def write(body: bytes) -> bool:
        into.append(body)
        return True
    return write


def test_a_relayed_body_reaches_the_writer_piece_by_piece_and_keeps_the_connection() -> None:
    async def main() -> None:
        pieces = [b"data: %d\n\n" % i for i in range(6)]
        answers = _pieces(pieces, 0.1, times=2)
        connections = 0

        async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            await answers(reader, writer)

        server, target = await _serve(counted)
        pool = UpstreamPool(asyncio.get_running_loop(), limit=1)
        answer = await pool.post(target, [], b"{}", connect_timeout=2, first_byte_timeout=5)
        got: list[bytes] = []
        # Pieces 0.1 s apart for 0.6 s, 0.3 s allowed between two: the one timer
        # measures the silence, not the whole body.
        done = await answer.relay(_keeper(got), 0.3, float("inf"))
        assert done
        assert b"".join(got) == b"".join(pieces)
        assert len(got) >= 3  # handed over as they came, not gathered at the end
        answer.release()
        again = await pool.post(target, [], b"{}", connect_timeout=2, first_byte_timeout=5)
        assert await again.relay(lambda b: True, 0.3, float("inf"))
        again.release()
        assert connections == 1  # the second request went on the kept-alive connection
        pool.close()
        server.close()
        await asyncio.sleep(0.05)

    _run(main())


def test_a_relay_times_out_on_silence_past_its_deadline_and_on_a_break() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        pool = UpstreamPool(loop, limit=4)

        async def relay(handler: Handler, got: list[bytes], within: float,
                        deadline: float) -> None:
            server, target = await _serve(handler)
            answer = await pool.post(target, [], b"{}", connect_timeout=2, first_byte_timeout=5)
            try:
                await answer.relay(_keeper(got), within, deadline)
            finally:
                answer.close()
                server.close()

        got: list[bytes] = []
        started = time.monotonic()
        with pytest.raises(TimeoutError):  # two pieces, then nothing
            await relay(_pieces([b"a", b"b"], 0.05, end=False), got, 0.3, float("inf"))
        assert time.monotonic() - started < 3  # the silence limit ended it, nothing later
        assert b"".join(got) == b"ab"  # what came before the silence was passed on
        got = []
        with pytest.raises(TimeoutError, match="total timeout"):
            await relay(_pieces([b"a"] * 20, 0.05), got, 5, time.monotonic() + 0.3)
        assert 0 < len(got) < 20  # pieces until the deadline, none of the rest

        async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n")
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.close()

        got = []
        with pytest.raises(BrokenAnswer):
            await relay(cut, got, 5, float("inf"))
        assert got == [b"a"]  # the piece before the break was passed on
        pool.close()
        await asyncio.sleep(0.05)

    _run(main())


def test_a_writer_that_is_full_pauses_the_pod_and_loses_nothing() -> None:
    async def main() -> None:
        size = 32 * 1024 * 1024  # past what loopback's socket buffers hold
        sent = 0

        async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal sent
            await _read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
            piece = bytes(range(256)) * 256
            while sent < size:
                writer.write(piece)
                await writer.drain()
                sent += len(piece)

        server, target = await _serve(big)
        pool = UpstreamPool(asyncio.get_running_loop(), limit=1)
        answer = await pool.post(target, [], b"{}", connect_timeout=2, first_byte_timeout=5)
        got = bytearray()
        full = True

        def write(body: bytes) -> bool:
            got.extend(body)
            return not full

        assert not await answer.relay(write, 5, float("inf"))  # full after its first piece
        await asyncio.sleep(0.5)
        assert sent < size  # the pod waits: nothing is read while the writer is full
        full = False
        assert await answer.relay(write, 5, float("inf"))
        assert sent == size
        assert len(got) == size
        assert bytes(got[:512]) == bytes(range(256)) * 2
        answer.release()
        pool.close()
        server.close()
        await asyncio.sleep(0.05)

    _run(main())

