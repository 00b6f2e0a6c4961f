"""The gateway's HTTP/1.1 client to the pods: one POST, its answer as it arrives.

Written here, not taken from aiohttp, for its cost: measured in bench/gateway
(RESULTS.md, issue 18) aiohttp's client was the largest single share of the
gateway's CPU per proxied request (building a request object, its payload,
a task per request to write the body on Python 3.11, timers per read). This
client is an ``asyncio.Protocol`` with httptools' response parser (the parser
uvicorn uses), one write per request, and a pool of kept-alive connections per
endpoint. It does only what the proxy needs:

- ``post(host, port, path, headers, body)``: the request goes out as given
  (the caller's headers, a Host and a Content-Length; nothing of its own);
- the answer's status and raw headers, then its body chunk by chunk, bytes
  untouched (a chunked body arrives de-chunked, as the server will re-frame it);
- timeouts: connect, first byte (the answer's head), between body chunks;
- ``Answer.relay``: the rest of a body handed to a writer straight from the
  connection's callbacks, with no turn of the event loop per chunk (a stream's
  tokens); while the writer's client is behind, the body is held as for
  ``next_chunk``;
- a connection goes back to the pool only when its answer was read whole and
  the server keeps it alive; ``close`` drops it (the pod sees the disconnect).

Errors: ``ConnectFailed`` (refused, reset before any answer, or no connection
in time), ``ClosedBeforeAnswer`` (the server closed with no answer at all: a
kept-alive connection it had closed, worth one more try), ``BrokenAnswer``
(the answer broke: unparsable, or cut off), ``TimeoutError``.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httptools


class UpstreamError(Exception):
    """A request to a pod failed."""


class ConnectFailed(UpstreamError):
    """No connection, or one reset before any answer."""


class ClosedBeforeAnswer(UpstreamError):
    """The pod closed the connection without answering."""


class BrokenAnswer(UpstreamError):
    """The answer could not be parsed, or broke off."""


_HIGH_WATER = 256 * 1024
"""Bytes of an answer held for a slow client before reading from the pod pauses."""


@dataclass(frozen=True)
class Target:
    """Where a request goes: an endpoint's URL and a path, parsed once."""

    host: str
    port: int
    tls: bool
    authority: str
    request_line: bytes = field(repr=False)
    """``POST <path> HTTP/1.1`` and the Host header, ready to send."""

    @property
    def key(self) -> tuple[str, int, bool]:
        return (self.host, self.port, self.tls)

    @classmethod
    def of(cls, url: str) -> Target:
        """From ``http(s)://host[:port][/base]/path`` (ValueError if it is not one)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s) URL")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        line = b"POST %s HTTP/1.1\r\nhost: %s\r\n" % (
            (parts.path or "/").encode(), parts.netloc.encode())
        return cls(parts.hostname, port, tls, parts.netloc, line)


class _Connection(asyncio.Protocol):
    """One connection to a pod; one request at a time."""

    def __init__(self, pool: UpstreamPool, key: tuple[str, int, bool]) -> None:
        self.pool = pool
        self.key = key
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.lost = False
        self.in_use = False
        self.paused = False
        self.idle_since = 0.0
        # While an Answer relays its body (Answer.relay): where each piece goes, the
        # longest silence allowed, when the last piece came, and the answer's deadline.
        self.relay: Callable[[bytes], bool] | None = None
        self.relay_within = 0.0
        self.relay_deadline = 0.0
        self.last_body = 0.0
        self.relay_timer: asyncio.TimerHandle | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.framed = False  # a Content-Length or chunked: EOF is not the end
        self.head_done = False
        self.keep_alive = False
        self.complete = False
        self.error: Exception | None = None  # an UpstreamError, or a TimeoutError while relaying
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.waiter: asyncio.Future[None] | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a TCP transport

    def data_received(self, data: bytes) -> None:
        if not self.in_use:  # bytes nobody asked for: the connection cannot be trusted
            self.transport.close()  # type: ignore[union-attr]
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(BrokenAnswer(f"unparsable answer: {exc}"))
            self.transport.close()  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.pool._forget(self)
        if self.complete:
            return
        if not self.head_done:
            if exc is not None:
                self._fail(ConnectFailed(f"{type(exc).__name__}: {exc}"))
            else:
                self._fail(ClosedBeforeAnswer("Server disconnected"))
        elif not self.framed and exc is None:
            self.complete = True  # an answer read until the connection closed
            self._wake()
        else:
            self._fail(BrokenAnswer("the answer broke off: " + (
                f"{type(exc).__name__}: {exc}" if exc is not None else "connection closed")))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length" or (lower == b"transfer-encoding"
                                          and b"chunked" in value.lower()):
            self.framed = True

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if self.status < 200:  # 1xx: an interim answer; the real one follows
            self.headers = []
            self.framed = False
            return
        self.head_done = True
        # (asked here: httptools answers False once the message is complete)
        self.keep_alive = self.parser.should_keep_alive()
        self._wake()

    def on_body(self, body: bytes) -> None:
        relay = self.relay
        if relay is not None:
            now = time.monotonic()
            self.last_body = now
            if not relay(body):
                # The client takes no more for now: the relay returns, the caller waits
                # for it to drain, then relays again. What comes meanwhile is held (below),
                # and reading pauses past _HIGH_WATER.
                self.relay = None
                self._wake()
            elif now > self.relay_deadline:
                self.relay = None
                self._fail(TimeoutError("total timeout"))
            return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self.paused:
            # The client takes the answer slower than the pod sends it: read no more
            # until it has caught up (the pod's socket buffers fill, and it waits).
            self.paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        self._wake()

    def on_message_complete(self) -> None:
        if self.status < 200:
            return
        self.complete = True
        self._wake()

    # the request's side
    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    async def _wait(self, seconds: float) -> None:
        # A bare timer on the future (asyncio.timeout costs a context manager and a
        # task cancellation on top; this wait is on every request's path).
        waiter = self.waiter = self.loop.create_future()
        timer = self.loop.call_later(seconds, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiter = None

    def take_held(self) -> bytes | None:
        """All the body held since it was last taken, in one piece (None: nothing), and
        reading from the pod resumed if it had paused. One piece: fewer, larger writes
        to a client that has fallen behind, as aiohttp's readany did."""
        chunks = self.chunks
        if not chunks:
            return None
        chunk = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.buffered = 0
        if self.paused:
            self.paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]
        return chunk

    def _relay_idle(self) -> None:
        """The relay's one timer: re-armed for what is left while pieces keep coming."""
        self.relay_timer = None
        if self.relay is None:
            return
        left = self.last_body + self.relay_within - time.monotonic()
        if left > 0:
            self.relay_timer = self.loop.call_later(left, self._relay_idle)
            return
        self.relay = None
        self._fail(TimeoutError())


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class Answer:
    """An answer from a pod: status, raw headers, then its body by ``next_chunk``."""

    __slots__ = ("_conn", "_done", "headers", "status")

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self._done = False
        self.status = conn.status
        self.headers = conn.headers

    def header(self, name: bytes) -> bytes | None:
        """The first header of that (lower-case) name."""
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def at_eof(self) -> bool:
        """True when the whole body has arrived and been taken."""
        conn = self._conn
        return conn.complete and not conn.chunks

    async def next_chunk(self, within: float) -> bytes | None:
        """What has come of the body since (None at its end); TimeoutError when none
        comes within ``within`` seconds, BrokenAnswer when it broke off."""
        conn = self._conn
        while True:
            chunk = conn.take_held()
            if chunk is not None:
                return chunk
            if conn.complete:
                return None
            if conn.error is not None:
                raise conn.error
            await conn._wait(within)

    async def relay(self, write: Callable[[bytes], bool], within: float,
                    deadline: float) -> bool:
        """Hand the rest of the body to ``write`` as it arrives, from the connection's
        callbacks: no task step, future or timer per chunk (what ``next_chunk`` costs).

        ``write`` answers whether its client can take more now. True once the body has
        all come; False when ``write`` said no: what comes next is held, as for
        ``next_chunk`` (reading from the pod pauses past ``_HIGH_WATER``), until the
        caller, its client drained, relays again. TimeoutError when nothing comes
        for ``within`` seconds (one timer for the whole body) or a piece comes after
        ``deadline`` (``time.monotonic()``, checked as pieces arrive); BrokenAnswer when the
        body broke off.
        """
        conn = self._conn
        held = conn.take_held()
        if held is not None and not write(held):
            return False
        if conn.complete:
            return True
        if conn.error is not None:
            raise conn.error
        loop = conn.loop
        conn.relay, conn.relay_within, conn.relay_deadline = write, within, deadline
        conn.last_body = time.monotonic()
        waiter = conn.waiter = loop.create_future()
        conn.relay_timer = loop.call_later(within, conn._relay_idle)
        try:
            await waiter
        finally:
            conn.relay = None
            conn.waiter = None
            if conn.relay_timer is not None:
                conn.relay_timer.cancel()
                conn.relay_timer = None
        if conn.complete:
            return True
        if conn.error is not None:
            raise conn.error
        return False

    def release(self) -> None:
        """Done with the answer: the connection goes back to the pool if it can be reused."""
        if self._done:
            return
        self._done = True
        conn = self._conn
        if conn.complete and conn.keep_alive and not conn.chunks and not conn.lost \
                and conn.error is None:
            conn.pool._give_back(conn)
        else:
            conn.pool._drop(conn)

    def close(self) -> None:
        """Done with the answer, read or not: the connection is closed."""
        if not self._done:
            self._done = True
            self._conn.pool._drop(self._conn)


