"""The step-duration formula of the sim's timing model."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inference.sim.timing import TimingModel

MODEL = TimingModel(prefill_tokens_per_s=1000.0, decode_ms_per_token=10.0,
                    decode_ms_per_token_per_seq=0.5)


def test_one_sequence_decodes_in_the_base_time() -> None:
    assert MODEL.decode_seconds(1) == pytest.approx(0.010)


def test_decode_grows_with_the_batch() -> None:
    assert MODEL.decode_seconds(5) == pytest.approx(0.010 + 4 * 0.0005)


def test_an_empty_batch_costs_nothing() -> None:
    assert MODEL.decode_seconds(0) == 0.0
    assert MODEL.step_seconds(prefill_tokens=0, batch=0) == 0.0


def test_prefill_adds_prompt_tokens_at_its_rate() -> None:
    assert MODEL.step_seconds(prefill_tokens=500, batch=2) == pytest.approx(0.5 + 0.0105)


@given(st.integers(1, 2000), st.integers(0, 100_000))
def test_a_larger_batch_or_prompt_never_makes_a_step_shorter(batch: int, prompt: int) -> None:
    base = MODEL.step_seconds(prefill_tokens=prompt, batch=batch)
    assert MODEL.step_seconds(prefill_tokens=prompt, batch=batch + 1) >= base
    assert MODEL.step_seconds(prefill_tokens=prompt + 1, batch=batch) > base
