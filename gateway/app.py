"""The gateway's HTTP surface: FastAPI routes, checks on every request, errors in OpenAI's shape.

Routes (DESIGN.md, "Gateway"): ``POST /v1/chat/completions`` and
``POST /v1/completions`` go to a pod; ``GET /v1/models`` lists what is ready;
``/healthz`` and ``/metrics`` (Prometheus text, the gateway's own registry).

Checks, in order, each answered in OpenAI's error shape: API key (401, when
keys are configured), body size (413, from Content-Length before reading, or
while reading), JSON (400), ``model`` (400 when missing), ``x-brix-routing``
(400 when unknown). Unknown paths 404, wrong methods 405.
"""

from __future__ import annotations

import hmac
import json
import random
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import aiohttp
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from brix.openai_errors import error_body
from gateway.load import LoadTracker
from gateway.metrics import UNKNOWN_MODEL, GatewayMetrics
from gateway.picker import STRATEGIES, prompt_prefix
from gateway.proxy import SKIP_AUTO_HEADERS, Proxy, ProxyCall
from gateway.settings import GatewaySettings
from gateway.table import RoutingTable

ROUTING_HEADER = "x-brix-routing"
REQUEST_ID_HEADER = "x-request-id"

_REQUEST_ID_OK = re.compile(r"[\x21-\x7e]{1,200}")
# Request headers not passed on to the pod (hop-by-hop, or set again by the client).
_DROP = frozenset({
    b"host", b"content-length", b"connection", b"keep-alive", b"transfer-encoding", b"te",
    b"upgrade", b"proxy-authorization", b"trailer", ROUTING_HEADER.encode(),
    REQUEST_ID_HEADER.encode(), b"expect",
})

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


class _TooLarge(Exception):
    pass


def _error(status: int, message: str, *, code: str | None = None, param: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, code=code, param=param), status_code=status,
                        headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def load_api_keys(settings: GatewaySettings) -> frozenset[str]:
    """Keys from --api-keys and --api-keys-file (one a line; blank lines and # comments skipped)."""
    keys = {k for k in settings.api_keys if k}
    if settings.api_keys_file:
        with open(settings.api_keys_file, encoding="utf-8") as f:
            for raw in f:
                line = raw.strip()
                if line and not line.startswith("#"):
                    keys.add(line)
    return frozenset(keys)


def create_app(
    settings: GatewaySettings,
    *,
    table: RoutingTable,
    lifespan: Lifespan | None = None,
    metrics: GatewayMetrics | None = None,
    tracker: LoadTracker | None = None,
) -> FastAPI:
    """The app, around a routing table that something else fills (discovery, config).

    ``lifespan`` runs inside the app's own one (which opens and closes the
    HTTP client to the pods): discovery and the sidecar poller start there.
    """
    metrics = metrics or GatewayMetrics()
    tracker = tracker or LoadTracker()
    api_keys = load_api_keys(settings)
    proxy_holder: dict[str, Proxy] = {}
    created = int(time.time())

    @asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=settings.max_connections, limit_per_host=0,
                                         keepalive_timeout=30, ttl_dns_cache=10)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                         skip_auto_headers=SKIP_AUTO_HEADERS) as client:
            proxy_holder["proxy"] = Proxy(
                settings=settings, table=table, tracker=tracker, metrics=metrics,
                client=client, rng=random.Random(settings.seed),  # noqa: S311 - not crypto
            )
            app.state.proxy = proxy_holder["proxy"]
            if lifespan is None:
                yield
            else:
                async with lifespan(app):
                    yield

    app = FastAPI(title="brix gateway", lifespan=app_lifespan, openapi_url="/openapi.json",
                  docs_url=None, redoc_url=None)
    app.state.table = table
    app.state.metrics = metrics
    app.state.tracker = tracker

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = {404: f"No route {request.url.path}.",
                   405: f"Method {request.method} is not allowed on {request.url.path}."}
        return _error(exc.status_code, message.get(exc.status_code, str(exc.detail)),
                      headers=dict(exc.headers or {}))

    def unauthorized(request: Request) -> Response | None:
        if not api_keys:
            return None
        auth = request.headers.get("authorization", "")
        scheme, _, key = auth.partition(" ")
        key = key.strip()
        if scheme.lower() == "bearer" and key and any(
            hmac.compare_digest(key.encode(), k.encode()) for k in api_keys
        ):
            return None
        return _error(401, "A valid API key is needed: 'Authorization: Bearer <key>'.",
                      code="invalid_api_key", headers={"www-authenticate": "Bearer"})

    async def forward(request: Request) -> Response | ProxyCall:
        started = time.perf_counter()
        rid = request.headers.get(REQUEST_ID_HEADER)
        if rid is None or not _REQUEST_ID_OK.fullmatch(rid):
            rid = uuid.uuid4().hex

        def fail(status: int, message: str, code: str | None = None,
                 param: str | None = None) -> Response:
            metrics.answered(UNKNOWN_MODEL, status, time.perf_counter() - started)
            response = _error(status, message, code=code, param=param)
            response.headers[REQUEST_ID_HEADER] = rid
            return response

        denied = unauthorized(request)
        if denied is not None:
            metrics.answered(UNKNOWN_MODEL, 401, time.perf_counter() - started)
            denied.headers[REQUEST_ID_HEADER] = rid
            return denied
        try:
            body = await _read_body(request, settings.max_body_bytes)
        except _TooLarge:
            return fail(413, f"The request body is larger than {settings.max_body_bytes} bytes.",
                        "request_too_large")
        try:
            parsed: Any = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return fail(400, f"The request body is not valid JSON: {exc}", "invalid_json")
        if not isinstance(parsed, dict):
            return fail(400, "The request body must be a JSON object.", "invalid_json")
        name = parsed.get("model")
        if name is None or name == "":
            return fail(400, "The request names no `model`.", "missing_model", "model")
        if not isinstance(name, str):
            return fail(400, "`model` must be a string.", "invalid_model", "model")
        strategy = request.headers.get(ROUTING_HEADER, settings.routing).strip().lower()
        if strategy not in STRATEGIES:
            return fail(400, f"Unknown routing strategy {strategy!r} in {ROUTING_HEADER}; "
                        f"one of: {', '.join(sorted(STRATEGIES))}.", "invalid_routing")
        prefix = prompt_prefix(parsed, settings.prefix_chars) if strategy == "prefix-affinity" \
            else ""
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
                   if k not in _DROP]
        return ProxyCall(
            proxy_holder["proxy"], path=request.url.path, body=body, headers=headers, name=name,
            strategy=strategy, prefix=prefix, request_id=rid, started=started,
        )

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> Response | ProxyCall:
        return await forward(request)

    @app.post("/v1/completions", response_model=None)
    async def completions(request: Request) -> Response | ProxyCall:
        return await forward(request)

    @app.get("/v1/models", response_model=None)
    async def models(request: Request) -> Response:
        denied = unauthorized(request)
        if denied is not None:
            return denied
        data = [{"id": m.id, "object": "model", "created": created, "owned_by": "brix",
                 "root": m.parent or m.id, "parent": m.parent} for m in table.models()]
        return JSONResponse({"object": "list", "data": data})

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
