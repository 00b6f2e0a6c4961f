"""``lab calibrate``: fit a timing profile to a live OpenAI-compatible engine (vLLM or the sim).

What it measures, one request at a time unless said (streamed completions
with token-id prompts and ``ignore_eos``, so lengths are exact):

1. time to first token for prompts of several lengths, one output token:
   a straight line ``ttft = a + prompt / prefill_tokens_per_s`` (least squares);
2. the gaps between streamed tokens of one long answer:
   ``decode_ms_per_token`` (their median);
3. the same with ``batch`` streams at once: their median gap ``g`` gives
   ``decode_ms_per_token_per_seq = (g - decode_ms_per_token) / (batch - 1)``.

``max_model_len`` comes from ``/v1/models`` (vLLM reports it), the KV cache
from vLLM's ``vllm:cache_config_info`` (``num_gpu_blocks`` x ``block_size``)
when the engine exports it, else ``max_num_seqs`` x ``max_model_len``. What the
engine does not report is recorded as given: ``max_num_seqs`` (vLLM's default
256) and the scheduler's step budget (``max_num_batched_tokens``, chunked
prefill, ``long_prefill_token_threshold``; vLLM's defaults when not given).
A setting vLLM would refuse is refused before anything is measured.
Times include the HTTP round trip: calibrate next to the engine.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
import re
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np

from lab.profiles import Profile

__all__ = ["CalibrationError", "calibrate"]


class CalibrationError(ValueError):
    """The engine could not be measured; one line saying why."""


def _models(client: httpx.Client, url: str) -> tuple[str, int | None]:
    try:
        r = client.get(f"{url}/v1/models")
        r.raise_for_status()
        data = r.json()["data"]
    except (httpx.HTTPError, KeyError, ValueError) as e:
        raise CalibrationError(f"cannot list models at {url}/v1/models: {e}") from None
    if not data:
        raise CalibrationError(f"{url} serves no model")
    first = data[0]
    length = first.get("max_model_len")
    return str(first["id"]), int(length) if isinstance(length, int) else None


def _kv_tokens(client: httpx.Client, url: str) -> int | None:
    try:
        text = client.get(f"{url}/metrics").text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith("vllm:cache_config_info{"):
            blocks = re.search(r'num_gpu_blocks="(\d+)"', line)
            size = re.search(r'block_size="(\d+)"', line)
            if blocks and size:
                return int(blocks.group(1)) * int(size.group(1))
    return None


SERIALS = 50**3


def first_serial() -> int:
    """Where a run's serials start: at random, so that a second run against the same
    engine (calibrating twice, validating after calibrating) does not meet the first
    run's prompts in the engine's prefix cache."""
    return random.randrange(SERIALS)  # noqa: S311 - not for security


_SERIAL = itertools.count(first_serial())


def unique_prompt(prompt_tokens: int, serial: int) -> list[int]:
    """Token ids of a prompt no other serial (modulo ``SERIALS``) shares a prefix
    with: engines cache prefixes (vLLM's prefix caching, the sim's), and a cached
    prompt's prefill would look free. The first three ids spell ``serial`` in base 50."""
    head = [11 + (serial // 50**k) % 50 for k in range(3)]
    return (head + [11 + (i % 50) for i in range(prompt_tokens)])[:prompt_tokens]


def _stream(url: str, model: str, prompt_tokens: int, max_tokens: int) -> list[float]:
    """Times (s after sending) of each streamed chunk of one completion."""
    body = {"model": model, "prompt": unique_prompt(prompt_tokens, next(_SERIAL)),
            "max_tokens": max_tokens, "ignore_eos": True, "stream": True, "temperature": 0}
    stamps: list[float] = []
    start = time.perf_counter()
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=600.0) as r:
        if r.status_code != 200:
            raise CalibrationError(f"completion failed with {r.status_code}: {r.read()[:200]!r}")
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunk = json.loads(line[6:])
                if chunk.get("choices") and chunk["choices"][0].get("text") is not None:
                    stamps.append(time.perf_counter() - start)
    if not stamps:
        raise CalibrationError("the engine streamed no token")
    return stamps


def _gaps_ms(stamps: list[float]) -> list[float]:
    """Gaps between tokens after the first (the first gap follows the prefill)."""
    return [(b - a) * 1e3 for a, b in itertools.pairwise(stamps[1:])]


def calibrate(url: str, *, name: str, model: str | None = None, max_num_seqs: int | None = None,
              kv_cache_tokens: int | None = None, batch: int = 8,
              max_num_batched_tokens: int | None = None, enable_chunked_prefill: bool = True,
              long_prefill_token_threshold: int = 0, quiet: bool = False) -> Profile:
    """Measure the engine at ``url`` and return its profile (with the engine's scheduler
    settings as given: the engine does not report them)."""
    url = url.rstrip("/")
    if batch < 2:
        raise CalibrationError("--batch must be >= 2")

    def say(text: str) -> None:
        if not quiet:
            print(text, file=sys.stderr)

    with httpx.Client(timeout=30.0) as client:
        served, max_len = _models(client, url)
        kv = kv_cache_tokens or _kv_tokens(client, url)
    model = model or served
    max_len = max_len or 2048
    seqs = max_num_seqs or 256
    # The engine's settings, checked now (ProfileError) as the finished profile would
    # be, not after minutes of measuring; the timing is filled in below.
    given = Profile(
        name=name, max_num_seqs=seqs, max_model_len=max_len,
        kv_cache_tokens=kv if kv is not None and kv >= max_len else seqs * max_len,
        max_num_batched_tokens=max_num_batched_tokens,
        enable_chunked_prefill=enable_chunked_prefill,
        long_prefill_token_threshold=long_prefill_token_threshold,
        prefill_tokens_per_s=1.0, decode_ms_per_token=1.0, decode_ms_per_token_per_seq=0.0)
    output = min(64, max_len // 4)
    _stream(url, model, 8, 2)  # warm up
    lengths = sorted({max(8, int(max_len * f)) for f in (0.05, 0.2, 0.4, 0.6, 0.75)})
    lengths = [n for n in lengths if n + 2 <= max_len]
    xs, ys = [], []
    for n in lengths:
        for _ in range(3):
            xs.append(n)
            ys.append(_stream(url, model, n, 1)[0])
    slope, intercept = np.polyfit(np.array(xs, dtype=float), np.array(ys), 1)
    if slope <= 0:
        raise CalibrationError("prefill time does not grow with the prompt: cannot fit a speed")
    prefill = 1.0 / float(slope)
    say(f"prefill: {prefill:.0f} tokens/s (ttft = {intercept * 1e3:.1f} ms + prompt/speed)")
    single = statistics.median(_gaps_ms(_stream(url, model, 16, output)))
    say(f"decode, one sequence: {single:.2f} ms/token")
    with ThreadPoolExecutor(batch) as pool:
        runs = list(pool.map(lambda _: _stream(url, model, 16, output), range(batch)))
    # The middle of the run, when all streams decode together.
    gaps = [g for stamps in runs for g in _gaps_ms(stamps)[output // 4: 3 * output // 4]]
    together = statistics.median(gaps)
    per_seq = max(0.0, (together - single) / (batch - 1))
    say(f"decode, {batch} sequences: {together:.2f} ms/token ({per_seq:.3f} ms per further seq)")
    return dataclasses.replace(
        given,
        source=f"lab calibrate against {url} (model {model}) on "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}: prompts of {lengths} tokens, "
        f"{output}-token answers, batch {batch}",
        prefill_tokens_per_s=round(prefill, 1),
        decode_ms_per_token=round(single, 3),
        decode_ms_per_token_per_seq=round(per_seq, 4),
    )
