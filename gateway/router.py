"""Routing by profile: the state profiles need around the pure ``gateway.scoring``.

``ProfileRouter`` keeps the prefix index (``gateway.prefix_index``) and when
each adapter was last sent to each pod; for one request it gathers the
signals, lets ``scoring.pick_scored`` decide, and records the choice. Every
routed request updates the index; when the routing table changes, pods no
longer in it are forgotten.

Memory bound of the adapter recency: at most ``lora_entries`` (pod, adapter)
pairs (10,000 by default, about 2 MB: a tuple, a float and a dict slot, some
200 bytes, each); past it the least recently routed pair goes first, so an
adapter active now is never the one forgotten while the bound is not tiny.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gateway.load import LoadTracker
from gateway.picker import prompt_prefix
from gateway.prefix_index import PrefixIndex, chunk_hashes
from gateway.routing_config import RoutingConfig
from gateway.scoring import Profile, Signals, pick_scored, uncached
from gateway.table import Endpoint, RoutingTable

LORA_ENTRIES_MAX = 10_000
"""(pod, adapter) pairs remembered at most, by default."""


class ProfileRouter:
    """Picks endpoints for requests routed by a profile."""

    def __init__(
        self,
        config: RoutingConfig,
        *,
        table: RoutingTable,
        tracker: LoadTracker,
        clock: Callable[[], float] = time.monotonic,
        lora_entries: int = LORA_ENTRIES_MAX,
    ) -> None:
        if lora_entries < 1:
            raise ValueError(f"lora_entries must be >= 1, got {lora_entries}")
        self.config = config
        self.lora_entries = lora_entries
        self.profiles: Mapping[str, Profile] = config.profiles
        self.index = PrefixIndex(chunks_per_pod=config.prefix.chunks_per_pod)
        self._table = table
        self._tracker = tracker
        self._clock = clock
        # Insertion order is recency order: a pair routed again is moved to the end.
        self._lora: dict[tuple[str, str], float] = {}
        self._seen_table: Any = None

    @property
    def lora_pairs(self) -> int:
        """(pod, adapter) pairs remembered now (at most ``lora_entries``)."""
        return len(self._lora)

    def hashes(self, body: Mapping[str, Any], name: str) -> tuple[int, ...]:
        """The chained chunk hashes of a request's prompt, for the model or adapter ``name``."""
        b = self.config.prefix
        text = prompt_prefix(body, b.chunk_chars * b.max_chunks)
        return chunk_hashes(text, model=name, chunk_chars=b.chunk_chars, max_chunks=b.max_chunks)

    def _follow_table(self) -> None:
        changed = self._table.changed()
        if changed is self._seen_table:
            return
        self._seen_table = changed
        urls = {e.url for e in self._table.endpoints()}
        self.index.retain(urls)
        self._lora = {k: t for k, t in self._lora.items() if k[0] in urls}

    def choose(
        self,
        profile_name: str,
        endpoints: Sequence[Endpoint],
        *,
        name: str,
        model: str,
        hashes: Sequence[int],
        rng: random.Random,
        prompt_chars: int = 0,
    ) -> tuple[Endpoint, int]:
        """The endpoint for a request for ``name`` (base model ``model``), and the
        characters of its ``prompt_chars`` that endpoint has to prefill (those past
        the prefix it was recently sent); records the choice."""
        profile = self.profiles[profile_name]
        self._follow_table()
        tracker = self._tracker
        if profile.uses_sidecars:
            tracker.want_queues()
        candidates = tracker.candidates(endpoints)
        matches = self.index.matches(hashes) if profile.uses_prefix and hashes else {}
        now = self._clock()
        window = self.config.lora_window
        adapter = name != model
        lora = self._lora
        kv = tracker.kv_cache
        chunk = self.config.prefix.chunk_chars
        signals = [
            Signals(prefix_chunks=(m := matches.get(e.url, 0)),
                    kv_cache=kv.get(e.url) if kv else None,
                    lora_active=adapter and now - lora.get((e.url, name), -1e18) <= window,
                    uncached=uncached(prompt_chars, m, chunk))
            for e in endpoints
        ]
        i = pick_scored(profile, candidates, signals, prefix_total=len(hashes), rng=rng,
                        prompt=prompt_chars)
        chosen = endpoints[i]
        if hashes:
            self.index.record(chosen.url, hashes)
        if adapter:
            key = (chosen.url, name)
            lora.pop(key, None)
            lora[key] = now
            while len(lora) > self.lora_entries:
                del lora[next(iter(lora))]
        return chosen, signals[i].uncached