class UpstreamPool:
    """Kept-alive connections to the pods, at most ``limit`` open at once."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, limit: int,
                 keepalive_timeout: float = 30.0) -> None:
        self.loop = loop
        self.limit = limit
        self.keepalive_timeout = keepalive_timeout
        self._idle: dict[tuple[str, int, bool], list[_Connection]] = {}
        self._open = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self.closed = False
        self._tls_context: ssl.SSLContext | None = None

    async def post(self, target: Target, headers: Sequence[tuple[bytes, bytes]], body: bytes,
                   *, connect_timeout: float, first_byte_timeout: float) -> Answer:
        """Send the request on a kept-alive or new connection; its answer once its head came."""
        conn = self._reuse(target.key)
        if conn is None:
            conn = await self._connect(target, connect_timeout)
        conn._reset()
        conn.in_use = True
        head = [target.request_line]
        for name, value in headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(b"content-length: %d\r\n\r\n" % len(body))
        head.append(body)
        conn.transport.write(b"".join(head))  # type: ignore[union-attr]
        try:
            while not conn.head_done:
                if conn.error is not None:
                    raise conn.error
                await conn._wait(first_byte_timeout)
        except BaseException:
            self._drop(conn)
            raise
        return Answer(conn)

    def _reuse(self, key: tuple[str, int, bool]) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.lost and now - conn.idle_since < self.keepalive_timeout:
                return conn
            self._drop(conn)
        return None

    async def _connect(self, target: Target, within: float) -> _Connection:
        if self.closed:
            raise ConnectFailed("the client is closed")
        if self._open >= self.limit:
            self._evict_idle()
        while self._open >= self.limit:  # (no time limit on a free slot, as before)
            waiter = self.loop.create_future()
            self._waiting.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken but leaving: the slot goes to the next
                raise
            finally:
                if waiter in self._waiting:
                    self._waiting.remove(waiter)
        self._open += 1
        try:
            async with asyncio.timeout(within):
                _, conn = await self.loop.create_connection(
                    lambda: _Connection(self, target.key), target.host, target.port,
                    ssl=self._tls() if target.tls else None,
                    server_hostname=target.host if target.tls else None)
        except BaseException as exc:
            self._open -= 1
            self._wake_one()
            if isinstance(exc, TimeoutError):
                raise ConnectFailed(f"Connection timeout to {target.authority} "
                                    f"(no connection within {within:g} s)") from exc
            if isinstance(exc, OSError):
                raise ConnectFailed(f"Cannot connect to {target.authority}: {exc}") from exc
            raise
        return conn

    def _evict_idle(self) -> None:
        """Close the longest-idle connection, to another pod say, to make room."""
        oldest: _Connection | None = None
        for idle in self._idle.values():
            if idle and (oldest is None or idle[0].idle_since < oldest.idle_since):
                oldest = idle[0]
        if oldest is not None:
            self._drop(oldest)

    def _tls(self) -> ssl.SSLContext:
        if self._tls_context is None:
            self._tls_context = ssl.create_default_context()
        return self._tls_context

    def _give_back(self, conn: _Connection) -> None:
        if self.closed or self._waiting:  # (a request waits for room: this makes it)
            self._drop(conn)
            return
        conn.in_use = False
        conn.idle_since = time.monotonic()
        self._idle.setdefault(conn.key, []).append(conn)

    def _drop(self, conn: _Connection) -> None:
        if conn.transport is not None and not conn.transport.is_closing():
            conn.transport.close()
        self._forget(conn)

    def _forget(self, conn: _Connection) -> None:
        """Count a connection closed once (dropped here, or lost by the peer)."""
        if conn.idle_since == -1.0:
            return
        conn.idle_since = -1.0
        idle = self._idle.get(conn.key)
        if idle is not None and conn in idle:
            idle.remove(conn)
        self._open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        """Close every idle connection; those in use close when their answers are done."""
        self.closed = True
        for idle in list(self._idle.values()):
            for conn in list(idle):
                self._drop(conn)
        self._idle.clear()
