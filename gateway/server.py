"""The gateway's HTTP protocol: the completion routes served straight from the parser.

uvicorn serves every request the same way: an ASGI scope (a dict, with a copy
of the app's state), a ``RequestResponseCycle`` with an ``asyncio.Event``, a
task that runs the app, ``receive`` waiting on that event for the body, and
``send`` checking each header with two regular expressions. On the gateway's
hot path that was about a fifth of its CPU per proxied request
(bench/gateway/RESULTS.md, issue 18). This protocol (uvicorn's httptools
protocol with brix.http_guard's limits) takes ``POST /v1/completions`` and
``POST /v1/chat/completions`` before any of that:

- the headers go to ``Completions.before_body`` as the parser completes
  them (API key, room, announced size: answered at once, as before);
- the body is gathered from the parser's callbacks, bounded in size and, only
  when it does not come with its head, in time (one timer, armed then);
- once it is all in, ``Completions.after_body`` checks it and the one task of
  the request runs the ``ProxyCall``, whose ``send`` writes to the socket
  (the status line from a table, the server's headers joined once a second);
  the rest of a body that comes in pieces (a stream's tokens) is written
  from the pod's connection's callbacks (``write_body``), with no task step
  per piece;
- a client that leaves is told to the call through brix.http_guard's
  disconnect callback, as under ASGI.

Pipelined requests take their turn as uvicorn's do (its queue, reading paused
meanwhile); keep-alive, ``Connection: close``, graceful shutdown and the idle
timer are uvicorn's. Every other request (other paths and methods, a request
with ``Expect: 100-continue``, an upgrade, an absolute URL) goes to the ASGI
app as before, so behaviour is one: the same checks, answers and metrics.

Written by hand because no maintained Python server offers it: uvicorn has
no hook below ASGI, and granian (Rust) cannot answer its head limits in
OpenAI's error shape nor tell the proxy of a client leaving without a task.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from typing import Any

from starlette.types import Message
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from brix.http_guard import CoalescedWrites, GuardedHttpToolsProtocol
from brix.openai_errors import error_body
from gateway.completions import PATHS, Completions, Head, Refusal, read_head
from gateway.proxy import ProxyCall, UpstreamCutOff

log = logging.getLogger(__name__)

_FAST_PATHS = frozenset(p.encode() for p in PATHS)
# uvicorn's checks of an answer's header names and values, run once over all of them.
_BAD_NAME = re.compile(b'[\x00-\x1f\x7f()<>@,;:\\[\\]={} \t\\\\"]')
_BAD_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")
_INTERNAL_BODY = json.dumps(error_body(
    500, "the gateway failed on this request (its log says why)",
    code="internal_error")).encode()
# What a request gets when its call raises before answering: OpenAI's shape, as every
# other error of the gateway.
INTERNAL_ERROR = (b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\n"
                  b"content-length: " + str(len(_INTERNAL_BODY)).encode()
                  + b"\r\nconnection: close\r\n\r\n" + _INTERNAL_BODY)


class _NoEvent:
    """What uvicorn's ``connection_lost`` sets on a cycle: nothing waits on it here."""

    def set(self) -> None:
        pass


_NO_EVENT = _NoEvent()


