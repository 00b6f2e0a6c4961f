"""The lab's gateway routing: the gateway's own pure code, fed with trace blocks instead of text.

``--routing`` names one of the picker's strategies (``gateway.picker.pick``)
or a profile of the gateway's routing config (``gateway.routing_config``):
the built-in ``least-prefill`` (the prefill scorer), ``fleet-prefill`` (the
same, charging lost cache hits once every pod has a backlog) and ``prefix-cache``
(prefix and in-flight scorers behind the load filter, ``gateway.scoring``) or
one of ``--routing-config FILE``, the gateway's
own file format. Its default is the gateway's own default (``DEFAULT_ROUTING``,
read from ``gateway.settings``), so a backtest routes as a gateway left as it
is does. For a profile the lab
keeps a ``gateway.prefix_index.PrefixIndex`` as the gateway does, but where
the gateway hashes chunks of a prompt's text, the lab hashes the request's
block chain: a trace's block ids (Mooncake's ``hash_ids``) chained as the sim
engine chains its blocks (``inference.sim.prefix_cache.chain_keys``), one
chunk per block. Requests with no blocks (Azure, synthetic traces) hash to
nothing: every pod misses and the profile routes by load alone.

The index's bound is the config's in tokens: by default 8,192 chunks of 256
characters, about 4 characters a token, is 524,288 tokens per pod, so
1,024 blocks of Mooncake's 512 tokens. ``max-chunks`` caps the blocks hashed.

Each pod's ``Candidate.prefill`` (the ``prefill`` scorer's backlog) is what
the gateway keeps: the estimated uncached tokens of the requests routed there
that have not yet given their first token (the gateway counts characters until
the answer's first byte; a stream's first byte is its first token).

Differences from the gateway, said plainly: the lab's queue, running and
KV-cache signals are the engine's exact values at that instant (the gateway
polls the sidecars every few hundred milliseconds, so its are older), and no
request carries an adapter (the LoRA scorer never fires).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Final

from gateway.picker import STRATEGIES, Candidate, pick
from gateway.prefix_index import PrefixIndex
from gateway.routing_config import RoutingConfig
from gateway.scoring import Signals, pick_scored, uncached
from gateway.settings import DEFAULT_ROUTING

__all__ = ["CHARS_PER_TOKEN", "DEFAULT_ROUTING", "Router", "routings"]

CHARS_PER_TOKEN: Final = 4


def routings(config: RoutingConfig | None = None) -> tuple[str, ...]:
    """What ``--routing`` may name: the picker's strategies and the config's profiles."""
    return tuple(sorted(STRATEGIES | set((config or RoutingConfig()).profiles)))


class Router:
    """Chooses the pod for each request, as the gateway would with ``routing``."""

    def __init__(self, routing: str, *, block_tokens: int, rng: random.Random,
                 config: RoutingConfig | None = None) -> None:
        config = config or RoutingConfig()
        known = routings(config)
        if routing not in known:
            raise ValueError(f"unknown routing strategy {routing!r} (known: {', '.join(known)})")
        if block_tokens < 0:
            raise ValueError(f"block_tokens must be >= 0, got {block_tokens}")
        self.routing = routing
        self.rng = rng
        self.turn = 0
        self.profile = config.profiles.get(routing) if routing not in STRATEGIES else None
        bounds = config.prefix
        self.max_chunks = bounds.max_chunks
        per_pod = bounds.chunks_per_pod
        if block_tokens:
            per_pod = max(1, per_pod * bounds.chunk_chars // (CHARS_PER_TOKEN * block_tokens))
        self.index = PrefixIndex(chunks_per_pod=per_pod)
        self.block_tokens = block_tokens

    @property
    def uses_prefix(self) -> bool:
        return self.profile is not None and self.profile.uses_prefix

    def choose(self, candidates: Sequence[Candidate], *, prefix: str, hashes: Sequence[int],
               kv_cache: Sequence[float], prompt_tokens: int = 0) -> tuple[int, int]:
        """The index in ``candidates`` of the pod that takes the request, and the tokens of
        its ``prompt_tokens`` that pod has to prefill as the router estimates them (those
        past the blocks it was recently sent), as the gateway's ``ProfileRouter.choose``.

        ``hashes``: the chained hashes of the request's full prompt blocks;
        ``kv_cache``: each candidate's KV-cache usage ratio. Records the choice.
        """
        profile = self.profile
        turn = self.turn
        self.turn += 1
        if profile is None:
            i = pick(self.routing, candidates, rng=self.rng, turn=turn, prefix=prefix)
            return i, prompt_tokens
        if len(kv_cache) != len(candidates):
            raise ValueError("one KV-cache usage per candidate")
        chunks = hashes[:self.max_chunks] if profile.uses_prefix else ()
        matches = self.index.matches(chunks) if chunks else {}
        signals = [Signals(prefix_chunks=(m := matches.get(c.key, 0)), kv_cache=kv,
                           uncached=uncached(prompt_tokens, m, self.block_tokens))
                   for c, kv in zip(candidates, kv_cache, strict=True)]
        i = pick_scored(profile, candidates, signals, prefix_total=len(chunks), rng=self.rng,
                        prompt=prompt_tokens)
        if chunks:
            self.index.record(candidates[i].key, chunks)
        return i, signals[i].uncached

    def forget(self, pod: str) -> None:
        """``pod`` is gone: the index keeps nothing of it (the gateway's ``retain``)."""
        self.index.forget(pod)
