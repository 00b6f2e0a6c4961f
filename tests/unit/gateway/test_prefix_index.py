"""The prefix index: chained chunk hashes, longest matches, LRU bounds, forgetting pods."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.prefix_index import PrefixIndex, chunk_hashes

pytestmark = pytest.mark.unit

A, B, C = "http://10.0.0.1:8000", "http://10.0.0.2:8000", "http://10.0.0.3:8000"


def hashes(text: str, model: str = "m", chunk: int = 4, most: int = 100) -> tuple[int, ...]:
    return chunk_hashes(text, model=model, chunk_chars=chunk, max_chunks=most)


@settings(deadline=None)
@given(st.text(max_size=60), st.text(max_size=60))
def test_equal_hashes_exactly_for_a_shared_prefix(a: str, b: str) -> None:
    ha, hb = hashes(a), hashes(b)
    for i in range(min(len(ha), len(hb))):
        same_text = a[:(i + 1) * 4] == b[:(i + 1) * 4]
        assert (ha[i] == hb[i]) == same_text


def test_full_chunks_only_and_at_most_max_chunks() -> None:
    assert len(hashes("abcdefghij")) == 2  # "ij" is a partial chunk
    assert len(hashes("x" * 400, most=7)) == 7
    assert hashes("abc") == ()


def test_the_model_or_adapter_is_in_every_hash() -> None:
    base, lora = hashes("same text here!!", "m"), hashes("same text here!!", "m-lora")
    assert len(base) == len(lora) == 4
    assert not set(base) & set(lora)


def test_chunk_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="chunk_chars"):
        chunk_hashes("abc", model="m", chunk_chars=0, max_chunks=1)
    with pytest.raises(ValueError, match="chunks_per_pod"):
        PrefixIndex(chunks_per_pod=0)


def test_longest_matching_prefix_per_pod() -> None:
    index = PrefixIndex(chunks_per_pod=100)
    system = "You are helpful. " * 2  # 34 characters: 8 chunks of 4
    index.record(A, hashes(system + "first conversation"))
    index.record(B, hashes(system))
    ask = hashes(system + "first conversation, and more")
    matches = index.matches(ask)
    assert matches[B] == len(hashes(system))
    assert matches[A] == len(hashes(system + "first conversation"))
    assert C not in matches
    assert index.matches(hashes("nothing in common at all")) == {}


def test_a_match_must_start_at_the_first_chunk() -> None:
    index = PrefixIndex(chunks_per_pod=100)
    h = hashes("aaaabbbbcccc")
    index.record(A, h[1:])  # holds later chunks only (the first was evicted)
    assert index.matches(h) == {}


def test_lru_bound_per_pod_evicts_the_oldest() -> None:
    index = PrefixIndex(chunks_per_pod=3)
    old, new = hashes("oooooooo"), hashes("nnnnnnnnnnnn")  # 2 and 3 chunks
    index.record(A, old)
    index.record(A, new)
    assert index.held(A) == 3
    assert index.matches(old) == {}
    assert index.matches(new) == {A: 3}


def test_a_reused_chunk_is_refreshed_not_evicted() -> None:
    index = PrefixIndex(chunks_per_pod=4)
    keep = hashes("kkkk")
    index.record(A, keep)
    index.record(A, hashes("xxxxxxxx"))
    index.record(A, keep)  # used again: now the most recent
    index.record(A, hashes("yyyy"))  # evicts the oldest, which is no longer "kkkk"
    assert index.matches(keep) == {A: 1}


@settings(deadline=None)
@given(st.lists(st.tuples(st.sampled_from([A, B, C]), st.text("ab", max_size=40)), max_size=60),
       st.integers(1, 12))
def test_memory_stays_within_the_bound(
    routed: list[tuple[str, str]], bound: int,
) -> None:
    index = PrefixIndex(chunks_per_pod=bound)
    for pod, text in routed:
        index.record(pod, hashes(text, chunk=2))
        assert all(index.held(p) <= bound for p in (A, B, C))
    assert len(index) <= bound * 3


def test_pods_that_left_are_forgotten() -> None:
    index = PrefixIndex(chunks_per_pod=10)
    h = hashes("shared prefix!!!")
    index.record(A, h)
    index.record(B, h)
    index.retain([B, C])
    assert index.pods() == {B}
    assert index.matches(h) == {B: len(h)}
    index.forget(B)
    assert index.matches(h) == {}
    assert len(index) == 0
