"""The most SLO attainment any fleet can reach on a trace, under a profile: purely computational.

A request's best case is to arrive at a ready pod with nothing else to do
whose prefix cache already holds every prompt block that any earlier request
of the trace filled: no queue, no batch to share a step with, the longest
cached prefix the trace allows. No number of replicas, routing or
autoscaling gives it a shorter time to first token in the lab, so the share
of requests that meet the SLO in that best case bounds every policy's
attainment from above (``lab.summary.met``'s rule: failures count as misses).

Each best case is computed with the lab's own engine (``lab.engine.pod_scheduler``,
the sim's scheduler and timing): a pod is primed with the cached prefix (a
request of exactly those blocks, run to its end), then the request is added
at an idle moment and stepped to its first token. A request longer than a
pod takes (``lab.engine.max_request_tokens``) fails in every run. With a TPOT
target, a request alone decodes one token per step of a batch of one; a
one-token answer has no TPOT, as in the runs.

What it leaves out, so the bound stays an upper bound: cold starts, queues,
evictions (a pod's cache is never short of room here) and the gateway's hold.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from inference.sim.prefix_cache import chain_keys
from inference.sim.scheduler import Scheduler, Sequence
from lab.engine import max_request_tokens, pod_scheduler, prompt_hashes, trace_block_size
from lab.profiles import Profile
from lab.summary import Slo
from lab.traces import Request, Trace

__all__ = ["Ceiling", "best_ttft", "best_ttfts", "slo_ceiling", "trace_best_ttfts"]


@dataclass(frozen=True, slots=True)
class Ceiling:
    """The best case over a trace: how many requests can meet the SLO and why the rest cannot."""

    requests: int
    attainable: int
    """Requests that meet the SLO alone on an idle pod with every earlier prefix cached."""
    too_long: int
    """Requests longer than a pod takes: they fail (400) on any fleet."""
    slow_alone: int
    """Requests that miss the TTFT target (or TPOT) even in their best case."""

    @property
    def attainment(self) -> float:
        return self.attainable / self.requests if self.requests else 0.0

    def to_json(self) -> dict[str, float | int]:
        return {"requests": self.requests, "attainable": self.attainable,
                "too_long": self.too_long, "slow_alone": self.slow_alone,
                "attainment": self.attainment}


def _run_until(sched: Scheduler, seq: Sequence, *, first_token: bool) -> float:
    """Step ``sched`` until ``seq`` has its first token (or has ended); the seconds it took."""
    now = 0.0
    while (seq.first_token_at is None) if first_token else not seq.done:
        step = sched.plan()
        if step is None:
            raise RuntimeError(f"request {seq.id} was not admitted by an idle pod")
        now += step.seconds
        sched.commit(step, now)
    return now


def best_ttft(profile: Profile, block_size: int, *, prompt_tokens: int,
              cached_blocks: int) -> float:
    """Seconds to the first token of a ``prompt_tokens`` prompt on an idle pod that holds its
    first ``cached_blocks`` blocks (of ``block_size`` tokens) in its prefix cache."""
    if not 0 <= cached_blocks * block_size <= prompt_tokens:
        raise ValueError(f"{cached_blocks} cached blocks of {block_size} do not fit a prompt of "
                         f"{prompt_tokens} tokens")
    sched = pod_scheduler(profile, block_size)
    keys = tuple(range(prompt_tokens // block_size))  # any ids: only the sharing matters
    hashes = chain_keys(keys)
    if cached_blocks:
        prime = Sequence(id=-1, prompt_tokens=cached_blocks * block_size, output_len=1,
                         block_hashes=hashes[:cached_blocks])
        sched.add(prime)
        _run_until(sched, prime, first_token=False)
    seq = Sequence(id=0, prompt_tokens=prompt_tokens, output_len=1, block_hashes=hashes)
    sched.add(seq)
    return _run_until(sched, seq, first_token=True)


def best_ttfts(prompts: Iterable[tuple[int, tuple[int, ...]]], profile: Profile,
               block_size: int) -> list[float]:
    """The best case of each prompt, given as (prompt tokens, chained hashes of its full
    blocks) in arrival order: ``best_ttft`` with the longest prefix that any earlier prompt
    filled cached."""
    seen: set[int] = set()
    memo: dict[tuple[int, int], float] = {}
    out = []
    for tokens, hashes in prompts:
        cached = 0
        while cached < len(hashes) and hashes[cached] in seen:
            cached += 1
        seen.update(hashes)
        if (tokens, cached) not in memo:
            memo[tokens, cached] = best_ttft(profile, block_size, prompt_tokens=tokens,
                                             cached_blocks=cached)
        out.append(memo[tokens, cached])
    return out


def trace_best_ttfts(trace: Trace, profile: Profile) -> list[tuple[Request, float]]:
    """Each request of ``trace`` that fits a pod, with its best time to first token, in
    arrival order. A request too long for a pod fails in every run and fills no cache."""
    size = trace_block_size(trace)
    longest = max_request_tokens(profile, size)
    fitting = [r for r in trace.requests if r.prompt_tokens + r.output_tokens <= longest]
    ttfts = best_ttfts(((r.prompt_tokens, prompt_hashes(r, size)) for r in fitting), profile,
                       size)
    return list(zip(fitting, ttfts, strict=True))


def slo_ceiling(trace: Trace, profile: Profile, slo: Slo) -> Ceiling:
    """The best case of every request of ``trace`` (``trace_best_ttfts``), against ``slo``."""
    best = trace_best_ttfts(trace, profile)
    tpot_alone = profile.timing.decode_seconds(1)
    attainable = sum(ttft <= slo.ttft and (slo.tpot is None or r.output_tokens <= 1
                                           or tpot_alone <= slo.tpot)
                     for r, ttft in best)
    return Ceiling(requests=len(trace.requests), attainable=attainable,
                   too_long=len(trace.requests) - len(best),
                   slow_alone=len(best) - attainable)
