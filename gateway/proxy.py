"""Moving one request to a pod and its answer back, bytes untouched.

``ProxyCall`` is an ASGI response: the app validates a request, then hands it
one of these, which

1. resolves the name to ready endpoints, holding the request while the model
   exists with no ready pod (scale from zero; 503 with Retry-After after the
   hold time, 404 ``model_not_found`` for a name nothing knows; 503
   ``overloaded`` when ``max_pending`` requests are held already);
2. picks an endpoint (``gateway.picker``) and sends the request; a failure
   before the answer started (connection refused or reset, the pod closing
   without an answer, the answer breaking before its first body byte: an
   engine killed or restarting) is retried on another endpoint, up to
   ``retries`` of them; when none is left, the request is held like one at
   scale from zero, retried at each change of the routing table (and on a
   short backoff), until a pod answers or ``reconnect_hold`` passes (then 502);
3. passes the answer through as it arrives (raw bytes: no decompression, no
   re-encoding), with ``x-brix-pod`` and ``x-request-id`` added. Served by
   gateway.server, the body after its first piece (a stream's tokens) goes from
   the pod's connection straight to the client's (``BodyWriter``), with no turn
   of the event loop per piece; under ASGI, piece by piece through ``send``. A failure
   after the first byte ends an event stream with an ``error`` event (the
   status line is gone by then); any other body is cut off, so the client
   sees a broken answer rather than a short one.

A client that disconnects at any point cancels the call, which closes the
upstream request (the engine stops generating). Timeouts: ``connect`` (then
the next endpoint), first byte and between bytes (504 before the answer
started), and ``total`` checked as bytes arrive.

The client to the pods is gateway.upstream (an asyncio protocol with httptools'
parser and a kept-alive pool), not a library's: aiohttp's client cost about
three times its CPU per request (bench/gateway/RESULTS.md, issue 18), and
httpx.AsyncClient managed about a tenth of aiohttp's requests per second
(httpcore's pool; encode/httpx#3215). It adds no header of its own but Host and
Content-Length (Accept-Encoding would change the engine's answer) and does not
decompress, so bytes pass as the engine wrote them. aiohttp's session stays,
for the sidecars (gateway.load).

Errors::

    ProxyCall
    ├── hold timed out            -> 503 no_ready_endpoint (+ Retry-After)
    ├── unknown name              -> 404 model_not_found
    ├── too many held already     -> 503 overloaded (+ Retry-After)
    ├── every connect failed      -> held, then 502 upstream_unavailable
    ├── no answer in time         -> 504 upstream_timeout
    ├── broken answer, no byte    -> 502 upstream_error
    └── broken answer after bytes -> SSE error event, or the body cut off
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from starlette.types import Message, Receive, Scope, Send

from brix.http_guard import DISCONNECT_EXTENSION
from brix.openai_errors import error_body
from gateway.admission import Admission
from gateway.hold import wait_for_route
from gateway.load import LoadTracker
from gateway.metrics import UNKNOWN_MODEL, GatewayMetrics
from gateway.picker import LEAST_QUEUE, pick
from gateway.router import ProfileRouter
from gateway.settings import GatewaySettings
from gateway.table import Endpoint, Route, RoutingTable
from gateway.upstream import (
    Answer,
    BrokenAnswer,
    ClosedBeforeAnswer,
    ConnectFailed,
    Target,
    UpstreamError,
    UpstreamPool,
)

log = logging.getLogger(__name__)

# Headers that belong to one connection, not to the message (RFC 9110 7.6.1),
# and those the server sets itself.
_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
    b"trailer", b"transfer-encoding", b"upgrade", b"host", b"content-length",
})
_SERVER_SET = frozenset({b"date", b"server"})
_NOT_PASSED = _HOP | _SERVER_SET

_MAX_BACKOFF = 1.0
"""Longest wait between two rounds of tries while a request is held for a pod to answer."""
# Headers aiohttp would add when the client sent none; the engine gets the client's only.
SKIP_AUTO_HEADERS = frozenset({"Accept-Encoding", "User-Agent", "Content-Type"})


class BodyWriter(Protocol):
    """A client connection the answer's body can be written to from a callback."""

    def write_body(self, body: bytes) -> bool:
        """Send one piece of the body, framed; whether the client can take more now."""

    async def drain(self) -> None:
        """Return once the client has taken what was written (or has gone)."""


