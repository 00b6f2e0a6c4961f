"""Prefix caching seen from outside: vLLM's prefix-cache counters through the OpenAI API."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.helpers.procs import ProcessGroup
from tests.helpers.sim import FAST, sim_metrics, sim_value, start_sim

pytestmark = pytest.mark.integration

MODEL = "cached"
BLOCK = 16  # vLLM's and the sim's default --block-size
SYSTEM = " ".join(f"instruction{i}" for i in range(200))  # 200 tokens every request shares


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def _counters(url: str) -> tuple[float, float]:
    return (sim_value(url, "vllm:prefix_cache_queries_total", model_name=MODEL),
            sim_value(url, "vllm:prefix_cache_hits_total", model_name=MODEL))


def test_a_shared_system_prompt_is_counted_as_hits_on_the_second_request(
    procs: ProcessGroup,
) -> None:
    url = str(start_sim(procs, name=MODEL, extra_args=FAST).url)
    client = _client(url)
    assert _counters(url) == (0, 0)
    prompts = []
    for question in ("What is a pod?", "And what is a gateway, please?"):
        answer = client.chat.completions.create(model=MODEL, max_tokens=4, messages=[
            {"role": "system", "content": SYSTEM}, {"role": "user", "content": question}])
        assert answer.usage is not None
        prompts.append(answer.usage.prompt_tokens)
        if len(prompts) == 1:
            assert _counters(url) == (prompts[0], 0)  # a cold cache: looked up, nothing found
    queries, hits = _counters(url)
    assert queries == sum(prompts)
    # The second request finds at least the system prompt's whole blocks, never its own
    # question, and hits come in whole blocks.
    assert (SYSTEM.count(" ") + 1) // BLOCK * BLOCK <= hits < prompts[1]
    assert hits % BLOCK == 0
    # vllm:prompt_tokens still counts whole prompts, cached parts included (as vLLM does).
    assert sim_value(url, "vllm:prompt_tokens_total") == sum(prompts)


def test_a_conversation_that_sends_the_answer_back_hits_the_answer_too(
    procs: ProcessGroup,
) -> None:
    url = str(start_sim(procs, name=MODEL, extra_args=FAST).url)
    client = _client(url)
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "You are brief."},
        {"role": "user", "content": "Tell me about clusters."},
    ]
    first = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=40,
                                           extra_body={"ignore_eos": True})
    assert first.usage is not None
    p1, c1 = first.usage.prompt_tokens, first.usage.completion_tokens
    messages += [{"role": "assistant", "content": first.choices[0].message.content},
                 {"role": "user", "content": "And then?"}]
    _, hits_before = _counters(url)
    client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4)
    _, hits_after = _counters(url)
    # The first turn's prompt and all its answer but the last token (whose KV is
    # never computed) are cached, in whole blocks: more than the prompt alone.
    assert hits_after - hits_before == (p1 + c1 - 1) // BLOCK * BLOCK
    assert hits_after - hits_before > p1 // BLOCK * BLOCK


def test_an_adapter_does_not_hit_the_base_models_prefix(
    procs: ProcessGroup, tmp_path: Path,
) -> None:
    url = str(start_sim(procs, name=MODEL, extra_args=FAST).url)
    client = _client(url)
    client.post("/load_lora_adapter", cast_to=str,
                body={"lora_name": "tuned", "lora_path": str(tmp_path)})
    client.completions.create(model=MODEL, prompt=SYSTEM, max_tokens=2)
    client.completions.create(model="tuned", prompt=SYSTEM, max_tokens=2)
    assert _counters(url)[1] == 0
    client.completions.create(model="tuned", prompt=SYSTEM + " more", max_tokens=2)
    assert _counters(url)[1] > 0


def test_token_id_prompts_share_prefixes_by_their_ids(procs: ProcessGroup) -> None:
    url = str(start_sim(procs, name=MODEL, extra_args=FAST).url)
    client = _client(url)
    ids = list(range(1000, 1100))
    client.completions.create(model=MODEL, prompt=ids, max_tokens=2)
    client.completions.create(model=MODEL, prompt=[*ids, 7, 8, 9], max_tokens=2)
    assert _counters(url) == (100 + 103, 96)


def test_with_prefix_caching_off_nothing_is_looked_up(procs: ProcessGroup) -> None:
    url = str(start_sim(procs, name=MODEL,
                        extra_args=(*FAST, "--no-enable-prefix-caching")).url)
    client = _client(url)
    for _ in range(2):
        client.completions.create(model=MODEL, prompt=SYSTEM, max_tokens=2)
    assert _counters(url) == (0, 0)
    names = {name for name, _ in sim_metrics(url)}
    assert {"vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total"} <= names
