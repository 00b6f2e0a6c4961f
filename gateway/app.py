"""The gateway's HTTP surface: the FastAPI app, its routes, errors in OpenAI's shape.

Routes (DESIGN.md, "Gateway"): ``POST /v1/chat/completions`` and
``POST /v1/completions`` go to a pod (``gateway.completions`` checks them);
``GET /v1/models`` lists what is ready; ``/healthz`` (alive) and ``/health``
(can route, the path vLLM's and other OpenAI-compatible servers' probes use:
200 once the app has started and, under Kubernetes discovery, the first list
of Pods, Deployments and LoraAdapters is in the routing table; 503 before, or
while shutting down); ``/metrics`` (Prometheus text, the gateway's own
registry). Unknown paths 404, wrong methods 405, API keys (when configured)
on every ``/v1`` route, 401 without.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import aiohttp
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from brix.openai_errors import error_body
from gateway.completions import PATHS, Completions
from gateway.keys import ApiKeys
from gateway.load import LoadTracker
from gateway.metrics import GatewayMetrics
from gateway.openapi import describe_completions
from gateway.proxy import SKIP_AUTO_HEADERS, Proxy
from gateway.router import ProfileRouter
from gateway.routing_config import RoutingConfig
from gateway.settings import GatewaySettings
from gateway.table import RoutingTable
from gateway.upstream import UpstreamPool

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def _error(status: int, message: str, *, code: str | None = None, param: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, code=code, param=param), status_code=status,
                        headers=headers)


def load_api_keys(settings: GatewaySettings) -> ApiKeys:
    """Keys from --api-keys and --api-keys-file (OSError when the file cannot be read)."""
    return ApiKeys(settings.api_keys, settings.api_keys_file)


def create_app(
    settings: GatewaySettings,
    *,
    table: RoutingTable,
    lifespan: Lifespan | None = None,
    metrics: GatewayMetrics | None = None,
    tracker: LoadTracker | None = None,
    routing: RoutingConfig | None = None,
) -> FastAPI:
    """The app, around a routing table that something else fills (discovery, config).

    ``lifespan`` runs inside the app's own one (which opens and closes the
    HTTP client to the pods): discovery and the sidecar poller start there.
    """
    metrics = metrics or GatewayMetrics()
    tracker = tracker or LoadTracker()
    router = ProfileRouter(routing or RoutingConfig(), table=table, tracker=tracker)
    api_keys = load_api_keys(settings)
    proxy_holder: dict[str, Proxy] = {}
    created = int(time.time())

    @asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=settings.max_connections, limit_per_host=0,
                                         keepalive_timeout=30, ttl_dns_cache=10)
        # No cookie jar: a cookie one pod sets in one client's answer must never
        # ride along on another client's request (and the jar costs per request).
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                         skip_auto_headers=SKIP_AUTO_HEADERS,
                                         cookie_jar=aiohttp.DummyCookieJar()) as client:
            upstream = UpstreamPool(asyncio.get_running_loop(), limit=settings.max_connections,
                                    keepalive_timeout=30)
            proxy_holder["proxy"] = Proxy(
                settings=settings, table=table, tracker=tracker, metrics=metrics,
                client=client, rng=random.Random(settings.seed),  # noqa: S311 - not crypto
                upstream=upstream, router=router,
            )
            app.state.proxy = proxy_holder["proxy"]
            try:
                if lifespan is None:
                    yield
                else:
                    async with lifespan(app):
                        yield
            finally:
                upstream.close()

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
        auth = request.headers.get("authorization")
        if api_keys.allows(auth.encode("latin-1") if auth else None):
            return None
        return _error(401, "A valid API key is needed: 'Authorization: Bearer <key>'.",
                      code="invalid_api_key", headers={"www-authenticate": "Bearer"})

    completions = Completions(settings, proxy=lambda: proxy_holder["proxy"], metrics=metrics,
                              api_keys=api_keys)
    for path in sorted(PATHS):
        # An ASGI endpoint: Starlette hands it the raw request (see gateway.completions).
        app.router.routes.append(Route(path, completions, methods=["POST"]))
    app.state.completions = completions
    describe_completions(app)

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

    @app.get("/health", response_model=None)
    async def health(request: Request) -> Response:
        reason = routing_not_ready(request.app)
        if reason is not None:
            return _error(503, reason, code="not_ready")
        return JSONResponse({"status": "ok"})

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return app


def routing_not_ready(app: FastAPI) -> str | None:
    """Why the gateway cannot route yet (None: it can)."""
    if "proxy" not in app.state._state or app.state.proxy.client.closed:
        return "The gateway is not serving (starting or stopping)."
    discovery = getattr(app.state, "discovery", None)
    if discovery is not None:
        waiting = sorted(k for k, done in discovery.synced.items() if not done.is_set())
        if waiting:
            return f"The gateway has not listed {', '.join(waiting)} from Kubernetes yet."
    return None


class GatewayApp:
    """The ASGI app served: completions go straight to their endpoint, the rest to FastAPI.

    The shortcut skips the framework's middleware and routing on the hot path;
    FastAPI still has the same routes (for lifespan, OpenAPI and any path
    this does not catch).
    """

    def __init__(self, api: FastAPI) -> None:
        self.api = api
        self._completions: Completions = api.state.completions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in PATHS:
            await self._completions(scope, receive, send)
        else:
            await self.api(scope, receive, send)
