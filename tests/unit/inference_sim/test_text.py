"""Deterministic prompts and output text."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from inference.sim.text import (
    BOS_TOKEN_ID,
    count_text_tokens,
    natural_length,
    output_text,
    output_token_ids,
    sequence_seed,
    text_token_ids,
    token_text,
)


def test_tokens_are_words_and_marks_plus_the_start_of_sequence() -> None:
    assert count_text_tokens("") == 1
    assert count_text_tokens("Hello, world!") == 5
    assert count_text_tokens("  spaced   out  ") == 3


def test_the_same_request_gives_the_same_text() -> None:
    a = sequence_seed(seed=0, model="m", prompt="hi there")
    b = sequence_seed(seed=0, model="m", prompt="hi there")
    assert output_text(a, 0, 20) == output_text(b, 0, 20)


def test_model_adapter_prompt_and_seed_each_change_the_text() -> None:
    base = output_text(sequence_seed(seed=0, model="m", prompt="p"), 0, 20)
    for other in (
        sequence_seed(seed=0, model="m-lora", prompt="p"),
        sequence_seed(seed=0, model="m", prompt="q"),
        sequence_seed(seed=1, model="m", prompt="p"),
        sequence_seed(seed=0, model="m", prompt=(1, 2)),
    ):
        assert output_text(other, 0, 20) != base


@given(st.integers(0, 2**64 - 1), st.integers(0, 50), st.integers(0, 50))
def test_text_in_pieces_is_the_text_in_one(seed: int, cut: int, extra: int) -> None:
    end = cut + extra
    assert output_text(seed, 0, cut) + output_text(seed, cut, end) == output_text(seed, 0, end)
    assert output_text(seed, 0, end).count(" ") == end
    assert all(token_text(seed, i).startswith(" ") for i in range(end))


@given(st.integers(0, 2**64 - 1), st.integers(1, 100), st.integers(0, 100))
def test_natural_length_is_within_its_bounds(seed: int, low: int, span: int) -> None:
    assert low <= natural_length(seed, low, low + span) <= low + span


@given(st.text(max_size=200))
def test_token_ids_count_as_the_prompt_counts_and_are_stable(text: str) -> None:
    ids = text_token_ids(text)
    assert len(ids) == count_text_tokens(text)
    assert ids == text_token_ids(text)
    assert ids[0] == BOS_TOKEN_ID


def test_a_text_that_starts_another_starts_its_token_ids() -> None:
    first = "<|system|>\nYou are terse.\n<|user|>\nHi, there!\n<|assistant|>\n"
    longer = first + "Hello again.\n<|user|>\nMore?\n<|assistant|>\n"
    assert text_token_ids(longer)[:len(text_token_ids(first))] == text_token_ids(first)
    assert text_token_ids("cat") != text_token_ids("dog")


def test_an_answer_sent_back_in_a_prompt_has_the_ids_the_output_had() -> None:
    seed = sequence_seed(seed=0, model="m", prompt="q")
    answer = output_text(seed, 0, 12)
    assert text_token_ids(answer)[1:] == output_token_ids(seed, 0, 12)
    assert output_token_ids(seed, 3, 7) == output_token_ids(seed, 0, 12)[3:7]
