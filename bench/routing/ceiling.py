"""What hit ratio a workload allows, per way of placing its requests: purely computational.

Each request is its prompt's token ids, in arrival order, with the
conversation it belongs to. A replica's prefix cache is counted as vLLM counts
it (``vllm:prefix_cache_hits`` over ``_queries``): a prompt's hit is its
longest run of leading full blocks already cached on its replica, at most
``prompt - 1`` tokens (the last token is always computed), and afterwards all
its full blocks are cached. Answers are not cached (the workload's next turn
re-sends fixed text, not what the model answered). By default caches never
evict; with ``cache_blocks`` each replica holds at most that many blocks and
evicts the least recently used first (a request's blocks, hit or new, become
the most recent, its last block the first of them to go), one request at a
time, as a replica with a KV cache of that many blocks does when requests do
not overlap (vLLM frees a finished request's blocks to an LRU queue, tail
first; overlapping requests pin theirs, which this leaves out).

- ``one cache``: every request on one replica: without eviction no routing
  over several can hit more (with ``cache_blocks`` it is one replica's cache,
  and several replicas' caches together can hold more).
- ``sticky``: each conversation on its own replica (conversation ``c`` on
  ``c mod replicas``): what perfect conversation affinity reaches.
- ``round-robin``: request ``i`` (in arrival order) on replica ``i mod
  replicas``, as the gateway's round-robin places them when nothing arrives
  out of order.
- ``random``: each request on a replica drawn at random, the mean over 400 draws.

And what time to first token it allows (``ttft_floors``): each request alone on
an idle replica whose cache holds every earlier prompt's blocks (``one cache``
with nothing else to do), stepped through the sim's scheduler and timing
(``lab.ceiling.best_ttfts``). No routing gives a request less, so a percentile of
these floors bounds that percentile of any run from below (HTTP and the
gateway add to it).
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from inference.sim.prefix_cache import block_hashes
from lab.ceiling import best_ttfts
from lab.profiles import Profile


@dataclass(frozen=True, slots=True)
class Prompt:
    conversation: int
    token_ids: tuple[int, ...]


def hit_ratio(prompts: Sequence[Prompt], placement: Sequence[int], *, block_size: int,
              cache_blocks: int | None = None) -> float:
    """Hits over queries, in tokens, with prompt ``i`` on replica ``placement[i]``."""
    return _ratio(_blocks(prompts, block_size), placement, block_size=block_size,
                  cache_blocks=cache_blocks)


def _blocks(prompts: Sequence[Prompt], block_size: int) -> list[tuple[int, tuple[int, ...]]]:
    """Each prompt's length and the chained hashes of its full blocks."""
    return [(len(p.token_ids), block_hashes(p.token_ids, block_size=block_size)) for p in prompts]


def _ratio(blocks: Sequence[tuple[int, tuple[int, ...]]], placement: Sequence[int], *,
           block_size: int, cache_blocks: int | None = None) -> float:
    if len(placement) != len(blocks):
        raise ValueError("one replica per prompt")
    if cache_blocks is not None and cache_blocks < 1:
        raise ValueError("cache_blocks must be at least 1")
    # Per replica, its cached block hashes from least to most recently used.
    caches: dict[int, OrderedDict[int, None]] = {}
    hits = queries = 0
    for (n, hashes), replica in zip(blocks, placement, strict=True):
        cache = caches.setdefault(replica, OrderedDict())
        hit = 0
        for h in hashes[:(n - 1) // block_size]:
            if h not in cache:
                break
            hit += 1
        hits += hit * block_size
        queries += n
        for h in reversed(hashes):  # the prompt's last block is the first to go, as in vLLM
            cache[h] = None
            cache.move_to_end(h)
        while cache_blocks is not None and len(cache) > cache_blocks:
            cache.popitem(last=False)
    return hits / queries if queries else float("nan")


def _drawn(n: int, replicas: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(replicas) for _ in range(n)]


def placements(prompts: Sequence[Prompt], *, replicas: int, seeds: int = 400,
               block_size: int, cache_blocks: int | None = None) -> dict[str, float]:
    """The hit ratio of each placement of the module's docstring (``one cache``: one
    replica's cache of ``cache_blocks``, not the fleet's)."""
    if replicas < 1:
        raise ValueError("replicas must be at least 1")
    blocks = _blocks(prompts, block_size)
    n = len(prompts)

    def ratio(placement: Sequence[int]) -> float:
        return _ratio(blocks, placement, block_size=block_size, cache_blocks=cache_blocks)

    rand = [ratio(_drawn(n, replicas, seed)) for seed in range(seeds)]
    return {
        "one cache": ratio([0] * n),
        "sticky": ratio([p.conversation % replicas for p in prompts]),
        "round-robin": ratio([i % replicas for i in range(n)]),
        "random": sum(rand) / len(rand),
    }


def ttft_floors(prompts: Sequence[Prompt], profile: Profile, *, block_size: int) -> list[float]:
    """Each prompt's best time to first token (seconds, in arrival order): alone on an idle
    replica of ``profile`` that holds every earlier prompt's full blocks."""
    return best_ttfts(_blocks(prompts, block_size), profile, block_size)
