"""Which sequences run in the next step, and what a step produces: purely computational.

Like vLLM's scheduler, first come first served:

- at most ``max_num_seqs`` sequences run at once;
- a sequence holds KV cache for its prompt and its whole output from the step
  that admits it until it ends (so the sim never has to preempt); the head of
  the queue waits while it does not fit, and so does everything behind it;
- a running batch uses at most ``max_loras`` distinct adapters; a request for a
  further adapter is skipped (it keeps its place) until one is free.

With ``enable_prefix_caching`` the KV cache is counted in blocks of
``block_size`` tokens and indexed by the sequences' ``block_hashes``
(``prefix_cache``, vLLM's automatic prefix caching): a sequence's cached
prefix is shared with the sequences that hold it (counted once) and is not
prefilled again, so only its uncached prompt tokens take prefill time. Without
it (the default here; the sim turns it on as vLLM does) KV is counted in tokens
and nothing is shared.

With ``max_num_batched_tokens`` a step computes at most that many tokens
(vLLM V1's token budget, ``--max-num-batched-tokens``): the running sequences
that decode take one token each first, then a prompt still being prefilled,
then waiting sequences are admitted while budget is left. With
``enable_chunked_prefill`` (vLLM V1's default) a prompt that does not fit
whole is prefilled in chunks over several steps (each takes what the budget
has left) and gives its first token in the step that computes its last
chunk; without it a prompt that does not fit whole in what is left waits
for a later step, and so does everything behind it (vLLM's ``break``). A
prefix-cached prompt only needs its uncached tokens from the budget. With
``long_prefill_token_threshold`` (vLLM's ``--long-prefill-token-threshold``,
off by default) a prompt takes at most that many tokens in a step while any
other request runs or waits, so shorter prompts are admitted beside a long one.
Without a budget (``None``, the default here) every admitted prompt is
prefilled whole in the step that admits it.

``plan()`` picks the next step; the caller lets its duration pass and then
``commit()`` applies it (tokens produced, sequences finished). Nothing here
knows about time, asyncio or HTTP: the clock's readings are passed in.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass, field

from inference.sim.prefix_cache import DEFAULT_BLOCK_SIZE, Allocation, PrefixCache
from inference.sim.timing import TimingModel


class State(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"
    ABORTED = "aborted"


@dataclass(eq=False, slots=True, kw_only=True)
class Sequence:
    """One request in the engine. ``output_len`` is how many tokens it will produce.

    ``block_hashes``: the chained hashes of its full blocks of tokens
    (``prefix_cache.block_hashes``), those of its prompt first and, when its
    output's tokens are known, those of the blocks its output fills; only read
    with prefix caching on. ``cached_tokens`` is set when it is admitted: how
    many of its prompt tokens were found in the prefix cache.
    ``computed_tokens``: of its prompt, how many are in its KV so far (the
    cached ones from admission on, then each prefill chunk's).
    """

    id: int
    prompt_tokens: int
    output_len: int
    adapter: str | None = None
    arrival: float = 0.0
    block_hashes: tuple[int, ...] = ()
    cached_tokens: int = 0
    computed_tokens: int = 0
    state: State = State.WAITING
    generated: int = 0
    first_token_at: float | None = None
    finished_at: float | None = None

    @property
    def kv_tokens(self) -> int:
        """KV cache the sequence holds while it runs (prompt and whole output)."""
        return self.prompt_tokens + self.output_len

    @property
    def done(self) -> bool:
        return self.state in (State.FINISHED, State.ABORTED)

    @property
    def time_per_output_token(self) -> float | None:
        """Seconds per output token after the first, once finished (None before): the
        mean vLLM observes per request; 0 for a one-token answer, as vLLM's."""
        if self.finished_at is None or self.first_token_at is None:
            return None
        if self.generated <= 1:
            return 0.0
        return (self.finished_at - self.first_token_at) / (self.generated - 1)

    @property
    def prefilled(self) -> bool:
        """Its whole prompt is in its KV (it decodes from now on)."""
        return self.computed_tokens >= self.prompt_tokens


@dataclass(frozen=True, slots=True)
class Step:
    """One planned step: sequences prefilled in it, sequences decoding, its duration.

    ``chunks[i]`` is how many prompt tokens of ``prefill[i]`` this step computes;
    a sequence whose chunk ends its prompt gets its first token from the step.
    """

    prefill: tuple[Sequence, ...]
    decode: tuple[Sequence, ...]
    seconds: float
    chunks: tuple[int, ...]

    @property
    def prefill_tokens(self) -> int:
        """Prompt tokens computed in this step (cached prefixes are not)."""
        return sum(self.chunks)

    @property
    def tokens(self) -> int:
        """Tokens computed in this step: prefill chunks and one per decoding sequence."""
        return self.prefill_tokens + len(self.decode)


@dataclass(frozen=True, slots=True)
class StepResult:
    """What a committed step produced (aborted sequences are left out)."""

    advanced: tuple[Sequence, ...]   # each got one more token
    first_tokens: tuple[Sequence, ...]  # of those, the ones that got their first
    finished: tuple[Sequence, ...]
    prompt_tokens: int  # whole prompts, cached prefixes included (as vllm:prompt_tokens)
    generation_tokens: int


@dataclass(kw_only=True)
class Scheduler:
    max_num_seqs: int
    kv_cache_tokens: int
    max_loras: int
    timing: TimingModel
    enable_prefix_caching: bool = False
    block_size: int = DEFAULT_BLOCK_SIZE
    max_num_batched_tokens: int | None = None
    """Tokens a step computes at most (vLLM's token budget); None: no budget."""
    enable_chunked_prefill: bool = False
    """Split a prompt that does not fit the budget over several steps (needs a budget)."""
    long_prefill_token_threshold: int = 0
    """Prompt tokens one sequence takes in a step at most while others run or wait
    (vLLM's --long-prefill-token-threshold; needs chunked prefill); 0: no cap."""
    waiting: deque[Sequence] = field(default_factory=deque)
    running: list[Sequence] = field(default_factory=list)
    kv_used: int = 0  # KV tokens held (whole blocks with prefix caching)
    prefix_cache: PrefixCache | None = field(init=False, default=None)
    _allocs: dict[int, Allocation] = field(default_factory=dict)

    def __post_init__(self) -> None:
        budget = self.max_num_batched_tokens
        if budget is None and self.enable_chunked_prefill:
            raise ValueError("chunked prefill needs max_num_batched_tokens")
        if budget is not None and budget < self.max_num_seqs:
            # As vLLM: every running sequence can decode in every step.
            raise ValueError(f"max_num_batched_tokens ({budget}) must be at least "
                             f"max_num_seqs ({self.max_num_seqs})")
        threshold = self.long_prefill_token_threshold
        if threshold < 0 or (threshold and not self.enable_chunked_prefill):
            raise ValueError("long_prefill_token_threshold must be >= 0, and needs chunked "
                             "prefill when > 0")
        if self.enable_prefix_caching:
            self.prefix_cache = PrefixCache(num_blocks=self.kv_cache_tokens // self.block_size,
                                            block_size=self.block_size)

    def add(self, seq: Sequence) -> None:
        if seq.output_len < 1:
            raise ValueError("a sequence produces at least one token")
        cache = self.prefix_cache
        if cache is None:
            need, room = seq.kv_tokens, self.kv_cache_tokens
        else:
            need = cache.blocks_for(seq.kv_tokens) * cache.block_size
            room = cache.num_blocks * cache.block_size
        if need > room:
            raise ValueError(f"sequence needs {need} KV tokens, the cache holds {room}")
        budget = self.max_num_batched_tokens
        if budget is not None and not self.enable_chunked_prefill and seq.prompt_tokens > budget:
            raise ValueError(f"a prompt of {seq.prompt_tokens} tokens does not fit "
                             f"max_num_batched_tokens ({budget}) without chunked prefill")
        seq.state = State.WAITING
        self.waiting.append(seq)

    def abort(self, seq: Sequence) -> bool:
        """Drop a sequence (its client left); frees its slot and KV. False if already done."""
        if seq.state is State.WAITING:
            self.waiting.remove(seq)
        elif seq.state is State.RUNNING:
            self.running.remove(seq)
            self._release(seq)
        else:
            return False
        seq.state = State.ABORTED
        return True

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def kv_usage(self) -> float:
        """Fraction of the KV cache held by running sequences (0-1)."""
        if self.prefix_cache is not None:
            return self.prefix_cache.usage
        return self.kv_used / self.kv_cache_tokens

    def _hold(self, seq: Sequence, whole_within: float) -> bool:
        """Take the sequence's KV if it fits (looking its prefix up in the cache) and its
        uncached prompt is at most ``whole_within`` tokens (the budget left, without
        chunked prefill; infinite otherwise)."""
        cache = self.prefix_cache
        if cache is None:
            if (self.kv_used + seq.kv_tokens > self.kv_cache_tokens
                    or seq.prompt_tokens > whole_within):
                return False
            self.kv_used += seq.kv_tokens
            seq.cached_tokens = seq.computed_tokens = 0
            return True
        bs = cache.block_size
        hashes = seq.block_hashes[:seq.prompt_tokens // bs]
        # vLLM computes at least the prompt's last token (its logits are needed).
        max_hit = (seq.prompt_tokens - 1) // bs
        if seq.prompt_tokens - cache.hit_length(hashes[:max_hit]) * bs > whole_within:
            return False
        alloc = cache.allocate(hashes, blocks=cache.blocks_for(seq.kv_tokens),
                               max_hit_blocks=max_hit)
        if alloc is None:
            return False
        seq.cached_tokens = seq.computed_tokens = alloc.hit_blocks * bs
        cache.record(prompt_tokens=seq.prompt_tokens, hit_tokens=seq.cached_tokens)
        self._allocs[seq.id] = alloc
        self.kv_used = cache.used_blocks * bs
        return True

    def _release(self, seq: Sequence) -> None:
        cache = self.prefix_cache
        if cache is None:
            self.kv_used -= seq.kv_tokens
            return
        alloc = self._allocs.pop(seq.id)
        bs = cache.block_size
        # The KV it computed: its prompt and all its output but the last token.
        filled = (seq.prompt_tokens + max(seq.generated - 1, 0)) // bs
        cache.release(alloc, more_hashes=seq.block_hashes[seq.prompt_tokens // bs:filled])
        self.kv_used = cache.used_blocks * bs

    def running_adapters(self) -> list[str]:
        return sorted({s.adapter for s in self.running if s.adapter is not None})

    def waiting_adapters(self) -> list[str]:
        return sorted({s.adapter for s in self.waiting if s.adapter is not None})

    def _admit(self, budget: float, cap: float) -> list[tuple[Sequence, int]]:
        """Admit waiting sequences while ``budget`` tokens are left; the admitted, in order,
        each with its chunk for this step (at most ``cap`` tokens)."""
        adapters = {s.adapter for s in self.running if s.adapter is not None}
        skipped: list[Sequence] = []
        admitted: list[tuple[Sequence, int]] = []
        chunked = self.enable_chunked_prefill
        while self.waiting and len(self.running) < self.max_num_seqs and budget > 0:
            seq = self.waiting[0]
            if (seq.adapter is not None and seq.adapter not in adapters
                    and len(adapters) >= self.max_loras):
                skipped.append(self.waiting.popleft())
                continue
            if not self._hold(seq, math.inf if chunked else budget):
                break  # head of line waits for KV (or for budget), as in vLLM
            self.waiting.popleft()
            if seq.adapter is not None:
                adapters.add(seq.adapter)
            seq.state = State.RUNNING
            self.running.append(seq)
            n = int(min(seq.prompt_tokens - seq.computed_tokens, cap, budget))
            admitted.append((seq, n))
            budget -= n
        self.waiting.extendleft(reversed(skipped))
        return admitted

    def plan(self) -> Step | None:
        """Admit what fits and return the next step, or None when there is nothing to run.

        The budget goes to the decoding sequences first (one token each), then to
        prompts already being prefilled, in the order they were admitted, then to
        newly admitted ones. With ``long_prefill_token_threshold`` no prompt takes
        more than that in a step while another request runs or waits (vLLM's).
        """
        budget: float = (math.inf if self.max_num_batched_tokens is None
                         else self.max_num_batched_tokens)
        threshold = self.long_prefill_token_threshold
        cap: float = (threshold if threshold > 0 and len(self.running) + len(self.waiting) > 1
                      else math.inf)
        decode = tuple(s for s in self.running if s.prefilled)
        budget -= len(decode)
        prefill: list[Sequence] = []
        chunks: list[int] = []
        for seq in self.running:
            if budget <= 0:
                break
            if not seq.prefilled:
                n = int(min(seq.prompt_tokens - seq.computed_tokens, cap, budget))
                prefill.append(seq)
                chunks.append(n)
                budget -= n
        for seq, n in self._admit(budget, cap):
            prefill.append(seq)
            chunks.append(n)
        if not self.running:
            return None
        seconds = self.timing.step_seconds(prefill_tokens=sum(chunks),
                                           batch=len(decode) + len(prefill))
        return Step(prefill=tuple(prefill), decode=decode, seconds=seconds, chunks=tuple(chunks))

    def commit(self, step: Step, now: float) -> StepResult:
        """Apply a planned step at time ``now``: its prefill chunks, and one token per live
        sequence of it whose prompt is then whole."""
        advanced: list[Sequence] = []
        first: list[Sequence] = []
        finished: list[Sequence] = []
        prompt_tokens = 0
        for seq, chunk in zip(step.prefill, step.chunks, strict=True):
            if seq.state is State.RUNNING:
                seq.computed_tokens += chunk
        for seq in (*step.prefill, *step.decode):
            if seq.state is not State.RUNNING or not seq.prefilled:
                continue  # aborted while the step ran, or a chunk short of its prompt's end
            if seq.generated == 0:
                prompt_tokens += seq.prompt_tokens
            seq.generated += 1
            advanced.append(seq)
            if seq.first_token_at is None:
                seq.first_token_at = now
                first.append(seq)
            if seq.generated >= seq.output_len:
                seq.state = State.FINISHED
                seq.finished_at = now
                finished.append(seq)
        if finished:
            done = {s.id for s in finished}
            self.running = [s for s in self.running if s.id not in done]
            for s in finished:
                self._release(s)
        return StepResult(
            advanced=tuple(advanced), first_tokens=tuple(first), finished=tuple(finished),
            prompt_tokens=prompt_tokens, generation_tokens=len(advanced),
        )
