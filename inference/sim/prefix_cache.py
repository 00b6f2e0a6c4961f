"""vLLM's automatic prefix caching, per replica: purely computational.

The KV cache is ``num_blocks`` blocks of ``block_size`` tokens. A full block of
a prompt is named by a chained hash (vLLM's scheme): the hash of its parent
block, its token ids and an extra key (the LoRA adapter), so equal hashes mean
equal prefixes up to and including that block, and an adapter's blocks never
match the base model's.

A sequence admitted by the scheduler gets an ``Allocation``: its cached prefix
(the longest run of its leading block hashes already in the cache) is shared,
each of its other blocks is new. Blocks are counted once however many running
sequences share them. A block no running sequence holds stays cached until
its room is needed (then the least recently used goes first); blocks held by
running sequences are never evicted. When a sequence ends its blocks are
released tail first, as vLLM does, so a prefix outlives its continuations.

As in vLLM, at least the last prompt token is always computed (a prompt's hit
is at most ``prompt_tokens - 1`` tokens, in whole blocks), and a new full
prompt block is cached as soon as its sequence is admitted, so a later request
can hit it even while the first is still running.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

BlockHash = int
DEFAULT_BLOCK_SIZE: Final = 16  # vLLM's default --block-size
_NONE_HASH: Final = b"\0" * 8


def _digest(parent: bytes, payload: bytes, extra: str | None) -> bytes:
    h = hashlib.blake2b(parent, digest_size=8)
    h.update(payload)
    if extra is not None:
        h.update(b"\0extra:")
        h.update(extra.encode("utf-8", "surrogatepass"))
    return h.digest()


def block_hashes(
    token_ids: Sequence[int], *, block_size: int = DEFAULT_BLOCK_SIZE, extra: str | None = None,
) -> tuple[BlockHash, ...]:
    """Chained hashes of the full blocks of ``token_ids`` (a partial last block has none).

    ``extra`` is mixed into every block (vLLM mixes in the LoRA adapter's name
    and path): sequences with different extras share no block.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be positive, got {block_size}")
    out: list[BlockHash] = []
    parent = _NONE_HASH
    for start in range(0, len(token_ids) - block_size + 1, block_size):
        block = array("Q", (t & 0xFFFFFFFFFFFFFFFF for t in token_ids[start:start + block_size]))
        parent = _digest(parent, block.tobytes(), extra)
        out.append(int.from_bytes(parent, "little"))
    return tuple(out)


def chain_keys(keys: Iterable[Hashable], *, extra: str | None = None) -> tuple[BlockHash, ...]:
    """Chained hashes of blocks named by opaque keys (a trace's block ids) instead of tokens.

    Equal key sequences give equal hashes; the same key after different
    prefixes does not.
    """
    out: list[BlockHash] = []
    parent = _NONE_HASH
    for key in keys:
        parent = _digest(parent, repr(key).encode(), extra)
        out.append(int.from_bytes(parent, "little"))
    return tuple(out)


@dataclass(eq=False, slots=True)
class Allocation:
    """The blocks one running sequence holds: its hashed blocks and how many more."""

    hashes: list[BlockHash]  # the cached blocks it holds (the hit prefix first)
    anonymous: int  # blocks it holds that are not cached (the rest of its KV)
    hit_blocks: int  # of ``hashes``, how many were already cached when it was admitted

    @property
    def blocks(self) -> int:
        return len(self.hashes) + self.anonymous


