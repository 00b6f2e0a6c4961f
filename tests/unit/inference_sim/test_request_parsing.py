"""Reading OpenAI request bodies: what the sim takes and what it refuses (400)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.sim.errors import ApiError
from inference.sim.protocol import GenerationRequest, output_length, parse

LEN = 100


def _chat(**body: Any) -> GenerationRequest:
    return parse({"messages": [{"role": "user", "content": "hi"}], **body}, "chat",
                 max_model_len=LEN)


def test_completions_default_to_16_tokens_and_chat_to_none() -> None:
    assert parse({"prompt": "x"}, "completion", max_model_len=LEN).max_tokens == 16
    assert parse({"prompt": "x", "max_tokens": None}, "completion",
                 max_model_len=LEN).max_tokens is None
    assert _chat().max_tokens is None


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert _chat(max_tokens=5, max_completion_tokens=7).max_tokens == 7


def test_chat_content_parts_and_roles_count_as_prompt() -> None:
    plain = _chat()
    parts = parse({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
                  "chat", max_model_len=LEN)
    assert plain.prompt == parts.prompt
    longer = parse({"messages": [{"role": "system", "content": "be brief"},
                                 {"role": "user", "content": "hi"}]}, "chat", max_model_len=LEN)
    assert longer.prompt_tokens > plain.prompt_tokens


def test_stream_options() -> None:
    req = _chat(stream=True, stream_options={"include_usage": True})
    assert (req.stream, req.include_usage, req.continuous_usage) == (True, True, False)


@pytest.mark.parametrize("prompt", [[[1, 2, 3]], ["a b"], [4, 5]])
def test_single_prompts_in_a_list_are_accepted(prompt: Any) -> None:
    assert parse({"prompt": prompt}, "completion", max_model_len=LEN).prompt_tokens in (2, 3)


@pytest.mark.parametrize(
    ("body", "kind", "param", "status_type"),
    [
        ([], "chat", "body", "Bad Request"),
        ({}, "chat", "body.messages", "Bad Request"),
        ({"messages": []}, "chat", "messages", "BadRequestError"),
        ({"messages": ["hi"]}, "chat", "body.messages.0", "Bad Request"),
        ({"messages": [{"role": "user", "content": 3}]}, "chat", "body.messages.0.content",
         "Bad Request"),
        ({}, "completion", "body.prompt", "Bad Request"),
        ({"prompt": 3}, "completion", "body.prompt", "Bad Request"),
        ({"prompt": ["a", "b"]}, "completion", "prompt", "BadRequestError"),
        ({"prompt": "x", "model": 3}, "completion", "body.model", "Bad Request"),
        ({"prompt": "x", "max_tokens": True}, "completion", "body.max_tokens", "Bad Request"),
        ({"prompt": "x", "max_tokens": -1}, "completion", "max_tokens", "BadRequestError"),
        ({"prompt": "x", "n": 3}, "completion", "n", "BadRequestError"),
        ({"prompt": "x", "stream_options": {}}, "completion", "stream_options",
         "BadRequestError"),
        ({"prompt": "w " * LEN}, "completion", "input_tokens", "BadRequestError"),
    ],
)
def test_bad_bodies_are_400(body: Any, kind: Any, param: str, status_type: str) -> None:
    with pytest.raises(ApiError) as err:
        parse(body, kind, max_model_len=LEN)
    assert err.value.status == 400
    assert err.value.param == param
    assert err.value.type == status_type
    assert err.value.body()["error"]["code"] == 400


def test_output_stops_at_its_natural_length_unless_told_to_ignore_eos() -> None:
    req = parse({"prompt": "x", "max_tokens": 50}, "completion", max_model_len=LEN)
    assert output_length(req, natural=20, max_model_len=LEN) == (20, "stop")
    assert output_length(req, natural=80, max_model_len=LEN) == (50, "length")
    eos = parse({"prompt": "x", "max_tokens": 50, "ignore_eos": True}, "completion",
                max_model_len=LEN)
    assert output_length(eos, natural=20, max_model_len=LEN) == (50, "length")


def test_max_tokens_is_capped_by_the_room_left_in_the_context() -> None:
    req = parse({"prompt": "a b c", "max_tokens": 500, "ignore_eos": True}, "completion",
                max_model_len=LEN)
    assert output_length(req, natural=10, max_model_len=LEN) == (LEN - 4, "length")
    chat = _chat(ignore_eos=True)
    assert output_length(chat, natural=10, max_model_len=LEN) == (
        LEN - chat.prompt_tokens, "length")


def test_an_empty_token_list_is_refused() -> None:
    # Found by the property below: one empty list of token ids read as a prompt of 0.
    with pytest.raises(ApiError) as err:
        parse({"prompt": [[]]}, "completion", max_model_len=LEN)
    assert err.value.status == 400
    assert "empty" in err.value.message


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5000) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
_fields = st.sampled_from(["model", "prompt", "messages", "max_tokens", "max_completion_tokens",
                           "n", "stream", "stream_options", "ignore_eos", "role", "content"])


@settings(max_examples=300, deadline=None)
@given(st.one_of(_json, st.dictionaries(_fields, _json, max_size=6)),
       st.sampled_from(["chat", "completion"]))
def test_any_json_body_is_either_read_or_refused_with_400(body: Any, kind: Any) -> None:
    try:
        req = parse(body, kind, max_model_len=LEN)
    except ApiError as err:
        refused: ApiError | None = err
    else:
        refused = None
        assert 1 <= req.prompt_tokens < LEN
        assert req.max_tokens is None or req.max_tokens >= 1
    if refused is not None:
        assert refused.status == 400
        assert refused.message
