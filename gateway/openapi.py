"""The OpenAPI description of the completion routes, which bypass FastAPI's routing.

``POST /v1/chat/completions`` and ``/v1/completions`` are plain ASGI endpoints
(gateway.completions), so FastAPI knows nothing of their bodies; this module
describes them as brix accepts them, OpenAI's request shape, so that the
document at ``/openapi.json`` is accurate and a fuzzer (schemathesis, see
tests/integration/gateway/test_schema_fuzz.py) exercises them. The gateway
reads only ``model`` (and the ``x-brix-routing`` header); every other field
goes to the engine as it came, so the engine (vLLM, the sim) judges them and
the schema leaves further fields open.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from gateway.picker import STRATEGIES

ERROR = {
    "type": "object", "required": ["error"], "additionalProperties": False,
    "properties": {"error": {
        "type": "object", "required": ["message", "type", "param", "code"],
        "properties": {
            "message": {"type": "string"}, "type": {"type": "string"},
            "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]},
        },
    }},
}
_ERROR_STATUSES = {
    "400": "Malformed body, no or bad `model`, unknown routing strategy, or a field the "
           "engine refuses",
    "401": "No valid API key (when keys are configured)",
    "404": "Unknown model (`model_not_found`)",
    "408": "The body did not all arrive in time",
    "413": "Body too large",
    "422": "A field the engine refuses",
    "429": "Too many requests in flight (Retry-After)",
    "502": "No pod could be reached, or its answer broke before it started",
    "503": "No ready pod after the hold, or too many held (Retry-After)",
    "504": "No answer in time",
}
_NUMBER = {"type": "number"}
_STOP = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"},
                                                   "maxItems": 4}]}
_COMMON: dict[str, Any] = {
    "model": {"type": "string", "minLength": 1, "description": "A served model or adapter."},
    "max_tokens": {"type": "integer", "minimum": 1},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "n": {"type": "integer", "minimum": 1, "maximum": 4},
    "stream": {"type": "boolean"},
    "stop": _STOP,
    "seed": {"type": "integer"},
    "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
    "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
    "user": {"type": "string"},
    "ignore_eos": {"type": "boolean", "description": "vLLM's: generate max_tokens tokens."},
}
_CONTENT_PART = {"type": "object", "required": ["type", "text"],
                 "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}
_MESSAGE = {
    "type": "object", "required": ["role", "content"],
    "properties": {
        "role": {"enum": ["system", "developer", "user", "assistant"]},
        "content": {"oneOf": [{"type": "string"},
                              {"type": "array", "items": _CONTENT_PART, "minItems": 1}]},
        "name": {"type": "string"},
    },
}
CHAT_REQUEST = {
    "type": "object", "required": ["model", "messages"],
    "properties": {**_COMMON, "messages": {"type": "array", "items": _MESSAGE, "minItems": 1},
                   "max_completion_tokens": {"type": "integer", "minimum": 1}},
}
COMPLETION_REQUEST = {
    "type": "object", "required": ["model", "prompt"],
    "properties": {**_COMMON, "prompt": {"oneOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}, "minItems": 1},
        {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1},
    ]}, "echo": {"type": "boolean"}, "logprobs": {"type": "integer", "minimum": 0}},
}


def _operation(summary: str, schema: dict[str, Any]) -> dict[str, Any]:
    errors = {status: {"description": text, "content": {"application/json": {"schema": ERROR}}}
              for status, text in _ERROR_STATUSES.items()}
    return {"post": {
        "summary": summary,
        "parameters": [
            {"name": "x-brix-routing", "in": "header", "required": False,
             "description": "The routing strategy for this request.",
             "schema": {"enum": sorted(STRATEGIES)}},
            {"name": "x-request-id", "in": "header", "required": False,
             "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,200}$"}},
        ],
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "responses": {
            "200": {"description": "The engine's answer, passed through untouched (JSON, or "
                                   "an event stream with `stream`).",
                    "content": {"application/json": {"schema": {"type": "object"}},
                                "text/event-stream": {"schema": {"type": "string"}}}},
            **errors,
        },
    }}


PATHS: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": _operation("Chat completion (OpenAI's API)", CHAT_REQUEST),
    "/v1/completions": _operation("Completion (OpenAI's API)", COMPLETION_REQUEST),
}


def describe_completions(app: FastAPI) -> None:
    """Add the completion routes to the app's OpenAPI document."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schema.setdefault("paths", {}).update(PATHS)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
