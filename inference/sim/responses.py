"""Response bodies and stream chunks in vLLM's shapes: purely computational."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from inference.sim.protocol import Kind


def new_id(kind: Kind) -> str:
    return ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
        "prompt_tokens_details": None,
    }


def full_response(
    *, kind: Kind, id_: str, created: int, model: str, text: str, finish_reason: str,
    prompt_tokens: int, completion_tokens: int,
) -> dict[str, Any]:
    """The non-streaming answer."""
    if kind == "chat":
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None,
                        "annotations": None, "audio": None, "function_call": None,
                        "tool_calls": [], "reasoning": None},
            "logprobs": None, "finish_reason": finish_reason, "stop_reason": None,
        }
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason,
                  "stop_reason": None, "prompt_logprobs": None}
        obj = "text_completion"
    body: dict[str, Any] = {
        "id": id_, "object": obj, "created": created, "model": model, "choices": [choice],
        "service_tier": None, "system_fingerprint": None,
        "usage": usage(prompt_tokens, completion_tokens),
    }
    if kind == "chat":
        body["prompt_logprobs"] = None  # completions carry it in the choice
    body["kv_transfer_params"] = None
    return body


def chunk(
    *, kind: Kind, id_: str, created: int, model: str, text: str | None,
    finish_reason: str | None, role: bool = False, usage_: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One streamed chunk with one choice (``text`` None: a choice with no delta text)."""
    if kind == "chat":
        delta: dict[str, Any] = {}
        if role:
            delta["role"] = "assistant"
        if text is not None:
            delta["content"] = text
        choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None,
                                  "finish_reason": finish_reason, "stop_reason": None}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": text or "", "logprobs": None,
                  "finish_reason": finish_reason, "stop_reason": None}
        obj = "text_completion"
    body: dict[str, Any] = {"id": id_, "object": obj, "created": created, "model": model,
                            "choices": [choice]}
    if usage_ is not None:
        body["usage"] = usage_
    return body


def usage_chunk(
    *, kind: Kind, id_: str, created: int, model: str, prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    """The last chunk when ``stream_options.include_usage``: no choices, the usage."""
    return {"id": id_, "object": "chat.completion.chunk" if kind == "chat" else
            "text_completion", "created": created, "model": model, "choices": [],
            "usage": usage(prompt_tokens, completion_tokens)}


def sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def now() -> int:
    return int(time.time())
