"""The routing benchmark's workloads: pure functions from traces to timed chat requests.

Text is made of words the sim counts as one token each (``\\w+``, see
inference/sim/text.py), so a block of ``block_words`` words is that many
tokens. Every word carries the run's ``salt``: two runs never share a prefix,
so a cache warmed by one strategy's run cannot help the next one's.

- ``mooncake``: the Mooncake conversation trace. Each ``hash_ids`` entry (a
  512-token block in the trace) becomes ``block_words`` words that depend only
  on the id, so requests that share ids share text exactly, in the same
  order; the prompt is one user message. Output lengths are scaled by
  ``output_scale``; arrival times are compressed so that the mean rate is
  ``rate`` requests per second.
- ``chat``: synthetic multi-turn chats: each session has one of a few shared
  system prompts, and each turn re-sends the whole conversation so far
  (user turns and the assistant's answers, written here as fixed text) plus a
  new question: a growing prefix, as chat clients send.
- ``azure``: the Azure conversation trace with random text of each request's
  length (times ``token_scale``): nothing shared.
"""

from __future__ import annotations

import csv
import datetime
import gzip
import io
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"
MOONCAKE = DATA / "mooncake_conversation_first3000.jsonl.gz"
AZURE = DATA / "azure_conv_2023_first3000.csv.gz"
TRACE_BLOCK_TOKENS = 512  # Mooncake's hash_ids block size


@dataclass(frozen=True, slots=True)
class Request:
    at: float
    """Seconds after the start of the run."""
    messages: tuple[dict[str, str], ...]
    max_tokens: int
    prompt_tokens: int
    """Words in the messages (what the sim counts, give or take its role markers)."""
    conversation: int | None = None
    """The chat session it belongs to (``chat``); None elsewhere."""


def words(key: str, n: int, salt: str) -> str:
    """``n`` one-token words that depend only on ``key`` and ``salt``."""
    return " ".join(f"{salt}{key}w{j}" for j in range(n))


def _rescale(times: list[float], rate: float) -> list[float]:
    """Arrival times shifted to start at 0 and compressed or stretched to ``rate`` per second."""
    if not times:
        return []
    t0 = times[0]
    span = times[-1] - t0
    if span <= 0 or len(times) < 2:
        return [i / rate for i in range(len(times))]
    factor = (len(times) - 1) / rate / span
    return [(t - t0) * factor for t in times]


def load_mooncake(path: Path = MOONCAKE) -> list[dict[str, Any]]:
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_azure(path: Path = AZURE) -> list[tuple[float, int, int]]:
    """(seconds since the first row, context tokens, generated tokens)."""
    with gzip.open(path, "rt") as f:
        rows = list(csv.DictReader(io.StringIO(f.read())))
    out = []
    t0: datetime.datetime | None = None
    for row in rows:
        stamp = datetime.datetime.fromisoformat(row["TIMESTAMP"][:26])
        t0 = t0 or stamp
        out.append(((stamp - t0).total_seconds(), int(row["ContextTokens"]),
                    int(row["GeneratedTokens"])))
    return out


def sample_conversations(rows: Iterable[dict[str, Any]], n: int, *, seed: int = 0,
                         ) -> list[dict[str, Any]]:
    """About ``n`` rows: whole conversations drawn at random, in their time order.

    A conversation is the rows that share their first two blocks (every row
    of the trace starts with block 0). A time window of the trace would hold
    few second turns, which come minutes after the first; sampling
    conversations keeps the trace's mix of one-turn and many-turn ones across
    its whole span, and the compression of time brings the turns together.
    """
    all_rows = list(rows)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, r in enumerate(all_rows):
        groups.setdefault(tuple(r["hash_ids"][:2]), []).append(i)
    keys = list(groups)
    random.Random(seed).shuffle(keys)
    chosen: list[int] = []
    for key in keys:
        if len(chosen) >= n:
            break
        chosen += groups[key]
    return [all_rows[i] for i in sorted(chosen)]


def mooncake(rows: Iterable[dict[str, Any]], *, n: int, rate: float, block_words: int,
             output_scale: float, salt: str, max_tokens_cap: int = 256) -> list[Request]:
    picked = sample_conversations(rows, n)
    times = _rescale([r["timestamp"] / 1000.0 for r in picked], rate)
    out = []
    for at, r in zip(times, picked, strict=True):
        text = " ".join(words(f"b{h}", block_words, salt) for h in r["hash_ids"])
        out.append(Request(
            at=at, messages=({"role": "user", "content": text},),
            max_tokens=max(1, min(max_tokens_cap, round(r["output_length"] * output_scale))),
            prompt_tokens=block_words * len(r["hash_ids"]),
        ))
    return out


def azure(rows: Iterable[tuple[float, int, int]], *, n: int, rate: float, token_scale: float,
          output_scale: float, salt: str, max_tokens_cap: int = 256) -> list[Request]:
    picked = list(rows)[:n]
    times = _rescale([t for t, _, _ in picked], rate)
    scale = token_scale
    out = []
    for i, (at, (_, context, generated)) in enumerate(zip(times, picked, strict=True)):
        tokens = max(1, round(context * scale))
        out.append(Request(
            at=at, messages=({"role": "user", "content": words(f"r{i}x", tokens, salt)},),
            max_tokens=max(1, min(max_tokens_cap, round(generated * output_scale))),
            prompt_tokens=tokens,
        ))
    return out


def chat(*, sessions: int, turns: int, rate: float, system_prompts: int, system_words: int,
         turn_words: int, answer_words: int, max_tokens: int, salt: str,
         seed: int = 0) -> list[Request]:
    """Multi-turn chats at ``rate`` requests per second in all (sessions overlap).

    Sessions start at random in the first third of the run; each waits a
    random think time (0.5-1.5 of the mean) between its turns.
    """
    rng = random.Random(seed)
    n = sessions * turns
    think = 2.0 / 3.0 / turns  # in units of the run's length, rescaled below
    starts = [rng.uniform(0, 1 / 3) for _ in range(sessions)]
    times = {(s, k): starts[s] + sum(rng.uniform(0.5, 1.5) * think for _ in range(k))
             for s in range(sessions) for k in range(turns)}
    order = sorted(times, key=lambda sk: times[sk])
    scaled = dict(zip(order, _rescale([times[sk] for sk in order], rate), strict=True))
    out = []
    for s in range(sessions):
        system = words(f"sys{s % system_prompts}", system_words, salt)
        history: list[dict[str, str]] = [{"role": "system", "content": system}]
        for k in range(turns):
            history.append({"role": "user", "content": words(f"s{s}u{k}", turn_words, salt)})
            at = scaled[(s, k)]
            tokens = sum(len(m["content"].split()) for m in history)
            out.append(Request(at=max(0.0, at), messages=tuple(history),
                               max_tokens=max_tokens, prompt_tokens=tokens, conversation=s))
            history.append({"role": "assistant",
                            "content": words(f"s{s}a{k}", answer_words, salt)})
    out.sort(key=lambda r: r.at)
    assert len(out) == n
    return out


def mean_prompt_tokens(requests: Iterable[Request]) -> float:
    reqs = list(requests)
    return sum(r.prompt_tokens for r in reqs) / max(1, len(reqs))
