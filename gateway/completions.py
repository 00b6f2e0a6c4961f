"""``POST /v1/chat/completions`` and ``/v1/completions``: checks, then the proxy.

The gateway's hot path, so no framework here: served by the gateway's own
HTTP protocol (gateway.server), which calls the stages below straight from
its parser's callbacks, or as a plain ASGI app (under another server) that
reads the headers it needs in one pass over the raw list and the body
straight from ``receive``.

Checks, in order, each answered in OpenAI's error shape: API key (401, when
keys are configured), room (429 ``too_many_requests`` with Retry-After beyond
``--max-in-flight``, see gateway.admission), body size (413, from Content-Length before reading, or
while reading), body time (408 ``request_timeout`` when the body has not all
come within ``--body-timeout``), JSON (400 ``invalid_json``), ``model`` (400 ``missing_model`` /
``invalid_model``), ``x-brix-routing`` (400 ``invalid_routing``). What passes
goes on as a ``ProxyCall``.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from gateway.keys import ApiKeys
from gateway.metrics import UNKNOWN_MODEL, GatewayMetrics
from gateway.picker import PREFIX_AFFINITY, STRATEGIES, prompt_chars, prompt_prefix
from gateway.proxy import Proxy, ProxyCall, json_error
from gateway.settings import GatewaySettings

ROUTING_HEADER = "x-brix-routing"
REQUEST_ID_HEADER = "x-request-id"
PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})

_REQUEST_ID_OK = re.compile(rb"[\x21-\x7e]{1,200}")
# Request headers not passed on to the pod (hop-by-hop, or set again on the way).
_DROP = frozenset({
    b"host", b"content-length", b"connection", b"keep-alive", b"transfer-encoding", b"te",
    b"upgrade", b"proxy-authorization", b"trailer", ROUTING_HEADER.encode(),
    REQUEST_ID_HEADER.encode(), b"expect",
})


def _new_request_id() -> str:
    """128 random bits in hex: unique enough to trace by, and no system call.

    Not a secret (it is echoed to the client and the pod), so the random
    module's generator serves; os.urandom or uuid4 ask the kernel every time.
    """
    return f"{random.getrandbits(128):032x}"


@dataclass(slots=True)
class Head:
    """What the checks read from a request's headers, in one pass over them."""

    request_id: str
    authorization: bytes | None
    routing: bytes | None
    length: bytes | None
    forward: list[tuple[bytes, bytes]]
    """The headers passed on to the pod."""
    started: float


@dataclass(slots=True)
class Refusal:
    """A request answered by the gateway itself, in OpenAI's error shape."""

    status: int
    message: str
    code: str
    param: str | None = None
    extra: list[tuple[bytes, bytes]] | None = None


def read_head(headers: Iterable[tuple[bytes, bytes]]) -> Head:
    """The request's id (its own when well-formed, else a new one) and what the checks need."""
    started = time.perf_counter()
    request_id = authorization = routing = length = None
    forward: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name == b"x-request-id":
            request_id = value
        elif name == b"authorization":
            authorization = value
        elif name == b"x-brix-routing":
            routing = value
        elif name == b"content-length":
            length = value
        if name not in _DROP:
            forward.append((name, value))
    rid = (request_id.decode() if request_id is not None
           and _REQUEST_ID_OK.fullmatch(request_id) else _new_request_id())
    return Head(rid, authorization, routing, length, forward, started)