class UpstreamCutOff(Exception):
    """Raised to the server to abort a non-stream answer broken after its first byte."""


class _BrokeBeforeStart(Exception):
    """The answer broke before its first body byte: nothing went to the client yet."""


@dataclass
class Proxy:
    """What every call shares: the table, loads, metrics, HTTP client, settings."""

    settings: GatewaySettings
    table: RoutingTable
    tracker: LoadTracker
    metrics: GatewayMetrics
    client: aiohttp.ClientSession
    """For the sidecars (gateway.load); requests to the pods go through ``upstream``."""
    rng: random.Random
    upstream: UpstreamPool
    turns: dict[str, int] = field(default_factory=dict)
    urls: dict[tuple[str, str], Target] = field(default_factory=dict)
    router: ProfileRouter | None = None
    """Routes requests whose strategy is a profile (gateway.router); None: strategies only."""
    # The loop the calls run on, given explicitly to current_task and create_task:
    # looking it up costs a getpid() system call each time on Python 3.11.
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)
    admission: Admission = field(init=False)

    def __post_init__(self) -> None:
        self.admission = Admission(self.settings.max_in_flight, self.settings.max_pending)

    def url(self, endpoint: Endpoint, path: str) -> Target:
        """Where ``path`` at ``endpoint`` goes (parsed once, not per request)."""
        url = self.urls.get((endpoint.url, path))
        if url is None:
            if len(self.urls) > 10_000:  # endpoints come and go; keep it bounded
                self.urls.clear()
            url = self.urls[(endpoint.url, path)] = Target.of(endpoint.url + path)
        return url

    def choose(
        self, route: Route, exclude: set[str], strategy: str, prefix: str,
        *, name: str = "", hashes: Sequence[int] = (), prompt_chars: int = 0,
    ) -> tuple[Endpoint, int] | None:
        """The endpoint for the request, and the prompt characters it has to prefill there
        (``prompt_chars`` less what a profile's prefix index says it holds)."""
        endpoints = [e for e in route.endpoints if e.url not in exclude]
        if not endpoints:
            return None
        if self.router is not None and strategy in self.router.profiles:
            return self.router.choose(strategy, endpoints, name=name or route.model,
                                      model=route.model, hashes=hashes, rng=self.rng,
                                      prompt_chars=prompt_chars)
        turn = self.turns.get(route.model, 0)
        self.turns[route.model] = turn + 1
        if strategy == LEAST_QUEUE:
            self.tracker.want_queues()
        i = pick(strategy, self.tracker.candidates(endpoints), rng=self.rng, turn=turn,
                 prefix=prefix, load_factor=self.settings.prefix_load_factor)
        return endpoints[i], prompt_chars


def json_error(
    status: int, message: str, *, code: str | None = None, param: str | None = None,
    request_id: str, extra: list[tuple[bytes, bytes]] | None = None,
) -> tuple[Message, Message]:
    """The two ASGI messages of an error answer in OpenAI's shape."""
    body = json.dumps(error_body(status, message, code=code, param=param)).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()),
               (b"x-request-id", request_id.encode()), *(extra or [])]
    return ({"type": "http.response.start", "status": status, "headers": headers},
            {"type": "http.response.body", "body": body})


def _sse_error(message: str, code: str) -> bytes:
    return b"data: " + json.dumps(error_body(502, message, code=code)).encode() + b"\n\n"


