"""Which pods have recently been sent which prompt prefixes: prefix-cache routing's memory.

A prompt is cut into chunks of ``chunk_chars`` characters and each full
chunk gets a chained hash: the hash of chunk ``i`` covers the hash of chunk
``i - 1``, the chunk's text and (through the first one) the model or adapter
name, as vLLM's block hashes cover their parent, their tokens and the LoRA.
Two requests share chunk ``i``'s hash exactly when they share the first
``(i + 1) * chunk_chars`` characters and the model. A last, partial chunk is
not hashed (vLLM caches full blocks only).

``chunk_hashes`` is pure. ``PrefixIndex`` is the small stateful part: for each
pod, the chunk hashes of the requests recently routed to it, in LRU order.
There is no map from a hash to its pods: a lookup asks each pod's LRU in
turn (one dict probe per pod that misses the first chunk), which costs less
than keeping such a map up to date on every routed request and every
eviction (``bench/routing/RESULTS.md``, "Overhead").

Memory bound: at most ``chunks_per_pod`` hashes per pod, and only pods still
in the routing table (``retain`` forgets the others), so at most
``chunks_per_pod * pods`` entries; each costs about 170 bytes (a slot and a
node of the pod's OrderedDict and the hash's int, measured with tracemalloc),
so the default 8,192 chunks per pod is about 1.4 MB per pod. Hashes are Python's own
(SipHash, salted per process): they only need to agree within one gateway
process, and they cost a fraction of a microsecond per chunk.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence


def chunk_hashes(text: str, *, model: str, chunk_chars: int, max_chunks: int) -> tuple[int, ...]:
    """The chained hashes of ``text``'s full chunks (at most ``max_chunks``)."""
    if chunk_chars <= 0:
        raise ValueError("chunk_chars must be > 0")
    n = min(len(text) // chunk_chars, max_chunks)
    parent = hash(("brix-prefix", model))
    out = []
    for i in range(n):
        parent = hash((parent, text[i * chunk_chars:(i + 1) * chunk_chars]))
        out.append(parent)
    return tuple(out)


class PrefixIndex:
    """Per pod, the chunk hashes recently routed to it (LRU, bounded)."""

    def __init__(self, *, chunks_per_pod: int) -> None:
        if chunks_per_pod <= 0:
            raise ValueError("chunks_per_pod must be > 0")
        self.chunks_per_pod = chunks_per_pod
        self._pods: dict[str, OrderedDict[int, None]] = {}

    def __len__(self) -> int:
        """Entries held, all pods together (each pod's count is at most the bound)."""
        return sum(len(h) for h in self._pods.values())

    def pods(self) -> set[str]:
        return set(self._pods)

    def held(self, pod: str) -> int:
        """How many chunk hashes ``pod`` holds."""
        return len(self._pods.get(pod, ()))

    def matches(self, hashes: Sequence[int]) -> dict[str, int]:
        """For each pod holding the first chunk: how many leading chunks it holds in a row."""
        out: dict[str, int] = {}
        if not hashes:
            return out
        first = hashes[0]
        for pod, lru in self._pods.items():
            if first not in lru:
                continue
            n = 1
            for h in hashes[1:]:
                if h not in lru:
                    break
                n += 1
            out[pod] = n
        return out

    def record(self, pod: str, hashes: Iterable[int]) -> None:
        """``pod`` was sent a request with these chunks: they are its most recent."""
        lru = self._pods.get(pod)
        if lru is None:
            lru = self._pods[pod] = OrderedDict()
        move = lru.move_to_end
        for h in hashes:
            if h in lru:
                move(h)
            else:
                lru[h] = None
        if len(lru) > self.chunks_per_pod:
            pop = lru.popitem
            for _ in range(len(lru) - self.chunks_per_pod):
                pop(last=False)

    def forget(self, pod: str) -> None:
        """``pod`` is gone: nothing of it is kept."""
        self._pods.pop(pod, None)

    def retain(self, pods: Iterable[str]) -> None:
        """Forget every pod not in ``pods``."""
        keep = set(pods)
        for pod in [p for p in self._pods if p not in keep]:
            self.forget(pod)
