"""The timing model and scheduler seen from outside: the API and vLLM's /metrics."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import openai
import pytest

from tests.helpers.procs import ProcessGroup
from tests.helpers.sim import sim_metrics, sim_value, slow, start_sim

MODEL = "sched"


async def _value(url: str, name: str, **labels: str) -> float:
    return await asyncio.to_thread(sim_value, url, name, **labels)


async def _poll(check: Callable[[], Awaitable[bool]], *, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def _client(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


async def test_a_burst_beyond_max_num_seqs_waits_and_tokens_are_counted(
    procs: ProcessGroup,
) -> None:
    url = str(start_sim(procs, name=MODEL, extra_args=slow(ms_per_token=30, max_num_seqs=2)).url)
    max_tokens = 15
    async with _client(url) as client:
        tasks = [
            asyncio.create_task(client.completions.create(
                model=MODEL, prompt=f"request number {i}", max_tokens=max_tokens,
                extra_body={"ignore_eos": True},
            ))
            for i in range(6)
        ]
        seen_waiting = 0.0
        seen_running: set[float] = set()
        while not all(t.done() for t in tasks):
            waiting = await _value(url, "vllm:num_requests_waiting", model_name=MODEL)
            running = await _value(url, "vllm:num_requests_running", model_name=MODEL)
            seen_waiting = max(seen_waiting, waiting)
            seen_running.add(running)
            await asyncio.sleep(0.02)
        results = await asyncio.gather(*tasks)
    assert seen_waiting > 0
    assert max(seen_running) == 2
    prompt_tokens = sum(r.usage.prompt_tokens for r in results if r.usage)
    assert all(r.usage and r.usage.completion_tokens == max_tokens for r in results)
    assert await _value(url, "vllm:generation_tokens_total", model_name=MODEL) == 6 * max_tokens
    assert await _value(url, "vllm:prompt_tokens_total", model_name=MODEL) == prompt_tokens
    assert await _value(url, "vllm:request_success_total", finished_reason="length") == 6
    assert await _value(url, "vllm:time_to_first_token_seconds_count") == 6
    assert await _value(url, "vllm:e2e_request_latency_seconds_count") == 6
    assert await _value(url, "vllm:num_requests_waiting") == 0
    assert await _value(url, "vllm:num_requests_running") == 0
    assert await _value(url, "vllm:kv_cache_usage_perc") == 0


async def test_requests_that_do_not_fit_the_kv_cache_wait(procs: ProcessGroup) -> None:
    # Each request holds its prompt (about 5 tokens) plus 40 output tokens: one fits in 64.
    url = str(start_sim(procs, name=MODEL, extra_args=[
        *slow(ms_per_token=30), "--kv-cache-tokens", "64", "--max-model-len", "64",
    ]).url)
    async with _client(url) as client:
        tasks = [asyncio.create_task(client.completions.create(
            model=MODEL, prompt=f"prompt {i}", max_tokens=40, extra_body={"ignore_eos": True},
        )) for i in range(2)]

        async def one_runs_one_waits() -> bool:
            return (await _value(url, "vllm:num_requests_running") == 1
                    and await _value(url, "vllm:num_requests_waiting") == 1)

        await _poll(one_runs_one_waits)
        assert await _value(url, "vllm:kv_cache_usage_perc") > 0.5
        results = await asyncio.gather(*tasks)
    assert [r.choices[0].finish_reason for r in results] == ["length", "length"]


async def test_a_client_that_leaves_a_stream_frees_its_slot(procs: ProcessGroup) -> None:
    url = str(start_sim(procs, name=MODEL, extra_args=slow(ms_per_token=20, max_num_seqs=1)).url)
    async with httpx.AsyncClient(timeout=30) as http:
        # 2000 tokens at 20 ms: 40 s unless the slot is freed when the client goes.
        async with http.stream("POST", f"{url}/v1/completions", json={
            "model": MODEL, "prompt": "long", "max_tokens": 2000, "stream": True,
            "ignore_eos": True,
        }) as resp:
            lines = resp.aiter_lines()
            assert (await anext(lines)).startswith("data: ")
            assert await _value(url, "vllm:num_requests_running") == 1

        async def freed() -> bool:
            return (await _value(url, "vllm:num_requests_running") == 0
                    and await _value(url, "vllm:request_success_total",
                                     finished_reason="abort") == 1)

        await _poll(freed)
        resp2 = await http.post(f"{url}/v1/completions", json={
            "model": MODEL, "prompt": "next", "max_tokens": 3})
        assert resp2.status_code == 200


async def test_a_client_that_leaves_a_whole_answer_frees_its_slot(procs: ProcessGroup) -> None:
    url = str(start_sim(procs, name=MODEL, extra_args=slow(ms_per_token=20, max_num_seqs=1)).url)
    async with httpx.AsyncClient(timeout=0.5) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(f"{url}/v1/chat/completions", json={
                "model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 2000, "ignore_eos": True,
            })

    async def freed() -> bool:
        return (await _value(url, "vllm:num_requests_running") == 0
                and await _value(url, "vllm:request_success_total",
                                 finished_reason="abort") == 1)

    await _poll(freed)


async def test_max_loras_bounds_adapters_in_a_batch(procs: ProcessGroup, tmp_path: Path) -> None:
    url = str(start_sim(procs, name=MODEL, extra_args=[
        *slow(ms_per_token=30), "--max-loras", "1",
    ]).url)
    async with httpx.AsyncClient(timeout=30) as http:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            (tmp_path / name / "adapter_config.json").write_text(json.dumps({"r": 8}))
            resp = await http.post(f"{url}/v1/load_lora_adapter", json={
                "lora_name": name, "lora_path": str(tmp_path / name)})
            assert resp.status_code == 200
        async with _client(url) as client:
            tasks = [asyncio.create_task(client.completions.create(
                model=name, prompt="p", max_tokens=20, extra_body={"ignore_eos": True},
            )) for name in ("a", "b")]

            async def one_adapter_runs() -> bool:
                return (await _value(url, "vllm:num_requests_running") == 1
                        and await _value(url, "vllm:num_requests_waiting") == 1)

            await _poll(one_adapter_runs)
            # As in vLLM, the current series is the one set most recently (largest value).
            series = await asyncio.to_thread(_lora_info, url)
            latest = dict(max(series, key=lambda labels: series[labels]))
            assert latest["max_lora"] == "1"
            assert {latest["running_lora_adapters"], latest["waiting_lora_adapters"]} == {"a", "b"}
            await asyncio.gather(*tasks)


def _lora_info(url: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (name, labels), v in sim_metrics(url).items()
            if name == "vllm:lora_requests_info"}


@pytest.mark.parametrize(("flags", "decoded_low", "decoded_high"), [
    # 961 prompt tokens in chunks of 63 (64 less the decoding stream's token): 16 steps.
    (("--max-num-batched-tokens", "64"), 10, 40),
    # Whole: one step prefills it (and decodes the other stream once).
    (("--no-enable-chunked-prefill",), 0, 5),
], ids=["chunked-prefill", "whole-prefill"])
async def test_a_long_prompt_in_chunks_lets_a_running_stream_go_on_decoding(
    procs: ProcessGroup, flags: tuple[str, ...], decoded_low: int, decoded_high: int,
) -> None:
    """Tokens a running stream receives while a long prompt is prefilled: one a step."""
    url = str(start_sim(procs, name=MODEL, extra_args=[
        "--prefill-tokens-per-s", "20000", "--decode-ms-per-token", "20",
        "--decode-ms-per-token-per-seq", "0", "--max-num-seqs", "4", *flags]).url)
    received = 0
    async with _client(url) as client:
        async def running() -> None:
            nonlocal received
            stream = await client.completions.create(
                model=MODEL, prompt="keep going", max_tokens=400, stream=True,
                extra_body={"ignore_eos": True})
            async for _ in stream:
                received += 1

        task = asyncio.create_task(running())
        try:
            await _poll(lambda: _true_when(received >= 3))
            before = received
            stream = await client.completions.create(
                model=MODEL, prompt=" ".join(f"w{i}" for i in range(960)), max_tokens=1,
                stream=True)
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].text:
                    break
            during = received - before
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert decoded_low <= during <= decoded_high


async def _true_when(value: bool) -> bool:
    return value
