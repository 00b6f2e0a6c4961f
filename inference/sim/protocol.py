"""Reading OpenAI requests into what the sim needs: purely computational.

Only the fields that change what the sim does are read (``model``, the prompt
or messages, ``max_tokens``/``max_completion_tokens``, ``n``, ``stream``,
``stream_options``, ``ignore_eos``); the rest are accepted and ignored, as
sampling parameters do not matter to deterministic text. Wrong types and
missing fields raise ``ApiError`` (400) with vLLM's messages where it has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from inference.sim.errors import bad_request, invalid_body
from inference.sim.text import count_text_tokens

Kind = Literal["chat", "completion"]


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerationRequest:
    kind: Kind
    model: str | None
    prompt: str | tuple[int, ...]
    prompt_tokens: int
    max_tokens: int | None
    stream: bool
    include_usage: bool
    continuous_usage: bool
    ignore_eos: bool


def _field(body: dict[str, Any], name: str, types: tuple[type, ...], what: str) -> Any:
    value = body.get(name)
    if value is None:
        return None
    # bool is an int in Python; JSON's true is not a number.
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise invalid_body(f"1 validation error:\n  body.{name}: {what}", param=f"body.{name}")
    return value


def render_messages(messages: Any) -> str:
    """A chat request's messages as the one text prompt the sim tokenizes (ApiError when
    malformed)."""
    if not isinstance(messages, list):
        raise invalid_body("1 validation error:\n  body.messages: Field required "
                           "(a list of messages)", param="body.messages")
    parts: list[str] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise invalid_body(f"1 validation error:\n  body.messages.{i}: a message is an "
                               "object with a string 'role'", param=f"body.messages.{i}")
        content = msg.get("content")
        if content is None:
            text = ""
        elif isinstance(content, str):
            text = content
        elif isinstance(content, list):
            texts = []
            for part in content:
                if not isinstance(part, dict):
                    raise invalid_body(f"1 validation error:\n  body.messages.{i}.content: "
                                       "parts are objects", param=f"body.messages.{i}.content")
                if part.get("type") == "text" and isinstance(part.get("text"), str):
                    texts.append(part["text"])
            text = "\n".join(texts)
        else:
            raise invalid_body(f"1 validation error:\n  body.messages.{i}.content: a string "
                               "or a list of parts", param=f"body.messages.{i}.content")
        parts.append(f"<|{msg['role']}|>\n{text}\n")
    parts.append("<|assistant|>\n")
    return "".join(parts)


def _completion_prompt(prompt: Any) -> str | tuple[int, ...]:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt:
        if all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            return tuple(prompt)
        if len(prompt) == 1 and isinstance(prompt[0], str):
            return str(prompt[0])
        if prompt == [[]]:
            raise bad_request("The prompt is empty: give at least one token.", param="prompt")
        if len(prompt) == 1 and isinstance(prompt[0], list) and all(
            isinstance(t, int) and not isinstance(t, bool) for t in prompt[0]
        ):
            return tuple(prompt[0])
        if all(isinstance(p, str | list) for p in prompt):
            raise bad_request("The sim serves one prompt per request; send batched prompts as "
                              "separate requests.", param="prompt")
    if prompt is None:
        raise invalid_body("1 validation error:\n  body.prompt: Field required",
                           param="body.prompt")
    raise invalid_body("1 validation error:\n  body.prompt: a string, a list of token ids, "
                       "or a list of one of those", param="body.prompt")


def parse(body: Any, kind: Kind, *, max_model_len: int) -> GenerationRequest:
    """Validate a request body; raises ApiError (400) for what vLLM would refuse."""
    if not isinstance(body, dict):
        raise invalid_body("1 validation error:\n  body: the request body must be a JSON "
                           "object", param="body")
    model = _field(body, "model", (str,), "a string")
    if kind == "chat":
        prompt: str | tuple[int, ...] = render_messages(body.get("messages"))
        if not body["messages"]:
            raise bad_request("messages must not be empty", param="messages")
        max_tokens = _field(body, "max_completion_tokens", (int,), "an integer")
        if max_tokens is None:
            max_tokens = _field(body, "max_tokens", (int,), "an integer")
    else:
        prompt = _completion_prompt(body.get("prompt"))
        max_tokens = _field(body, "max_tokens", (int,), "an integer")
        if max_tokens is None and "max_tokens" not in body:
            max_tokens = 16  # OpenAI's and vLLM's default for completions
    if max_tokens is not None and max_tokens < 1:
        raise bad_request(f"max_tokens must be at least 1, got {max_tokens}.",
                          param="max_tokens")
    n = _field(body, "n", (int,), "an integer")
    if n is not None and n != 1:
        raise bad_request("The sim, like vLLM's batch chat completions, does not support "
                          "`n > 1`. Please set `n` to 1.", param="n")
    stream = bool(_field(body, "stream", (bool,), "a boolean"))
    options = _field(body, "stream_options", (dict,), "an object")
    if options is not None and not stream:
        raise bad_request("Stream options can only be defined when `stream=True`.",
                          param="stream_options")
    options = options or {}
    ignore_eos = bool(_field(body, "ignore_eos", (bool,), "a boolean"))
    prompt_tokens = count_text_tokens(prompt) if isinstance(prompt, str) else len(prompt)
    if prompt_tokens >= max_model_len:
        raise bad_request(
            f"This model's maximum context length is {max_model_len} tokens. However, your "
            f"prompt contains {prompt_tokens} input tokens, which exceeds this limit even "
            "without any output tokens. Please reduce the length of the input prompt.",
            param="input_tokens",
        )
    return GenerationRequest(
        kind=kind, model=model, prompt=prompt, prompt_tokens=prompt_tokens,
        max_tokens=max_tokens, stream=stream,
        include_usage=bool(options.get("include_usage")),
        continuous_usage=bool(options.get("continuous_usage_stats")),
        ignore_eos=ignore_eos,
    )


def output_length(
    req: GenerationRequest, *, natural: int, max_model_len: int,
) -> tuple[int, str]:
    """How many tokens the request produces and its finish reason ('stop' or 'length').

    As vLLM: max_tokens is capped by the room left in the context; without
    ``ignore_eos`` the output ends at its natural length if that comes first.
    """
    room = max_model_len - req.prompt_tokens
    cap = room if req.max_tokens is None else min(req.max_tokens, room)
    cap = max(cap, 1)
    if req.ignore_eos or natural >= cap:
        return cap, "length"
    return natural, "stop"
