"""Which pod takes a request: a pure function of the request, the candidates and their load.

Nothing here does I/O or keeps state. Whatever a strategy needs from outside
comes in as arguments: the random generator (seeded in tests), the turn
counter of round-robin, the prompt's prefix for prefix-affinity, and each
candidate's load as the caller measured it.

Strategies:

- ``random``: uniform over the candidates.
- ``round-robin``: candidate ``turn mod n`` of the candidates in key order.
- ``least-request``: fewest requests in flight from this gateway; ties at random.
- ``least-queue``: shortest engine queue (waiting, then waiting + running, as the
  pod's sidecar last reported it, never less than this gateway's own in-flight
  count, which is fresher); ties at random.
- ``prefix-affinity``: consistent hashing with bounded loads. Candidates are
  ordered by rendezvous hashing of the prompt's prefix (each prefix has its
  own stable order, and removing a pod moves only the prefixes it had); the
  first candidate whose in-flight count, with this request, stays within
  ``ceil(load_factor * mean)`` takes it, so one hot prefix cannot overload a pod.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

RANDOM: Final = "random"
ROUND_ROBIN: Final = "round-robin"
LEAST_REQUEST: Final = "least-request"
LEAST_QUEUE: Final = "least-queue"
PREFIX_AFFINITY: Final = "prefix-affinity"

STRATEGIES: Final[frozenset[str]] = frozenset(
    {RANDOM, ROUND_ROBIN, LEAST_REQUEST, LEAST_QUEUE, PREFIX_AFFINITY}
)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A pod that can take the request, with the load the caller knows of."""

    key: str
    """Stable identity (the endpoint's URL): the hash and the order use it."""
    in_flight: int = 0
    """Requests this gateway has sent to it and not yet seen finish."""
    waiting: int | None = None
    """Requests queued in its engine, from its sidecar (None: not known)."""
    running: int | None = None
    """Requests its engine is running, from its sidecar (None: not known)."""
    prefill: int = 0
    """Prompt left to prefill (estimated) of the requests sent to it that have not yet
    given their first token: characters at the gateway, tokens in the lab."""


def pick(
    strategy: str,
    candidates: Sequence[Candidate],
    *,
    rng: random.Random,
    turn: int = 0,
    prefix: str = "",
    load_factor: float = 1.25,
) -> int:
    """The index in ``candidates`` of the one to use.

    ``candidates`` must not be empty; an unknown strategy is a ``ValueError``.
    """
    n = len(candidates)
    if n == 0:
        raise ValueError("no candidates to pick from")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown routing strategy {strategy!r}")
    if n == 1:
        return 0
    if strategy == RANDOM:
        return rng.randrange(n)
    if strategy == ROUND_ROBIN:
        order = sorted(range(n), key=lambda i: candidates[i].key)
        return order[turn % n]
    if strategy == LEAST_REQUEST:
        return _least(candidates, lambda c: (c.in_flight,), rng)
    if strategy == LEAST_QUEUE:
        return _least(candidates, _queue_score, rng)
    return _prefix_affinity(candidates, prefix, load_factor)


def _queue_score(c: Candidate) -> tuple[int, int]:
    waiting = c.waiting or 0
    total = waiting + (c.running or 0)
    # The sidecar's numbers are up to one poll old; requests this gateway sent
    # since are in the engine too, so its in-flight count is a floor.
    return (waiting, max(total, c.in_flight))


def _least(
    candidates: Sequence[Candidate],
    score: Callable[[Candidate], tuple[int, ...]],
    rng: random.Random,
) -> int:
    scores = [score(c) for c in candidates]
    best = min(scores)
    ties = [i for i, s in enumerate(scores) if s == best]
    return ties[0] if len(ties) == 1 else ties[rng.randrange(len(ties))]


def rendezvous_order(candidates: Sequence[Candidate], prefix: str) -> list[int]:
    """Candidate indices by decreasing rendezvous weight for ``prefix``."""
    seed = hashlib.blake2b(prefix.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def weight(i: int) -> bytes:
        return hashlib.blake2b(candidates[i].key.encode(), digest_size=8, key=seed).digest()

    return sorted(range(len(candidates)), key=weight, reverse=True)


def load_bound(candidates: Sequence[Candidate], load_factor: float) -> int:
    """The most requests in flight a pod may have, counting the new one."""
    total = sum(c.in_flight for c in candidates) + 1
    return max(1, math.ceil(load_factor * total / len(candidates)))


def _prefix_affinity(candidates: Sequence[Candidate], prefix: str, load_factor: float) -> int:
    bound = load_bound(candidates, load_factor)
    order = rendezvous_order(candidates, prefix)
    for i in order:
        if candidates[i].in_flight + 1 <= bound:
            return i
    # Unreachable: some candidate is at or below the mean. Kept for safety.
    return min(order, key=lambda i: candidates[i].in_flight)  # pragma: no cover


def _chat_texts(messages: list[Any]) -> Iterator[str]:
    """A chat prompt's rendered pieces in order: each message's ``role:``, its text, a newline."""
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        yield f"{role}:" if isinstance(role, str) else ":"
        content = message.get("content")
        if isinstance(content, str):
            yield content
        elif isinstance(content, list):
            for piece in content:
                if isinstance(piece, dict) and isinstance(piece.get("text"), str):
                    yield piece["text"]
        yield "\n"


def _completion_prompt(body: Mapping[str, Any]) -> Any:
    """A completion's prompt: a string, a list of token ids, or something else (no prompt);
    of a batch, its first."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int):
        prompt = prompt[0]
    return prompt


def prompt_prefix(body: Mapping[str, Any], chars: int) -> str:
    """The first ``chars`` characters of a request's prompt, for prefix-affinity.

    Chat requests: the messages' roles and text in order; completions: the
    prompt (its first element when it is a list). Anything else gives "".
    """
    messages = body.get("messages")
    if isinstance(messages, list):
        parts: list[str] = []
        size = 0
        for text in _chat_texts(messages):
            if size >= chars:
                break
            parts.append(text)
            size += len(text)
        return "".join(parts)[:chars]
    prompt = _completion_prompt(body)
    if isinstance(prompt, str):
        return prompt[:chars]
    if isinstance(prompt, list):  # token ids
        return ",".join(str(t) for t in prompt[:chars])[:chars]
    return ""


def prompt_chars(body: Mapping[str, Any]) -> int:
    """How long a request's prompt is, in the characters ``prompt_prefix`` renders it in.

    A prompt of token ids counts 4 characters a token (about what a BPE token
    of English text covers). Computed without building the text.
    """
    messages = body.get("messages")
    if isinstance(messages, list):
        return sum(len(text) for text in _chat_texts(messages))
    prompt = _completion_prompt(body)
    if isinstance(prompt, str):
        return len(prompt)
    if isinstance(prompt, list):
        return 4 * len(prompt)
    return 0