@dataclass(kw_only=True)
class PrefixCache:
    """A replica's KV blocks with their prefix-cache index (see the module's docstring)."""

    num_blocks: int
    block_size: int = DEFAULT_BLOCK_SIZE
    _refs: dict[BlockHash, int] = field(default_factory=dict)  # cached and held: holders
    _free: OrderedDict[BlockHash, None] = field(default_factory=OrderedDict)  # cached, unheld
    _anonymous: int = 0
    queries: int = 0  # prompt tokens looked up (vllm:prefix_cache_queries)
    hits: int = 0  # of those, tokens found cached (vllm:prefix_cache_hits)

    def __post_init__(self) -> None:
        if self.num_blocks < 1:
            raise ValueError(f"num_blocks must be positive, got {self.num_blocks}")
        if self.block_size < 1:
            raise ValueError(f"block_size must be positive, got {self.block_size}")

    # --- reading -----------------------------------------------------------

    @property
    def used_blocks(self) -> int:
        """Blocks held by running sequences, each counted once."""
        return len(self._refs) + self._anonymous

    @property
    def cached_blocks(self) -> int:
        """Blocks with a hash: held ones and free ones kept for later hits."""
        return len(self._refs) + len(self._free)

    @property
    def usage(self) -> float:
        """Fraction of blocks held (free cached blocks count as free, as in vLLM)."""
        return self.used_blocks / self.num_blocks

    def blocks_for(self, tokens: int) -> int:
        """Blocks that ``tokens`` tokens of KV take."""
        return -(-tokens // self.block_size)

    def contains(self, block_hash: BlockHash) -> bool:
        return block_hash in self._refs or block_hash in self._free

    def held(self, block_hash: BlockHash) -> bool:
        """The block is held by a running sequence (so it cannot be evicted)."""
        return block_hash in self._refs

    def hit_length(self, hashes: Sequence[BlockHash]) -> int:
        """How many leading blocks of ``hashes`` are cached now."""
        n = 0
        for h in hashes:
            if not self.contains(h):
                break
            n += 1
        return n

    # --- changing ----------------------------------------------------------

    def allocate(
        self, hashes: Sequence[BlockHash], *, blocks: int, max_hit_blocks: int | None = None,
    ) -> Allocation | None:
        """Hold ``blocks`` blocks for a sequence whose full prompt blocks are ``hashes``.

        Its longest cached prefix (at most ``max_hit_blocks`` blocks) is shared;
        the others are taken from free room, evicting least recently used
        unheld blocks when needed, and its prompt blocks become cached. None
        (and nothing changed) when they do not fit. Counts the lookup in
        ``queries``/``hits`` only when it succeeds (vLLM counts at admission).
        """
        if len(hashes) > blocks:
            raise ValueError(f"{len(hashes)} hashed blocks in an allocation of {blocks}")
        limit = len(hashes) if max_hit_blocks is None else max(0, min(max_hit_blocks, len(hashes)))
        hit = self.hit_length(hashes[:limit])
        # Blocks that must come from room not held now: every block that is not a
        # hit and not already cached elsewhere (a cached block past the hit, whose
        # parent was evicted, is reused as vLLM would find it), plus the hit blocks
        # that sit in the free list (holding them takes them out of it).
        fresh = sum(1 for h in hashes[hit:] if not self.contains(h)) + (blocks - len(hashes))
        from_free = sum(1 for h in hashes if h in self._free)
        held_after = self.used_blocks + fresh + from_free
        if held_after > self.num_blocks:
            return None
        for h in hashes:
            if h in self._refs:
                self._refs[h] += 1
            else:
                self._free.pop(h, None)
                self._refs[h] = 1
        self._anonymous += blocks - len(hashes)
        # Room for the new blocks: empty blocks first, then the least recently used.
        while self.used_blocks + len(self._free) > self.num_blocks:
            self._free.popitem(last=False)
        return Allocation(hashes=list(hashes), anonymous=blocks - len(hashes), hit_blocks=hit)

    def record(self, *, prompt_tokens: int, hit_tokens: int) -> None:
        """Count one admitted request's lookup (vLLM's prefix-cache stats)."""
        self.queries += prompt_tokens
        self.hits += hit_tokens

    def release(self, alloc: Allocation, *, more_hashes: Sequence[BlockHash] = ()) -> None:
        """A sequence ended: its blocks are no longer held (cached ones stay, tail first).

        ``more_hashes`` names further full blocks it filled (its output, when the
        caller knows its tokens): those of its anonymous blocks become cached too.
        """
        extra = list(more_hashes)[: alloc.anonymous]
        self._anonymous -= alloc.anonymous
        # Tail first, as vLLM frees a request's blocks: its last block joins the
        # free list first and so is evicted before the blocks it continues.
        for h in reversed(extra):
            if not self.contains(h):  # a block cached already: the duplicate is just freed
                self._free[h] = None
        for h in reversed(alloc.hashes):
            n = self._refs[h] - 1
            if n:
                self._refs[h] = n
            else:
                del self._refs[h]
                self._free[h] = None
        alloc.hashes, alloc.anonymous = [], 0