class FastCycle:
    """One completion request served by the protocol (uvicorn's cycle, for this path).

    It has the attributes uvicorn's protocol reads of a cycle
    (``response_complete``, ``keep_alive``, ``disconnected``,
    ``message_event``), so the protocol's pipelining, shutdown and
    disconnect handling treat it as one of theirs.
    """

    message_event = _NO_EVENT

    def __init__(self, protocol: GatewayProtocol, head: Head, path: str,
                 keep_alive: bool) -> None:
        self.protocol = protocol
        self.completions = protocol.completions
        self.transport: CoalescedWrites = protocol.transport  # type: ignore[assignment]
        self.pending_head = b""  # the status line and headers, sent with the first body
        self.head = head
        self.path = path
        self.keep_alive = keep_alive
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self.chunked = False
        self.expected_length = 0
        self.begun = False  # its turn came (a pipelined request waits for the one before)
        self.admitted = False  # holds a place in admission: left once, when it is over
        self.complete = False  # the whole body has come
        self.too_large = False
        self.chunks: list[bytes] = []
        self.size = 0
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None

    # from the parser
    def on_body(self, body: bytes) -> None:
        if self.response_complete or self.too_large:
            return  # answered already (or about to be): the rest of the body is dropped
        self.size += len(body)
        if self.size > self.completions.max_body_bytes:
            self.too_large = True
            self.chunks = []
            if self.admitted:
                self.refuse(self.completions.too_large)
            return
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.complete = True
        self._stop_timer()
        if self.admitted and not self.response_complete:
            self._start()

    def begin(self, *, from_parser: bool) -> None:
        """Its turn: the checks on the head; then, with the body all in, the call."""
        self.begun = True
        refusal = self.completions.before_body(self.head)
        if refusal is not None:
            self.refuse(refusal)
            return
        self.admitted = True
        if self.too_large:
            self.refuse(self.completions.too_large)
        elif self.complete:
            self._start()
        elif not from_parser:
            self.arm_timer()  # (from the parser, data_received arms it if the body lags)

    def arm_timer(self) -> None:
        if self.timer is None:
            self.timer = self.protocol.loop.call_later(self.completions.body_timeout,
                                                      self._body_late)

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _body_late(self) -> None:
        self.timer = None
        if self.admitted and not self.complete and not self.response_complete:
            self.refuse(self.completions.body_late)

    def lost(self) -> None:
        """The connection is gone (a running call hears of it through its callback)."""
        if not self.response_complete:
            self.disconnected = True
        self._stop_timer()
        if self.task is None:
            self._leave()

    def _leave(self) -> None:
        if self.admitted:
            self.admitted = False
            self.completions.proxy.admission.leave()

    def _start(self) -> None:
        chunks = self.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks = []
        call = self.completions.after_body(self.head, self.path, body)
        if isinstance(call, Refusal):
            self.refuse(call)
            return
        protocol = self.protocol
        task = protocol.loop.create_task(self._run(call))
        self.task = task
        protocol.tasks.add(task)
        task.add_done_callback(protocol.tasks.discard)

    async def _run(self, call: ProxyCall) -> None:
        try:
            await call.serve(self.send, self.register, writer=self)
        except UpstreamCutOff:
            self.transport.close()  # the answer broke after it started (logged by the proxy)
        except Exception:
            log.exception("the completion call failed")
            if not self.response_started and not self.disconnected:
                self.response_started = self.response_complete = True
                self.transport.write(INTERNAL_ERROR)
            self.transport.close()
        else:
            if not self.response_complete and not self.disconnected:
                self.transport.close()
        finally:
            self._leave()

    def register(self, callback: Callable[[], None]) -> None:
        self.protocol._register_disconnect(self, callback)

    # the answer
    def refuse(self, refusal: Refusal) -> None:
        """Answer with an error of the gateway's own, now."""
        self._stop_timer()
        self._leave()
        if self.response_started or self.disconnected:
            return
        start, body = self.completions.refused(self.head, refusal)
        self.write(start)
        self.write(body)

    async def send(self, message: Message) -> None:
        flow = self.protocol.flow
        if flow.write_paused and not self.disconnected:
            await flow.drain()
        self.write(message)

    # gateway.proxy.BodyWriter: the body after its first piece, from the pod's callbacks
    def write_body(self, body: bytes) -> bool:
        if self.disconnected or not body:
            return True  # (gone: the call is being cancelled, its pieces go nowhere)
        if self.chunked:
            self.transport.write_now(b"%x\r\n%s\r\n" % (len(body), body))
        else:
            self.expected_length -= len(body)  # (the pod's parser stops at its length)
            self.transport.write_now(body)
        return not self.protocol.flow.write_paused

    async def drain(self) -> None:
        flow = self.protocol.flow
        if flow.write_paused and not self.disconnected:
            await flow.drain()

    def write(self, message: Message) -> None:
        """One ASGI message to the socket, framed as uvicorn frames it."""
        if self.disconnected:
            return
        if not self.response_started:
            if message["type"] != "http.response.start":
                raise RuntimeError(f"Expected 'http.response.start', got {message['type']!r}")
            self.response_started = True
            status = message["status"]
            headers: list[tuple[bytes, bytes]] = message.get("headers", [])
            if (_BAD_NAME.search(b"".join([n for n, _ in headers]))
                    or _BAD_VALUE.search(b"\t".join([v for _, v in headers]))):
                raise RuntimeError("Invalid HTTP header name or value.")
            content = [STATUS_LINE[status], self.protocol.server_headers()]
            length = None
            for name, value in headers:
                if name == b"content-length":
                    if length is None:
                        length = value
                elif name == b"connection" and b"close" in value.lower():
                    self.keep_alive = False
                content += (name, b": ", value, b"\r\n")
            if length is not None:
                self.expected_length = int(length)
            elif status not in (204, 304):
                self.chunked = True
                content.append(b"transfer-encoding: chunked\r\n")
            if not self.keep_alive:
                content.append(b"connection: close\r\n")
            content.append(b"\r\n")
            self.pending_head = b"".join(content)
            return
        if self.response_complete:
            raise RuntimeError(f"Unexpected {message['type']!r} after the answer was complete")
        body: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        if self.chunked:
            data = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
            if not more:
                data += b"0\r\n\r\n"
        else:
            self.expected_length -= len(body)
            if self.expected_length < 0:
                raise RuntimeError("Response content longer than Content-Length")
            data = body
        if self.pending_head:
            # The head and the first of the body leave in one write, at once: no turn
            # of the loop (brix.http_guard's gathering) between them.
            data = self.pending_head + data
            self.pending_head = b""
        if data:
            self.transport.write_now(data)
        if not more:
            if self.expected_length != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            if not self.keep_alive:
                self.transport.close()
            self.protocol.on_response_complete()


