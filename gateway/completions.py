"""``POST /v1/chat/completions`` and ``/v1/completions``: checks, then the proxy.

A plain ASGI app, because it is the gateway's hot path: it reads the headers
it needs in one pass over the raw list and the body straight from
``receive``, with none of the framework's per-request objects (which cost
about a fifth of the gateway's CPU per request when measured).

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
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import Receive, Scope, Send

from gateway.keys import ApiKeys
from gateway.metrics import UNKNOWN_MODEL, GatewayMetrics
from gateway.picker import PREFIX_AFFINITY, STRATEGIES, prompt_prefix
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


class Completions:
    """The ASGI endpoint of both completion routes."""

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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        settings = self._settings
        request_id = authorization = routing = length = None
        forward: list[tuple[bytes, bytes]] = []
        for name, value in scope["headers"]:
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

        async def fail(status: int, message: str, code: str, param: str | None = None,
                       extra: list[tuple[bytes, bytes]] | None = None) -> None:
            start, body = json_error(status, message, code=code, param=param, request_id=rid,
                                     extra=extra)
            await send(start)
            await send(body)
            self._metrics.answered(UNKNOWN_MODEL, status, time.perf_counter() - started)

        if not self._keys.allows(authorization):
            await fail(401, "A valid API key is needed: 'Authorization: Bearer <key>'.",
                       "invalid_api_key", extra=[(b"www-authenticate", b"Bearer")])
            return
        admission = self._proxy().admission
        if not admission.enter():
            await fail(429, f"The gateway has {admission.max_in_flight} requests in flight; "
                       "retry later.", "too_many_requests",
                       extra=[(b"retry-after", str(settings.overload_retry_after).encode())])
            return
        try:
            await self._admitted(scope, receive, send, rid=rid, length=length, routing=routing,
                                 forward=forward, fail=fail, started=started)
        finally:
            admission.leave()

    async def _admitted(self, scope: Scope, receive: Receive, send: Send, *, rid: str,
                        length: bytes | None, routing: bytes | None,
                        forward: list[tuple[bytes, bytes]], fail: Callable[..., Awaitable[None]],
                        started: float) -> None:
        settings = self._settings
        limit = settings.max_body_bytes
        too_large = f"The request body is larger than {limit} bytes."
        if length is not None and length.isdigit() and int(length) > limit:
            await fail(413, too_large, "request_too_large")
            return
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(settings.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        await fail(413, too_large, "request_too_large")
                        return
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await fail(408, f"The request body did not all arrive within "
                       f"{settings.body_timeout:g} s.", "request_timeout")
            return
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        try:
            parsed: Any = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            await fail(400, f"The request body is not valid JSON: {exc}", "invalid_json")
            return
        if not isinstance(parsed, dict):
            await fail(400, "The request body must be a JSON object.", "invalid_json")
            return
        model = parsed.get("model")
        if model is None or model == "":
            await fail(400, "The request names no `model`.", "missing_model", "model")
            return
        if not isinstance(model, str):
            await fail(400, "`model` must be a string.", "invalid_model", "model")
            return
        strategy = (routing.decode("latin-1").strip().lower() if routing is not None
                    else settings.routing)
        proxy = self._proxy()
        router = proxy.router
        profiles = router.profiles if router is not None else {}
        if strategy not in STRATEGIES and strategy not in profiles:
            await fail(400, f"Unknown routing strategy {strategy!r} in {ROUTING_HEADER}; "
                       f"one of: {', '.join(sorted(STRATEGIES | profiles.keys()))}.",
                       "invalid_routing")
            return
        prefix = (prompt_prefix(parsed, settings.prefix_chars) if strategy == PREFIX_AFFINITY
                  else "")
        hashes = (router.hashes(parsed, model) if router is not None and strategy in profiles
                  else ())
        call = ProxyCall(proxy, path=scope["path"], body=body, headers=forward,
                         name=model, strategy=strategy, prefix=prefix, request_id=rid,
                         started=started, hashes=hashes)
        await call(scope, receive, send)
