"""The sim's prefix cache: chained block hashes, sharing, LRU eviction, held blocks kept."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from inference.sim.prefix_cache import Allocation, PrefixCache, block_hashes, chain_keys

pytestmark = pytest.mark.unit


def test_a_block_hash_covers_its_parent_its_tokens_and_the_adapter() -> None:
    a = block_hashes([1, 2, 3, 4, 5, 6, 7, 8, 9], block_size=4)
    assert len(a) == 2  # the partial last block has no hash
    assert block_hashes([1, 2, 3, 4, 5, 6, 7, 8, 0], block_size=4) == a
    # Same second block after a different first one: a different hash (chained).
    b = block_hashes([0, 2, 3, 4, 5, 6, 7, 8], block_size=4)
    assert b[0] != a[0]
    assert b[1] != a[1]
    # Same tokens for an adapter: no block in common.
    c = block_hashes([1, 2, 3, 4, 5, 6, 7, 8], block_size=4, extra="lora-1")
    assert not set(c) & set(a)
    assert block_hashes([1, 2, 3], block_size=4) == ()


def test_chain_keys_names_blocks_by_their_whole_prefix() -> None:
    assert chain_keys([7, 8]) == chain_keys([7, 8])
    assert chain_keys([7, 8])[:1] == chain_keys([7, 9])[:1]
    assert chain_keys([1, 8])[1] != chain_keys([7, 8])[1]
    assert chain_keys([7]) != chain_keys([7], extra="a")


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="block_size"):
        block_hashes([1, 2], block_size=0)
    with pytest.raises(ValueError, match="num_blocks"):
        PrefixCache(num_blocks=0)
    cache = PrefixCache(num_blocks=4, block_size=4)
    with pytest.raises(ValueError, match="hashed blocks"):
        cache.allocate((1, 2, 3), blocks=2)


def test_a_shared_prefix_is_held_once_and_hit_by_the_second_sequence() -> None:
    cache = PrefixCache(num_blocks=10, block_size=4)
    first = cache.allocate((1, 2, 3), blocks=4)
    assert first is not None
    assert first.hit_blocks == 0
    assert cache.used_blocks == 4
    second = cache.allocate((1, 2, 9), blocks=4)
    assert second is not None
    assert second.hit_blocks == 2
    assert cache.used_blocks == 4 + 2  # blocks 1 and 2 are shared
    cache.release(first)
    assert cache.used_blocks == 4  # 1 and 2 are still held by the second
    cache.release(second)
    assert cache.used_blocks == 0
    assert cache.usage == 0
    assert cache.cached_blocks == 4  # 1, 2, 3 and 9 stay for later hits
    assert cache.hit_length((1, 2, 3, 4)) == 3


def test_the_hit_is_capped_by_max_hit_blocks() -> None:
    cache = PrefixCache(num_blocks=10, block_size=4)
    alloc = cache.allocate((1, 2), blocks=3)
    assert alloc is not None
    cache.release(alloc)
    again = cache.allocate((1, 2), blocks=3, max_hit_blocks=1)
    assert again is not None
    assert again.hit_blocks == 1


def test_unheld_blocks_are_evicted_least_recently_used_first_and_tail_first() -> None:
    cache = PrefixCache(num_blocks=4, block_size=1)
    old = cache.allocate((1, 2), blocks=2)
    assert old is not None
    cache.release(old)
    new = cache.allocate((3, 4), blocks=2)
    assert new is not None
    cache.release(new)
    # Needs 2 free blocks: evicts the oldest sequence's blocks, its tail first.
    a = cache.allocate((5,), blocks=1)
    assert a is not None
    assert [cache.contains(h) for h in (1, 2, 3, 4)] == [True, False, True, True]
    b = cache.allocate((6,), blocks=1)
    assert b is not None
    assert [cache.contains(h) for h in (1, 2, 3, 4)] == [False, False, True, True]


def test_a_hit_refreshes_a_block_so_it_is_evicted_later() -> None:
    cache = PrefixCache(num_blocks=3, block_size=1)
    for chain in ((1,), (2,), (3,)):
        alloc = cache.allocate(chain, blocks=1)
        assert alloc is not None
        cache.release(alloc)
    hit = cache.allocate((1,), blocks=1)
    assert hit is not None
    assert hit.hit_blocks == 1
    cache.release(hit)
    assert cache.allocate((9,), blocks=1) is not None
    assert [cache.contains(h) for h in (1, 2, 3)] == [True, False, True]


def test_held_blocks_are_never_evicted_and_what_does_not_fit_is_refused() -> None:
    cache = PrefixCache(num_blocks=4, block_size=1)
    held = cache.allocate((1, 2, 3), blocks=3)
    assert held is not None
    assert cache.allocate((7, 8), blocks=2) is None  # only one block left
    assert cache.used_blocks == 3
    assert not cache.contains(7)
    assert all(cache.held(h) for h in (1, 2, 3))


def test_output_blocks_named_at_release_are_cached_and_evicted_before_the_prompt() -> None:
    cache = PrefixCache(num_blocks=4, block_size=1)
    alloc = cache.allocate((1, 2), blocks=4)
    assert alloc is not None
    cache.release(alloc, more_hashes=(3, 4))
    assert cache.used_blocks == 0
    assert cache.hit_length((1, 2, 3, 4)) == 4
    assert cache.allocate((9,), blocks=1) is not None
    assert cache.hit_length((1, 2, 3, 4)) == 3  # the last output block went first


def test_lookups_are_counted_only_as_recorded() -> None:
    cache = PrefixCache(num_blocks=4, block_size=4)
    cache.record(prompt_tokens=10, hit_tokens=8)
    cache.record(prompt_tokens=5, hit_tokens=0)
    assert (cache.queries, cache.hits) == (15, 8)


# --- properties ----------------------------------------------------------------

# Chains drawn from a small tree of prefixes, so that sequences share blocks often.
_chains = st.lists(st.integers(0, 2), min_size=0, max_size=6).map(
    chain_keys
)


class CacheMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.cache = PrefixCache(num_blocks=8, block_size=2)
        self.live: list[Allocation] = []

    @rule(chain=_chains, extra=st.integers(0, 3), cap=st.none() | st.integers(0, 6))
    def allocate(self, chain: tuple[int, ...], extra: int, cap: int | None) -> None:
        before = self.cache.used_blocks
        expected_hit = self.cache.hit_length(chain[:len(chain) if cap is None else cap])
        alloc = self.cache.allocate(chain, blocks=len(chain) + extra, max_hit_blocks=cap)
        if alloc is None:
            assert self.cache.used_blocks == before  # refused: nothing changed
            return
        assert alloc.hit_blocks == expected_hit
        # The hit is a prefix of the chain, and each of its blocks was cached.
        assert all(self.cache.contains(h) for h in chain[:alloc.hit_blocks])
        self.live.append(alloc)

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data(), more=st.lists(st.integers(100, 120), max_size=3, unique=True))
    def release(self, data: st.DataObject, more: list[int]) -> None:
        alloc = self.live.pop(data.draw(st.integers(0, len(self.live) - 1)))
        self.cache.release(alloc, more_hashes=tuple(more))

    @invariant()
    def capacity_is_never_exceeded(self) -> None:
        held = {h for a in self.live for h in a.hashes}
        unheld_cached = self.cache.cached_blocks - len(held)
        assert self.cache.used_blocks + unheld_cached <= self.cache.num_blocks

    @invariant()
    def held_blocks_stay_cached_and_shared_ones_count_once(self) -> None:
        held = {h for a in self.live for h in a.hashes}
        assert all(self.cache.held(h) for h in held)
        assert self.cache.used_blocks == len(held) + sum(a.anonymous for a in self.live)


TestCacheMachine = CacheMachine.TestCase
TestCacheMachine.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)


@given(st.lists(st.integers(0, 1000), max_size=80), st.integers(1, 9))
def test_block_hashes_of_a_prefix_are_a_prefix_of_the_hashes(tokens: list[int], bs: int) -> None:
    whole = block_hashes(tokens, block_size=bs)
    assert len(whole) == len(tokens) // bs
    for cut in range(len(tokens) + 1):
        assert whole[:cut // bs] == block_hashes(tokens[:cut], block_size=bs)