class ProxyCall:
    """One validated request on its way to a pod (an ASGI app for that one request)."""

    def __init__(
        self,
        proxy: Proxy,
        *,
        path: str,
        body: bytes,
        headers: list[tuple[bytes, bytes]],
        name: str,
        strategy: str,
        prefix: str,
        request_id: str,
        started: float,
        hashes: Sequence[int] = (),
        prompt_chars: int = 0,
    ) -> None:
        self.proxy = proxy
        self.path = path
        self.payload = body
        self.upstream_headers = headers
        self.name = name
        self.strategy = strategy
        self.prefix = prefix
        self.hashes = hashes
        self.prompt_chars = prompt_chars
        self._prefill = 0
        """Prompt characters this try still counts at its pod (``LoadTracker.prefill``)."""
        self.request_id = request_id
        self.started = started
        self.model = UNKNOWN_MODEL
        self.status = 499  # what the metrics say if the client leaves first
        self._done = False
        self._client_gone = False
        self._last_error = ""
        self._writer: BodyWriter | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The server says when the client leaves (brix.http_guard's extension):
        # no task per request waiting on receive() for it.
        await self.serve(send, scope.get("extensions", {}).get(DISCONNECT_EXTENSION), receive)

    async def serve(self, send: Send, register: Callable[[Callable[[], None]], None] | None,
                    receive: Receive | None = None, writer: BodyWriter | None = None) -> None:
        """Answer through ``send``; ``register(callback)`` tells of the client leaving (else
        a task waits on ``receive`` for ``http.disconnect``). With a ``writer``, the body
        after its first piece is relayed to it from the pod's connection."""
        self._writer = writer
        loop = self.proxy.loop
        task = asyncio.current_task(loop)
        assert task is not None
        watcher = None
        if register is not None:
            register(lambda: self._client_left(task))
        elif receive is not None:
            watcher = loop.create_task(self._watch_disconnect(receive, task))
        try:
            await self._run(send)
        except asyncio.CancelledError:
            if not self._client_gone:
                raise
            task.uncancel()
            self.status = 499  # nginx's "client closed request", even after a 200 started
        finally:
            self._done = True
            if watcher is not None:
                watcher.cancel()
            self.proxy.metrics.answered(self.model, self.status,
                                        time.perf_counter() - self.started)

    async def _watch_disconnect(self, receive: Receive, task: asyncio.Task[Any]) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
        self._client_left(task)

    def _client_left(self, task: asyncio.Task[Any]) -> None:
        if not self._done:
            self._client_gone = True
            task.cancel()

    async def _error(self, send: Send, status: int, message: str, code: str,
                     extra: list[tuple[bytes, bytes]] | None = None) -> None:
        self.status = status
        start, body = json_error(status, message, code=code, param="model" if status == 404
                                 else None, request_id=self.request_id, extra=extra)
        await send(start)
        await send(body)

    async def _run(self, send: Send) -> None:
        p = self.proxy
        table = p.table
        route = table.route(self.name)
        if route is None:
            if not table.exists(self.name):
                await self._error(send, 404, f"The model `{self.name}` does not exist.",
                                  "model_not_found")
                return
            self.model = table.base_model(self.name)
            if not p.admission.hold():
                await self._overloaded(send)
                return
            try:
                route = await wait_for_route(table, self.name,
                                             hold_seconds=p.settings.hold_timeout,
                                             pending=p.metrics.pending)
            finally:
                p.admission.release()
            if route is None:
                await self._error(
                    send, 503,
                    f"The model `{self.name}` has no ready pod after "
                    f"{p.settings.hold_timeout:g} s; retry later.",
                    "no_ready_endpoint",
                    extra=[(b"retry-after", str(p.settings.retry_after).encode())],
                )
                return
        self.model = route.model
        await self._forward(send, route)

    async def _overloaded(self, send: Send) -> None:
        p = self.proxy
        await self._error(send, 503, f"The gateway holds {p.admission.max_pending} requests "
                          "for pods already; retry later.", "overloaded",
                          extra=[(b"retry-after", str(p.settings.overload_retry_after).encode())])

    async def _forward(self, send: Send, route: Route) -> None:
        p = self.proxy
        s = p.settings
        deadline = time.monotonic() + s.total_timeout
        tried: set[str] = set()
        last_error = ""
        attempts = 0
        hold_until: float | None = None
        backoff = 0.05
        held = False

        def unhold() -> None:
            nonlocal held
            if held:
                held = False
                p.admission.release()
                p.metrics.pending.labels(self.model).dec()

        try:
            while True:
                current = p.table.route(self.name) or route
                chosen = (p.choose(current, tried, self.strategy, self.prefix, name=self.name,
                                   hashes=self.hashes, prompt_chars=self.prompt_chars)
                          if attempts <= s.retries else None)
                if chosen is not None:
                    endpoint, prefill = chosen
                    if await self._try(send, endpoint, prefill, deadline, unhold, quiet=held):
                        return
                    tried.add(endpoint.url)
                    attempts += 1
                    last_error = self._last_error
                    continue
                # Nothing answered: hold for a pod to come (back), as at scale from zero.
                now = time.monotonic()
                if hold_until is None:
                    if s.reconnect_hold <= 0:
                        break
                    hold_until = now + s.reconnect_hold
                if not held:  # (again, when an answer broke before it started)
                    if not p.admission.hold():
                        await self._overloaded(send)
                        return
                    held = True
                    p.metrics.pending.labels(self.model).inc()
                    # Once per hold: its tries (one a second per request at most) log at
                    # debug, or a restart of a pod holding a thousand would log 1000 a second.
                    log.info("holding a request for %s up to %.0f s more: no pod answered "
                             "(last: %s)", self.name, hold_until - now, last_error or "none")
                left = hold_until - now
                if left <= 0:
                    break
                changed = p.table.changed()
                try:
                    async with asyncio.timeout(min(backoff, left)):
                        await changed.wait()
                except TimeoutError:
                    backoff = min(backoff * 2, _MAX_BACKOFF)
                tried.clear()
                attempts = 0
        finally:
            unhold()
        held_for = (f" within {s.reconnect_hold:g} s" if hold_until is not None else "")
        await self._error(send, 502, f"No pod of `{self.name}` could be reached{held_for}"
                          + (f" (last: {last_error})." if last_error else "."),
                          "upstream_unavailable")

    async def _try(self, send: Send, endpoint: Endpoint, prefill: int, deadline: float,
                   unhold: Callable[[], None], *, quiet: bool = False) -> bool:
        """One try at ``endpoint``, which has ``prefill`` prompt characters of it to prefill:
        True when the call is over (answered, or failed for
        good), False when nothing answered and another try may go elsewhere (logged at
        info, or at debug when ``quiet``: a held request trying again)."""
        p = self.proxy
        level = logging.DEBUG if quiet else logging.INFO
        s = p.settings
        stale_retry = True  # one more try when a kept-alive connection was closed under us
        while True:
            left = deadline - time.monotonic()
            read_timeout = min(s.first_byte_timeout, max(0.001, left))
            self._prefill = prefill
            p.tracker.started(endpoint, prefill)
            try:
                response = await p.upstream.post(
                    p.url(endpoint, self.path),
                    [*self.upstream_headers, (b"x-request-id", self.request_id.encode())],
                    self.payload, connect_timeout=s.connect_timeout,
                    first_byte_timeout=read_timeout,
                )
            except ClosedBeforeAnswer as exc:
                # Closed with no answer at all: a kept-alive connection the pod had
                # closed (worth one more try), or a pod that died after accepting.
                self._finished(endpoint)
                self._last_error = f"{endpoint.name}: {exc}"
                log.log(level, "%s closed without answering (%s)", endpoint.name, exc)
                if stale_retry:
                    stale_retry = False
                    continue
                return False
            except ConnectFailed as exc:
                self._finished(endpoint)
                self._last_error = f"{endpoint.name}: {type(exc).__name__}: {exc}"
                log.log(level, "connect to %s failed (%s); trying another", endpoint.name, exc)
                return False
            except TimeoutError:
                self._finished(endpoint)
                await self._error(send, 504, f"{endpoint.name} sent no answer in time.",
                                  "upstream_timeout")
                return True
            except UpstreamError as exc:
                self._finished(endpoint)
                await self._error(send, 502, f"The request to {endpoint.name} failed: {exc}",
                                  "upstream_error")
                return True
            except BaseException:
                self._finished(endpoint)
                raise
            unhold()
            complete = False
            try:
                complete = await self._stream(send, endpoint, response, deadline, read_timeout)
            except _BrokeBeforeStart as exc:
                self._last_error = f"{endpoint.name}: {exc}"
                log.log(level, "the answer from %s broke before it started (%s)",
                        endpoint.name, exc)
                return False
            finally:
                self._finished(endpoint)
                if complete:
                    response.release()  # the connection goes back to the pool
                else:
                    response.close()  # the engine sees the disconnect and stops
            return True

    def _finished(self, endpoint: Endpoint) -> None:
        self.proxy.tracker.finished(endpoint, self._prefill)
        self._prefill = 0

    async def _stream(self, send: Send, endpoint: Endpoint, response: Answer,
                      deadline: float, read_timeout: float) -> bool:
        """Pass the answer on; True when all of it came and went."""
        headers = []
        length = None
        is_sse = False
        for k, v in response.headers:
            name = k.lower()
            if name not in _NOT_PASSED:
                headers.append((name, v))
                if name == b"content-type":
                    is_sse = is_sse or v.startswith(b"text/event-stream")
            elif name == b"content-length" and length is None:
                length = v
        if length is not None:
            headers.append((b"content-length", length))
        headers += [(b"x-brix-pod", endpoint.name.encode()),
                    (b"x-request-id", self.request_id.encode())]
        try:
            chunk: bytes | None = await response.next_chunk(read_timeout)
        except TimeoutError:
            await self._error(send, 504, f"{endpoint.name} sent no answer in time.",
                              "upstream_timeout")
            return False
        except BrokenAnswer as exc:
            raise _BrokeBeforeStart(str(exc) or type(exc).__name__) from exc
        self.status = response.status
        if self._prefill:
            self.proxy.tracker.prefilled(endpoint, self._prefill)
            self._prefill = 0
        self.proxy.metrics.first_byte(self.model, time.perf_counter() - self.started)
        await send({"type": "http.response.start", "status": response.status,
                    "headers": headers})
        writer = self._writer
        try:
            while chunk is not None:
                # A body that has all come (a whole JSON answer, usually in one
                # read) goes out as the last message: no empty one after it.
                last = response.at_eof()
                await send({"type": "http.response.body", "body": chunk, "more_body": not last})
                if last:
                    return True
                if time.monotonic() > deadline:
                    raise TimeoutError("total timeout")
                if writer is not None:
                    # The rest from the pod's connection's callbacks.
                    while not await response.relay(writer.write_body, read_timeout, deadline):
                        await writer.drain()
                    break
                chunk = await response.next_chunk(read_timeout)
        except (BrokenAnswer, TimeoutError) as exc:
            what = "timed out" if isinstance(exc, TimeoutError) else "failed"
            detail = str(exc) or type(exc).__name__
            log.warning("answer from %s %s after it started: %s", endpoint.name, what, detail)
            if not is_sse:
                raise UpstreamCutOff(f"{endpoint.name}: {detail}") from exc
            message = f"The answer from {endpoint.name} {what} after it started: {detail}"
            code = "upstream_timeout" if what == "timed out" else "upstream_error"
            await send({"type": "http.response.body", "body": _sse_error(message, code),
                        "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return False
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return True
