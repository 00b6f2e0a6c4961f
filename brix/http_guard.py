"""A uvicorn HTTP protocol that bounds what a client may cost before its request starts.

uvicorn bounds an idle kept-alive connection (``timeout_keep_alive``), but not
a client that sends its request line and headers slowly (slowloris: a byte at
a time keeps a connection, and its buffers, forever) nor the size of the
headers (httptools, uvicorn's parser here, sets no limit of its own). This
protocol adds both, per request:

- ``header_timeout``: the request line and headers must all arrive within
  this many seconds of the connection opening, or of the request's first byte
  on a kept-alive connection; otherwise 408 and the connection is closed.
- ``max_header_bytes``: the request line and headers, counted as the parser
  reads them; beyond them 431 and the connection is closed (the parse stops
  there: nothing of the request reaches the application).

Both answers are JSON in OpenAI's error shape. The body's own time limit is
the application's (it reads the body; see gateway.completions).

Timers: a head that arrives whole (nearly all do) arms none; the time limit
starts only when a read ends with a head begun and not complete. uvicorn's
idle timer for kept-alive connections (``timeout_keep_alive``) is one per
connection here, re-armed when it fires on a connection busy meanwhile,
rather than one per answer: the same limit, without a timer per request.

It also writes less often: what the application sends within one turn of the
event loop (an answer's status line and headers, then its body) goes to the
socket in one write (``CoalescedWrites``), not one system call per ASGI
message. Measured on the gateway (bench/gateway/RESULTS.md): the socket's
write was a third of its CPU per proxied request, uvicorn making two of its
three writes. Written here because uvicorn has no such option.

And it tells the application when its client leaves without a task of its own
listening: each request's scope carries the ASGI extension
``brix.disconnect``, a function ``register(callback)``; the callback runs
once if the connection is lost before that request's answer has all been
sent (an application served elsewhere falls back to waiting on ``receive``
for ``http.disconnect``, see gateway.proxy).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from brix.openai_errors import error_body

DISCONNECT_EXTENSION = "brix.disconnect"
"""The scope extension: ``register(callback)``, called once if the client leaves first."""

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class CoalescedWrites:
    """A transport whose writes within one turn of the event loop leave as one write.

    The first write of a turn schedules the flush (``call_soon``); the writes
    after it in the same turn join it. ``close`` flushes first, ``abort``
    drops what is pending; everything else is the wrapped transport's.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        self._pending = []
        if not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def write_now(self, data: bytes) -> None:
        """Write at once, after what is pending (for a writer that gathers its own)."""
        if self._pending:
            self.flush()
        self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(d) for d in self._pending)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a request head that is too large."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a time and a size limit on each request's head."""

    header_timeout: float = 10.0
    max_header_bytes: int = 64 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_head = False  # a request's head has begun and is not complete
        self._idle_since: float | None = None  # kept alive with no request since then
        self._head_bytes = 0
        self._head_too_large = False
        self._on_disconnect: tuple[Any, Callable[[], None]] | None = None

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse(self, status: int, message: str, code: str) -> None:
        self._disarm()
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # an answer is being written: no second one
            return
        body = json.dumps(error_body(status, message, code=code)).encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n" % (status, _REASONS[status], len(body)) + body)
        self.transport.close()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        self._refuse(408, f"The request's headers did not all arrive within "
                     f"{self.header_timeout:g} s.", "request_timeout")

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Every write from here on (the protocol's and each request's) goes through it.
        self.transport = CoalescedWrites(transport, self.loop)  # type: ignore[assignment]
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None
        watch, self._on_disconnect = self._on_disconnect, None
        super().connection_lost(exc)
        if watch is not None and not watch[0].response_complete:
            watch[1]()

    def on_response_complete(self) -> None:
        # The answer has all gone: its callback (and all it holds, a request's body
        # say) is let go now, not kept while the connection idles between requests.
        self._on_disconnect = None
        # uvicorn's own, but for its idle timer: uvicorn arms one per answer and
        # cancels it at the next request's first bytes; here one per connection,
        # re-armed when it fires on a connection that was busy meanwhile.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            self._idle_since = None
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_since = now = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_at(
                now + self.timeout_keep_alive, self._idle_check)

    def _unset_keepalive_if_required(self) -> None:
        # (uvicorn calls it at each read) busy again: the idle timer, if armed, stays
        self._idle_since = None

    def _idle_check(self) -> None:
        self.timeout_keep_alive_task = None
        since = self._idle_since
        if since is None:
            return  # busy: armed again when its answer is complete
        due = since + self.timeout_keep_alive
        if self.loop.time() >= due:
            self.timeout_keep_alive_handler()
        else:
            self.timeout_keep_alive_task = self.loop.call_at(due, self._idle_check)

    def _register_disconnect(self, cycle: Any, callback: Callable[[], None]) -> None:
        if cycle.response_complete:
            return
        # One request runs at a time on a connection (pipelined ones wait their turn).
        self._on_disconnect = (cycle, callback)
        if cycle is self.cycle:  # (none pipelined behind it: those keep reading paused)
            # A reader paused (a large body, see uvicorn's flow control) would not
            # see the client leave; waiting on receive() resumes it the same way.
            self.flow.resume_reading()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_header_bytes:
            self._head_too_large = True
            # httptools stops parsing and raises HttpParserError from feed_data;
            # uvicorn then calls send_400_response, which answers 431 below.
            raise _HeadTooLarge

    def send_400_response(self, msg: str) -> None:
        if self._head_too_large:
            self._refuse(431, f"The request's headers are larger than {self.max_header_bytes} "
                         "bytes.", "headers_too_large")
        else:
            super().send_400_response(msg)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head and self._head_timer is None and not self.transport.is_closing():
            # A head begun in this read and not complete: its time runs from now (a
            # head that comes whole, as nearly all do, costs no timer).
            self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._in_head = True

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:  # (not an upgrade)
            extensions: dict[str, Any] = dict(self.scope.get("extensions") or {})
            extensions[DISCONNECT_EXTENSION] = (
                lambda callback: self._register_disconnect(cycle, callback))
            self.scope["extensions"] = extensions


def guarded_protocol(*, header_timeout: float, max_header_bytes: int) -> type[HttpToolsProtocol]:
    """The protocol class with these limits (uvicorn's ``http=`` option takes a class)."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {
        "header_timeout": header_timeout, "max_header_bytes": max_header_bytes,
    })
