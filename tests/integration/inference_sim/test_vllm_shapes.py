"""The sim's answers parse as vLLM 0.32's own response models, with no field vLLM lacks.

vLLM is imported (slow: it brings torch) only to read its pydantic models;
no engine is started.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.helpers.procs import Proc
from tests.integration.inference_sim.conftest import MODEL

pytest.importorskip("vllm")

from vllm.entrypoints.openai.chat_completion.protocol import (
    ChatCompletionResponse,
    ChatCompletionStreamResponse,
)
from vllm.entrypoints.openai.completion.protocol import (
    CompletionResponse,
    CompletionStreamResponse,
)
from vllm.entrypoints.serve.engine.protocol import ErrorResponse, ModelList


def _unknown_fields(model: Any, data: Any, path: str = "") -> list[str]:
    """Keys of ``data`` that the pydantic model (recursively) does not declare."""
    from pydantic import BaseModel

    out: list[str] = []
    if not (isinstance(model, type) and issubclass(model, BaseModel)) or not isinstance(data,
                                                                                     dict):
        return out
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is None:
            out.append(path + key)
            continue
        for sub in _models_in(field.annotation):
            items = value if isinstance(value, list) else [value]
            for item in items:
                out += _unknown_fields(sub, item, f"{path}{key}.")
    return out


def _models_in(annotation: Any) -> list[Any]:
    from typing import get_args

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _check(model: Any, data: Any) -> None:
    model.model_validate(data)
    assert _unknown_fields(model, data) == []


def _events(url: str, path: str, body: dict[str, Any]) -> list[Any]:
    with httpx.stream("POST", url + path, json=body) as resp:
        lines = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


@pytest.fixture(scope="module")
def url(fast_sim: Proc) -> str:
    return str(fast_sim.url)


def test_models(url: str) -> None:
    _check(ModelList, httpx.get(f"{url}/v1/models").json())


def test_chat_whole_and_streamed(url: str) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    _check(ChatCompletionResponse, httpx.post(f"{url}/v1/chat/completions", json=body).json())
    events = _events(url, "/v1/chat/completions", {
        **body, "stream": True, "stream_options": {"include_usage": True,
                                                   "continuous_usage_stats": True}})
    for event in events:
        _check(ChatCompletionStreamResponse, event)


def test_completion_whole_and_streamed(url: str) -> None:
    body = {"model": MODEL, "prompt": "hi", "max_tokens": 4}
    _check(CompletionResponse, httpx.post(f"{url}/v1/completions", json=body).json())
    events = _events(url, "/v1/completions", {
        **body, "stream": True, "stream_options": {"include_usage": True}})
    for event in events:
        _check(CompletionStreamResponse, event)


def test_errors(url: str) -> None:
    for resp in (
        httpx.post(f"{url}/v1/completions", json={"model": "nope", "prompt": "x"}),
        httpx.post(f"{url}/v1/completions", content=b"{", headers={
            "content-type": "application/json"}),
        httpx.post(f"{url}/v1/unload_lora_adapter", json={"lora_name": "nope"}),
    ):
        _check(ErrorResponse, resp.json())


def test_histogram_buckets_are_vllms() -> None:
    from vllm.v1.metrics.buckets import (
        INTER_TOKEN_LATENCY_BUCKETS,
        REQUEST_LATENCY_BUCKETS,
        TIME_TO_FIRST_TOKEN_BUCKETS,
    )

    from inference.sim.metrics import LATENCY_BUCKETS, TPOT_BUCKETS, TTFT_BUCKETS

    assert tuple(TTFT_BUCKETS) == tuple(TIME_TO_FIRST_TOKEN_BUCKETS)
    assert tuple(LATENCY_BUCKETS) == tuple(REQUEST_LATENCY_BUCKETS)
    # vLLM's per-request TPOT histogram takes the inter-token latency's bounds.
    assert tuple(TPOT_BUCKETS) == tuple(INTER_TOKEN_LATENCY_BUCKETS)
