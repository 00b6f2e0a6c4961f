"""Deterministic tokens and text: pure functions, no state.

The sim has no real tokenizer. A prompt counts one token for the start of
sequence plus one per word or punctuation mark (``\\w+`` runs and single other
non-space characters; whitespace is not a token); token-id prompts count their
ids. For prefix caching each such piece has a stable id, a hash of its text
(``text_token_ids``), so equal texts give equal ids and a text that starts
another starts its ids too (up to a word cut in two). The output is a
sequence of words, each a function of (seed, model or adapter name, prompt,
position): the same request gives the same text, and an adapter gives text
different from its base model's. An output word's id is the id the same word
gets in a prompt (``output_token_ids``), so a conversation that sends an
answer back shares its tokens.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Sequence
from typing import Final

_TOKEN_RE: Final = re.compile(r"\w+|[^\w\s]")
_MASK64: Final = (1 << 64) - 1

# Common words; the choice only needs to read like text and stay fixed.
_WORDS: Final = """the of and to in is that for it as was with be by on not he this are or his
    from at which but have an they you were her she there one all we their can has
    been if more when will would who so no model token cluster pod gateway adapter
    request stream batch cache prompt answer small large fast slow river mountain
    light north garden window paper stone music quiet bright early later simple
    careful open close system value number reason people little great other new
    good first last long own right old big high different following public able
    time year way day thing man world life hand part child eye woman place work
    week case point government company group problem fact"""
VOCAB: Final[tuple[str, ...]] = tuple(_WORDS.split())


def count_text_tokens(text: str) -> int:
    """Tokens of a text prompt: one for the start of sequence, one per word or mark."""
    return 1 + sum(1 for _ in _TOKEN_RE.finditer(text))


BOS_TOKEN_ID: Final = 1


@functools.lru_cache(maxsize=1 << 16)
def piece_id(piece: str) -> int:
    """The stable id of one word or mark: 32 bits of its hash, above the special ids."""
    digest = hashlib.blake2b(piece.encode("utf-8", "surrogatepass"), digest_size=4).digest()
    return 2 + int.from_bytes(digest, "little")


def text_token_ids(text: str) -> tuple[int, ...]:
    """A text prompt's token ids: the start of sequence, then one per word or mark.

    ``len(text_token_ids(t)) == count_text_tokens(t)``.
    """
    return (BOS_TOKEN_ID, *(piece_id(m.group()) for m in _TOKEN_RE.finditer(text)))


def sequence_seed(*, seed: int, model: str, prompt: str | Sequence[int]) -> int:
    """A 64-bit seed for one request's output (model is the served or adapter name)."""
    h = hashlib.blake2b(digest_size=8)
    h.update(str(seed).encode())
    h.update(b"\0")
    h.update(model.encode())
    h.update(b"\0")
    if isinstance(prompt, str):
        h.update(prompt.encode("utf-8", "surrogatepass"))
    else:
        h.update(b"ids:" + ",".join(str(i) for i in prompt).encode())
    return int.from_bytes(h.digest(), "little")


def _mix(x: int) -> int:
    """splitmix64's finaliser: a cheap, well-spread 64-bit hash."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def token_text(seq_seed: int, position: int) -> str:
    """The text of output token ``position`` (0-based): a word with its leading space."""
    return " " + VOCAB[_mix(seq_seed ^ (position * 0xD1B54A32D192ED03 & _MASK64)) % len(VOCAB)]


def output_token_ids(seq_seed: int, start: int, stop: int) -> tuple[int, ...]:
    """The ids of output tokens ``start`` up to ``stop``: each word's prompt id."""
    return tuple(piece_id(token_text(seq_seed, i)[1:]) for i in range(start, stop))


def output_text(seq_seed: int, start: int, stop: int) -> str:
    """The text of output tokens ``start`` up to (not including) ``stop``."""
    return "".join(token_text(seq_seed, i) for i in range(start, stop))


def natural_length(seq_seed: int, low: int, high: int) -> int:
    """Where the output would end on its own (its end of sequence), in [low, high]."""
    return low + _mix(seq_seed ^ 0xA5A5A5A5A5A5A5A5) % (high - low + 1)
