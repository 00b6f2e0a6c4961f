"""The sim's HTTP surface: vLLM's OpenAI server as brix's clients see it.

Routes: ``/v1/models``, ``/v1/completions``, ``/v1/chat/completions``,
``/v1/load_lora_adapter``, ``/v1/unload_lora_adapter``, ``/health``,
``/version``, ``/metrics``. A client that goes away (a closed stream, or a
dropped connection while it waits for a whole answer) frees its sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from inference.sim import responses as r
from inference.sim.adapters import AdapterRegistry, check_model
from inference.sim.errors import ApiError, invalid_body
from inference.sim.metrics import SimMetrics
from inference.sim.prefix_cache import block_hashes
from inference.sim.protocol import GenerationRequest, Kind, output_length, parse
from inference.sim.runner import Handle, Runner
from inference.sim.scheduler import Scheduler
from inference.sim.settings import SimSettings
from inference.sim.text import (
    natural_length,
    output_text,
    output_token_ids,
    sequence_seed,
    text_token_ids,
)
from inference.sim.timing import TimingModel

VERSION = "0.32.0+brix.sim"


class SimEngine:
    """Everything one sim holds: settings, adapters, scheduler, runner, metrics."""

    def __init__(self, settings: SimSettings) -> None:
        self.settings = settings
        self.name = settings.name
        self.adapters = AdapterRegistry(base_name=self.name, max_lora_rank=settings.max_lora_rank)
        self.scheduler = Scheduler(
            max_num_seqs=settings.max_num_seqs, kv_cache_tokens=settings.kv_cache_tokens,
            max_loras=settings.max_loras,
            enable_prefix_caching=settings.enable_prefix_caching, block_size=settings.block_size,
            max_num_batched_tokens=settings.batched_tokens,
            enable_chunked_prefill=settings.enable_chunked_prefill,
            long_prefill_token_threshold=settings.long_prefill_token_threshold,
            timing=TimingModel(
                prefill_tokens_per_s=settings.prefill_tokens_per_s,
                decode_ms_per_token=settings.decode_ms_per_token,
                decode_ms_per_token_per_seq=settings.decode_ms_per_token_per_seq,
            ),
        )
        self.metrics = SimMetrics(scheduler=self.scheduler, model_name=self.name,
                                  max_loras=settings.max_loras, clock=time.time)
        self.runner = Runner(scheduler=self.scheduler, metrics=self.metrics)

    def block_hashes(
        self, prompt: str | tuple[int, ...], *, adapter: str | None, seed: int, output_len: int,
    ) -> tuple[int, ...]:
        """The chained hashes of the full blocks of a request's prompt and output tokens
        (none with prefix caching off). An adapter's blocks are its own (name and path)."""
        if not self.settings.enable_prefix_caching:
            return ()
        ids = text_token_ids(prompt) if isinstance(prompt, str) else prompt
        extra = None
        if adapter is not None:
            found = self.adapters.get(adapter)
            extra = f"{adapter}\0{found.path if found is not None else ''}"
        return block_hashes((*ids, *output_token_ids(seed, 0, output_len)),
                            block_size=self.settings.block_size, extra=extra)

    def models(self) -> dict[str, Any]:
        created = int(time.time())
        perm = {"object": "model_permission", "created": created,
                "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True,
                "allow_search_indices": False, "allow_view": True, "allow_fine_tuning": False,
                "organization": "*", "group": None, "is_blocking": False}
        data = [{"id": self.name, "object": "model", "created": created, "owned_by": "vllm",
                 "root": self.settings.model or self.name, "parent": None,
                 "max_model_len": self.settings.max_model_len,
                 "permission": [{**perm, "id": "modelperm-" + self.name}]}]
        data += [{"id": a.name, "object": "model", "created": a.created, "owned_by": "vllm",
                  "root": a.path, "parent": self.name, "max_model_len": None,
                  "permission": [{**perm, "id": "modelperm-" + a.name}]}
                 for a in self.adapters.list()]
        return {"object": "list", "data": data}