class Completions:
    """Both completion routes: the checks, then a ``ProxyCall``.

    Served two ways with the same checks in the same order: as an ASGI
    endpoint (``__call__``), and by the gateway's own HTTP protocol
    (gateway.server), which calls the stages directly: ``before_body`` once
    the headers are in, ``after_body`` once the body is.
    """

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        proxy: Callable[[], Proxy],
        metrics: GatewayMetrics,
        api_keys: ApiKeys,
    ) -> None:
        self._settings = settings
        self._proxy = proxy
        self._metrics = metrics
        self._keys = api_keys
        limit = settings.max_body_bytes
        self.max_body_bytes = limit
        self.body_timeout = settings.body_timeout
        self.too_large = Refusal(413, f"The request body is larger than {limit} bytes.",
                                 "request_too_large")
        self.body_late = Refusal(408, f"The request body did not all arrive within "
                                 f"{settings.body_timeout:g} s.", "request_timeout")

    @property
    def proxy(self) -> Proxy:
        return self._proxy()

    def before_body(self, head: Head) -> Refusal | None:
        """API key, then room, then the announced size. None: admitted, and the caller
        owes ``proxy.admission.leave()`` once the request is over."""
        if not self._keys.allows(head.authorization):
            return Refusal(401, "A valid API key is needed: 'Authorization: Bearer <key>'.",
                           "invalid_api_key", extra=[(b"www-authenticate", b"Bearer")])
        admission = self._proxy().admission
        if not admission.enter():
            return Refusal(429, f"The gateway has {admission.max_in_flight} requests in "
                           "flight; retry later.", "too_many_requests",
                           extra=[(b"retry-after",
                                   str(self._settings.overload_retry_after).encode())])
        length = head.length
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            admission.leave()
            return self.too_large
        return None

    def after_body(self, head: Head, path: str, body: bytes) -> ProxyCall | Refusal:
        """The body's checks: JSON, ``model``, routing; what passes becomes a ``ProxyCall``."""
        settings = self._settings
        try:
            parsed: Any = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return Refusal(400, f"The request body is not valid JSON: {exc}", "invalid_json")
        if not isinstance(parsed, dict):
            return Refusal(400, "The request body must be a JSON object.", "invalid_json")
        model = parsed.get("model")
        if model is None or model == "":
            return Refusal(400, "The request names no `model`.", "missing_model", "model")
        if not isinstance(model, str):
            return Refusal(400, "`model` must be a string.", "invalid_model", "model")
        routing = head.routing
        strategy = (routing.decode("latin-1").strip().lower() if routing is not None
                    else settings.routing)
        proxy = self._proxy()
        router = proxy.router
        profiles = router.profiles if router is not None else {}
        if strategy not in STRATEGIES and strategy not in profiles:
            return Refusal(400, f"Unknown routing strategy {strategy!r} in {ROUTING_HEADER}; "
                           f"one of: {', '.join(sorted(STRATEGIES | profiles.keys()))}.",
                           "invalid_routing")
        prefix = (prompt_prefix(parsed, settings.prefix_chars) if strategy == PREFIX_AFFINITY
                  else "")
        hashes = (router.hashes(parsed, model) if router is not None and strategy in profiles
                  else ())
        return ProxyCall(proxy, path=path, body=body, headers=head.forward,
                         name=model, strategy=strategy, prefix=prefix,
                         request_id=head.request_id, started=head.started, hashes=hashes,
                         prompt_chars=prompt_chars(parsed))

    def refused(self, head: Head, refusal: Refusal) -> tuple[Message, Message]:
        """The answer's two ASGI messages; counted in the metrics as answered."""
        self._metrics.answered(UNKNOWN_MODEL, refusal.status,
                               time.perf_counter() - head.started)
        return json_error(refusal.status, refusal.message, code=refusal.code,
                          param=refusal.param, request_id=head.request_id,
                          extra=refusal.extra)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        head = read_head(scope["headers"])

        async def fail(refusal: Refusal) -> None:
            start, body = self.refused(head, refusal)
            await send(start)
            await send(body)

        refusal = self.before_body(head)
        if refusal is not None:
            await fail(refusal)
            return
        try:
            chunks: list[bytes] = []
            size = 0
            limit = self.max_body_bytes
            try:
                async with asyncio.timeout(self.body_timeout):
                    while True:
                        message = await receive()
                        if message["type"] == "http.disconnect":
                            return
                        chunk = message.get("body", b"")
                        size += len(chunk)
                        if size > limit:
                            await fail(self.too_large)
                            return
                        chunks.append(chunk)
                        if not message.get("more_body", False):
                            break
            except TimeoutError:
                await fail(self.body_late)
                return
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            call = self.after_body(head, scope["path"], body)
            if isinstance(call, Refusal):
                await fail(call)
                return
            await call(scope, receive, send)
        finally:
            self._proxy().admission.leave()
