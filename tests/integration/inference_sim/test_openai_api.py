"""The sim through the official openai package: chat and completions, stream and not."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.helpers.procs import Proc
from tests.integration.inference_sim.conftest import MODEL

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name three rivers, please."},
]


def test_models_lists_the_base_model_with_its_root(client: openai.OpenAI) -> None:
    models = client.models.list().data
    assert [m.id for m in models] == [MODEL]
    assert models[0].owned_by == "vllm"
    assert models[0].model_extra is not None
    assert models[0].model_extra["root"] == "/models/base"
    assert models[0].model_extra["parent"] is None


def test_chat_completion_counts_tokens_and_honours_max_tokens(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=7,
        extra_body={"ignore_eos": True},
    )
    choice = resp.choices[0]
    assert resp.object == "chat.completion"
    assert resp.model == MODEL
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "length"
    assert choice.message.content is not None
    assert len(choice.message.content.split()) == 7
    assert resp.usage is not None
    assert resp.usage.completion_tokens == 7
    assert resp.usage.prompt_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + 7


def test_chat_without_max_tokens_stops_on_its_own(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.completion_tokens >= 16


def test_text_is_deterministic_and_depends_on_the_prompt(client: openai.OpenAI) -> None:
    def ask(prompt: str) -> str:
        return client.completions.create(model=MODEL, prompt=prompt, max_tokens=12).choices[0].text

    assert ask("the same prompt") == ask("the same prompt")
    assert ask("the same prompt") != ask("another prompt")


def test_chat_stream_matches_the_whole_answer_and_reports_usage(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=9,
    )
    stream = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=9,
        stream=True, stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == whole.choices[0].finish_reason
    assert all(f is None for f in finishes[:-1])
    assert text == whole.choices[0].message.content
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert whole.usage is not None
    assert chunks[-1].usage.model_dump() == whole.usage.model_dump()
    assert all(c.usage is None for c in chunks[:-1])


def test_completion_stream_without_usage(client: openai.OpenAI) -> None:
    whole = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=5)
    chunks = list(client.completions.create(
        model=MODEL, prompt="Once upon a time", max_tokens=5, stream=True,
    ))
    assert "".join(str(c.choices[0].text) for c in chunks) == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.usage is None for c in chunks)
    assert whole.usage is not None
    assert whole.usage.completion_tokens == 5


def test_raw_stream_ends_with_done(fast_sim: Proc) -> None:
    with httpx.stream("POST", f"{fast_sim.url}/v1/completions", json={
        "model": MODEL, "prompt": "hi", "max_tokens": 3, "stream": True,
    }) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [line for line in resp.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"


def test_token_id_prompt_counts_its_ids(client: openai.OpenAI) -> None:
    resp = client.completions.create(model=MODEL, prompt=[5, 6, 7, 8], max_tokens=2)
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == 4


def test_empty_model_means_the_base_model(fast_sim: Proc) -> None:
    resp = httpx.post(f"{fast_sim.url}/v1/completions", json={"prompt": "x", "max_tokens": 2})
    assert resp.status_code == 200
    assert resp.json()["model"] == MODEL


def test_unknown_model_is_404_in_vllms_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="nope", messages=MESSAGES)
    body = err.value.body
    assert isinstance(body, dict)
    assert body["type"] == "NotFoundError"
    assert body["code"] == 404
    assert body["param"] == "model"
    assert "nope" in body["message"]


@pytest.mark.parametrize(
    ("path", "content", "param"),
    [
        ("/v1/chat/completions", b"{not json", "body"),
        ("/v1/completions", b"[1, 2]", "body"),
        ("/v1/chat/completions", b'{"model": "sim-base"}', "body.messages"),
        ("/v1/completions", b'{"model": "sim-base"}', "body.prompt"),
        ("/v1/completions", b'{"prompt": "x", "max_tokens": "many"}', "body.max_tokens"),
        ("/v1/chat/completions", b'{"messages": [{"content": "no role"}]}', "body.messages.0"),
        ("/v1/completions", b'{"prompt": "x", "stream": "yes"}', "body.stream"),
    ],
)
def test_malformed_bodies_are_400_with_openais_error_shape(
    fast_sim: Proc, path: str, content: bytes, param: str,
) -> None:
    resp = httpx.post(f"{fast_sim.url}{path}", content=content,
                      headers={"content-type": "application/json"})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == 400
    assert error["param"] == param
    assert error["message"]


def test_non_json_content_type_is_400(fast_sim: Proc) -> None:
    resp = httpx.post(f"{fast_sim.url}/v1/completions", content=b"prompt=x",
                      headers={"content-type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 400
    assert "application/json" in resp.json()["error"]["message"]


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"n": 2}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"prompt": "word " * 5000}, "input_tokens"),
        ({"prompt": ["one", "two"]}, "prompt"),
    ],
)
def test_requests_vllm_refuses_are_400(
    client: openai.OpenAI, kwargs: dict[str, object], param: str,
) -> None:
    args: dict[str, object] = {"model": MODEL, "prompt": "hello", "max_tokens": 4, **kwargs}
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(**args)  # type: ignore[call-overload]
    body = err.value.body
    assert isinstance(body, dict)
    assert body["param"] == param


def test_health_and_version(fast_sim: Proc) -> None:
    assert httpx.get(f"{fast_sim.url}/health").status_code == 200
    assert httpx.get(f"{fast_sim.url}/version").json()["version"]


def test_unknown_routes_answer_in_vllms_error_shape(fast_sim: Proc) -> None:
    resp = httpx.get(f"{fast_sim.url}/v1/nothing-here")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == 404
    wrong_method = httpx.get(f"{fast_sim.url}/v1/completions")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == 405


def test_continuous_usage_counts_up_in_every_chunk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_completion_tokens=6, stream=True,
        stream_options={"include_usage": True}, extra_body={
            "ignore_eos": True, "stream_options": {"include_usage": True,
                                                   "continuous_usage_stats": True}},
    ))
    counts = [c.usage.completion_tokens for c in chunks if c.usage is not None]
    assert len(counts) == len(chunks)
    assert counts == sorted(counts)
    assert counts[-1] == 6