def _error(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


async def _json_body(request: Request) -> Any:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise invalid_body("Unsupported Media Type: Only 'application/json' is allowed")
    raw = await request.body()
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise invalid_body(f"1 validation error:\n  body: JSON decode error ({exc})",
                           param="body") from None


def _string_field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise invalid_body(f"1 validation error:\n  body.{name}: Field required (a string)",
                           param=f"body.{name}")
    return value


async def _wait_or_disconnect(request: Request, runner: Runner, handle: Handle) -> bool:
    """Wait until the sequence ends; False if the client disconnected first."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        while not handle.done and not runner.dead:
            waiter = asyncio.ensure_future(handle.wait())
            await asyncio.wait({waiter, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():
                waiter.cancel()
                return False
        return True
    finally:
        watcher.cancel()


def create_app(engine: SimEngine) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        engine.runner.start()
        try:
            yield
        finally:
            await engine.runner.stop()

    app = FastAPI(title="brix sim engine", version=VERSION, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    settings = engine.settings

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Unknown routes and methods, in vLLM's shape (its http_exception_handler).
        return _error(ApiError(exc.status_code, str(exc.detail),
                               type_=HTTPStatus(exc.status_code).phrase))

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=503 if engine.runner.dead else 200)

    @app.get("/version")
    async def version() -> dict[str, str]:
        return {"version": VERSION}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(engine.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return engine.models()

    @app.post("/v1/load_lora_adapter")
    async def load_lora_adapter(request: Request) -> Response:
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise invalid_body("1 validation error:\n  body: a JSON object", param="body")
        name, path = _string_field(body, "lora_name"), _string_field(body, "lora_path")
        message = engine.adapters.load(name, path, load_inplace=body.get("load_inplace") is True)
        return Response(message, status_code=200)

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora_adapter(request: Request) -> Response:
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise invalid_body("1 validation error:\n  body: a JSON object", param="body")
        return Response(engine.adapters.unload(_string_field(body, "lora_name")),
                        status_code=200)

    async def generate(request: Request, kind: Kind) -> Response:
        req = parse(await _json_body(request), kind, max_model_len=settings.max_model_len)
        adapter = check_model(req.model, base=engine.name, adapters=engine.adapters)
        served = adapter or engine.name
        seed = sequence_seed(seed=settings.seed, model=served, prompt=req.prompt)
        natural = natural_length(seed, settings.min_output_tokens, settings.max_output_tokens)
        out_len, reason = output_length(req, natural=natural,
                                        max_model_len=settings.max_model_len)
        if engine.runner.dead:
            raise ApiError(503, "The engine's scheduler has stopped; restart the engine.",
                           type_="ServiceUnavailableError")
        hashes = engine.block_hashes(req.prompt, adapter=adapter, seed=seed, output_len=out_len)
        handle = engine.runner.submit(prompt_tokens=req.prompt_tokens, output_len=out_len,
                                      adapter=adapter, finish_reason=reason, stream=req.stream,
                                      block_hashes=hashes)
        id_, created = r.new_id(kind), r.now()
        if req.stream:
            return StreamingResponse(
                _stream(engine.runner, handle, req, kind=kind, id_=id_, created=created,
                        model=served, seed=seed),
                media_type="text/event-stream",
            )
        try:
            if not await _wait_or_disconnect(request, engine.runner, handle):
                return Response(status_code=499)
            if not handle.done:
                raise ApiError(503, "The engine's scheduler has stopped; restart the engine.",
                               type_="ServiceUnavailableError")
        finally:
            if not handle.done:
                engine.runner.abort(handle)
        return JSONResponse(r.full_response(
            kind=kind, id_=id_, created=created, model=served,
            text=output_text(seed, 0, handle.seq.generated), finish_reason=reason,
            prompt_tokens=req.prompt_tokens, completion_tokens=handle.seq.generated,
        ))

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await generate(request, "completion")

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await generate(request, "chat")

    return app


async def _stream(
    runner: Runner, handle: Handle, req: GenerationRequest, *, kind: Kind, id_: str,
    created: int, model: str, seed: int,
) -> AsyncIterator[bytes]:
    """SSE chunks as the sequence advances; a client that leaves aborts the sequence."""
    seq = handle.seq
    sent = 0
    common: dict[str, Any] = {"kind": kind, "id_": id_, "created": created, "model": model}
    try:
        while not runner.dead:
            await handle.wait()
            ready = seq.generated
            if ready > sent or handle.done:
                finished = handle.done
                text = output_text(seed, sent, ready)
                extra = (r.usage(req.prompt_tokens, ready)
                         if req.include_usage and req.continuous_usage else None)
                if sent == 0 and kind == "chat":
                    yield r.sse(r.chunk(**common, text="", finish_reason=None, role=True,
                                        usage_=extra))
                yield r.sse(r.chunk(**common, text=text,
                                    finish_reason=handle.finish_reason if finished else None,
                                    usage_=extra))
                sent = ready
                if finished:
                    break
        if not handle.done:  # the scheduler stopped: say so in the stream, as vLLM does
            yield r.sse(ApiError(503, "The engine's scheduler has stopped; restart the engine.",
                                 type_="ServiceUnavailableError").body())
            yield r.SSE_DONE
            return
        if req.include_usage:
            yield r.sse(r.usage_chunk(**common, prompt_tokens=req.prompt_tokens,
                                      completion_tokens=sent))
        yield r.SSE_DONE
    finally:
        if not handle.done:
            runner.abort(handle)
