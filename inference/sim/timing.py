"""How long one engine step takes: purely computational.

A step runs every scheduled sequence once: the sequences admitted in it are
prefilled (their whole prompt) and give their first token, the others decode
one token each. Its duration is the prefill work at ``prefill_tokens_per_s``
plus one decode pass whose cost grows with the batch::

    duration = prompt_tokens / prefill_tokens_per_s
             + (decode_ms_per_token + decode_ms_per_token_per_seq * (batch - 1)) / 1000
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class TimingModel:
    prefill_tokens_per_s: float
    decode_ms_per_token: float
    decode_ms_per_token_per_seq: float

    def decode_seconds(self, batch: int) -> float:
        """One decode pass over ``batch`` sequences (0 for an empty batch)."""
        if batch <= 0:
            return 0.0
        return (self.decode_ms_per_token + self.decode_ms_per_token_per_seq * (batch - 1)) / 1e3

    def step_seconds(self, *, prefill_tokens: int, batch: int) -> float:
        """A step that prefills ``prefill_tokens`` and runs ``batch`` sequences in all."""
        return prefill_tokens / self.prefill_tokens_per_s + self.decode_seconds(batch)