class GatewayProtocol(GuardedHttpToolsProtocol):
    """brix.http_guard's protocol, with the completion routes served by ``FastCycle``."""

    completions: Completions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._server_headers: tuple[object, bytes] = (None, b"")

    def server_headers(self) -> bytes:
        """uvicorn's own answer headers (Date, Server), joined once per change (a second)."""
        default = self.server_state.default_headers
        cached, joined = self._server_headers
        if cached is not default:
            joined = b"".join([n + b": " + v + b"\r\n" for n, v in default])
            self._server_headers = (default, joined)
        return joined

    def on_message_begin(self) -> None:
        # No ASGI scope yet: it is built only for a request the ASGI app serves.
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self._head_bytes = 0
        self._in_head = True

    def _fast_path(self) -> bytes | None:
        parser = self.parser
        if (self.expect_100_continue or self.limit_concurrency is not None
                or self.root_path or parser.get_method() != b"POST"
                or parser.should_upgrade()):
            return None
        path = self.url.partition(b"?")[0]
        return path if path in _FAST_PATHS else None

    def on_headers_complete(self) -> None:
        path = self._fast_path()
        if path is None:
            headers, url = self.headers, self.url
            expect = self.expect_100_continue
            HttpToolsProtocol.on_message_begin(self)  # uvicorn's scope, as it builds it
            self.headers = self.scope["headers"] = headers
            self.url, self.expect_100_continue = url, expect
            super().on_headers_complete()
            return
        self._in_head = False
        self._disarm()
        parser = self.parser
        cycle = FastCycle(self, read_head(self.headers), path.decode(),
                          parser.get_http_version() != "1.0" and parser.should_keep_alive())
        existing, self.cycle = self.cycle, cycle  # type: ignore[assignment]
        if existing is None or existing.response_complete:
            cycle.begin(from_parser=True)
        else:  # pipelined: its turn comes when the answer before it is complete
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, None))  # type: ignore[arg-type]

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        if type(cycle) is FastCycle:
            cycle.begin(from_parser=False)
        else:
            super()._start_asgi_task(cycle, app)

    def on_body(self, body: bytes) -> None:
        cycle: Any = self.cycle
        if type(cycle) is FastCycle:
            cycle.on_body(body)
        else:
            super().on_body(body)

    def on_message_complete(self) -> None:
        cycle: Any = self.cycle
        if type(cycle) is FastCycle:
            cycle.on_message_complete()
        else:
            super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        cycle: Any = self.cycle
        if (type(cycle) is FastCycle and cycle.begun and not cycle.complete
                and cycle.admitted and not cycle.response_complete):
            cycle.arm_timer()  # the body lags behind its head: its time starts

    def connection_lost(self, exc: Exception | None) -> None:
        cycle: Any = self.cycle
        if type(cycle) is FastCycle:
            cycle.lost()
        super().connection_lost(exc)


def gateway_protocol(completions: Completions, *, header_timeout: float,
                     max_header_bytes: int) -> type[HttpToolsProtocol]:
    """The protocol class serving ``completions`` (uvicorn's ``http=`` option takes a class)."""
    return type("GatewayProtocol", (GatewayProtocol,), {
        "completions": completions, "header_timeout": header_timeout,
        "max_header_bytes": max_header_bytes,
    })
