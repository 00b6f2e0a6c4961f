"""The sidecar's HTTP API (DESIGN.md, "Sidecar management API").

Open to every caller::

    GET /healthz                the process is alive
    GET /readyz                 the engine has served a completion and still answers (200/503)
    GET /metrics                brix_* metrics, read from the engine at scrape time

Behind the bearer token when one is configured (401 otherwise)::

    GET    /v1/adapters         {"object": "list", "data": [adapter, ...]}
    POST   /v1/adapters         {"name", "source", "sha256"?} -> 201 loaded now,
                                200 already loaded from that source (idempotent)
    DELETE /v1/adapters/{name}  200 {"name", "status": "unloaded" | "not_loaded"}

An adapter is ``{"name", "base_model", "path", "source"}`` (``source`` is null for
adapters this sidecar did not load). Errors are OpenAI-shaped
(``brix.openai_errors``) with a stable ``code``: see ``sources``, ``fetch``,
``extract`` and ``adapters`` for each one.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from brix.openai_errors import error_body

from .adapters import AdapterManager
from .collector import MetricsCollector, ModelLabel
from .engine_client import EngineClient
from .errors import ApiError
from .gpu import Nvml
from .readiness import Readiness
from .settings import SidecarSettings

log = logging.getLogger(__name__)

_LOAD_FIELDS = frozenset({"name", "source", "sha256"})
# The body is read by hand (size cap, OpenAI-shaped errors); this documents it.
_LOAD_BODY_SCHEMA: dict[str, Any] = {"required": True, "content": {"application/json": {
    "schema": {
        "type": "object", "required": ["name", "source"], "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$"},
            "source": {"type": "string", "description": "file:///dir or http(s):// archive"},
            "sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
        },
    },
}}}


class _State:
    """What the handlers share; made by the lifespan."""

    def __init__(
        self, settings: SidecarSettings,
        download_transport: httpx.AsyncBaseTransport | None,
        nvml_open: Callable[[], Nvml | None],
    ) -> None:
        self.engine = EngineClient(
            settings.engine_url, metrics_timeout=settings.metrics_timeout,
            engine_timeout=settings.engine_timeout, ready_timeout=settings.ready_timeout,
        )
        self.downloads = httpx.AsyncClient(transport=download_transport)
        self.adapters = AdapterManager(settings, self.engine, self.downloads)
        self.nvml = nvml_open()
        self.metrics = MetricsCollector(self.engine, model=ModelLabel(settings.model),
                                        nvml=self.nvml)
        self.readiness = Readiness(self.engine, ttl=settings.ready_cache_seconds,
                                   timeout=settings.ready_timeout)

    async def aclose(self) -> None:
        await self.engine.aclose()
        await self.downloads.aclose()
        if self.nvml is not None:
            self.nvml.close()


def _sidecar_state(request: Request) -> _State:
    state: _State = request.app.state.sidecar
    return state


StateDep = Annotated[_State, Depends(_sidecar_state)]


async def read_json_object(request: Request, *, limit: int) -> dict[str, Any]:
    """The request body as a JSON object, read with a size cap (413 beyond it)."""
    too_large = ApiError(413, f"the request body is larger than {limit} bytes",
                         code="body_too_large")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", code="invalid_json")
    return body


def create_app(
    settings: SidecarSettings, *,
    download_transport: httpx.AsyncBaseTransport | None = None,  # None except in tests
    nvml_open: Callable[[], Nvml | None] = Nvml.open,
) -> FastAPI:
    """The sidecar as an ASGI app."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = _State(settings, download_transport, nvml_open)
        state.adapters.prepare_cache()
        app.state.sidecar = state
        try:
            yield
        finally:
            await state.aclose()

    app = FastAPI(title="brix sidecar", lifespan=lifespan)

    def require_token(request: Request) -> None:
        if settings.token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), settings.token.encode()
        ):
            raise ApiError(401, "a valid bearer token is required (Authorization: Bearer "
                           "<token>)", code="invalid_token")

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(exc.status_code, str(exc.detail)),
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse(error_body(400, f"invalid request: {where}: {first.get('msg')}",
                                       code="invalid_request"), status_code=400)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body(500, f"internal error: {type(exc).__name__}"),
                            status_code=500)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(s: StateDep) -> JSONResponse:
        ready = await s.readiness.check()
        if ready.ready:
            return JSONResponse({"status": "ready", "detail": ready.detail})
        return JSONResponse(error_body(503, ready.detail, code="engine_not_ready"),
                            status_code=503)

    @app.get("/metrics")
    async def metrics(request: Request, s: StateDep) -> Response:
        body, content_type = await s.metrics.render(request.headers.get("accept"))
        return Response(content=body, media_type=content_type)

    @app.get("/v1/adapters", dependencies=[Depends(require_token)])
    async def list_adapters(s: StateDep) -> dict[str, Any]:
        return {"object": "list", "data": [a.as_json() for a in await s.adapters.list()]}

    @app.post("/v1/adapters", dependencies=[Depends(require_token)],
              openapi_extra={"requestBody": _LOAD_BODY_SCHEMA}, status_code=201,
              responses={200: {"description": "Already loaded from this source"}})
    async def load_adapter(request: Request, s: StateDep) -> JSONResponse:
        body = await read_json_object(request, limit=settings.max_body_bytes)
        unknown = sorted(set(body) - _LOAD_FIELDS)
        if unknown:
            raise ApiError(400, f"unknown field(s) {', '.join(unknown)}: expected name, "
                           "source and optionally sha256", code="unknown_field",
                           param=unknown[0])
        info, loaded_now = await s.adapters.load(
            body.get("name"), body.get("source"), body.get("sha256"),
        )
        status = "loaded" if loaded_now else "already_loaded"
        return JSONResponse({**info.as_json(), "status": status},
                            status_code=201 if loaded_now else 200)

    @app.delete("/v1/adapters/{name}", dependencies=[Depends(require_token)])
    async def unload_adapter(name: str, s: StateDep) -> dict[str, str]:
        was_loaded = await s.adapters.unload(name)
        return {"name": name, "status": "unloaded" if was_loaded else "not_loaded"}

    return app
