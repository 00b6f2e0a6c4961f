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

``plan()`` picks the next step; the caller lets its duration pass and then
``commit()`` applies it (tokens produced, sequences finished). Nothing here
knows about time, asyncio or HTTP: the clock's readings are passed in.
"""

from __future__ import annotations

import enum
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
    """

    id: int
    prompt_tokens: int
    output_len: int
    adapter: str | None = None
    arrival: float = 0.0
    block_hashes: tuple[int, ...] = ()
    cached_tokens: int = 0
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


@dataclass(frozen=True, slots=True)
class Step:
    """One planned step: sequences prefilled in it, sequences decoding, its duration."""

    prefill: tuple[Sequence, ...]
    decode: tuple[Sequence, ...]
    seconds: float

    @property
    def prefill_tokens(self) -> int:
        """Prompt tokens computed in this step (cached prefixes are not)."""
        return sum(s.prompt_tokens - s.cached_tokens for s in self.prefill)


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
    waiting: deque[Sequence] = field(default_factory=deque)
    running: list[Sequence] = field(default_factory=list)
    kv_used: int = 0  # KV tokens held (whole blocks with prefix caching)
    prefix_cache: PrefixCache | None = field(init=False, default=None)
    _new: set[int] = field(default_factory=set)  # admitted, not yet prefilled
    _allocs: dict[int, Allocation] = field(default_factory=dict)

    def __post_init__(self) -> None:
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
        seq.state = State.WAITING
        self.waiting.append(seq)

    def abort(self, seq: Sequence) -> bool:
        """Drop a sequence (its client left); frees its slot and KV. False if already done."""
        if seq.state is State.WAITING:
            self.waiting.remove(seq)
        elif seq.state is State.RUNNING:
            self.running.remove(seq)
            self._release(seq)
            self._new.discard(seq.id)
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

    def _hold(self, seq: Sequence) -> bool:
        """Take the sequence's KV if it fits (looking its prefix up in the cache)."""
        cache = self.prefix_cache
        if cache is None:
            if self.kv_used + seq.kv_tokens > self.kv_cache_tokens:
                return False
            self.kv_used += seq.kv_tokens
            return True
        bs = cache.block_size
        alloc = cache.allocate(
            seq.block_hashes[:seq.prompt_tokens // bs], blocks=cache.blocks_for(seq.kv_tokens),
            # vLLM computes at least the prompt's last token (its logits are needed).
            max_hit_blocks=(seq.prompt_tokens - 1) // bs,
        )
        if alloc is None:
            return False
        seq.cached_tokens = alloc.hit_blocks * bs
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

    def _admit(self) -> None:
        adapters = {s.adapter for s in self.running if s.adapter is not None}
        skipped: list[Sequence] = []
        while self.waiting and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            if (seq.adapter is not None and seq.adapter not in adapters
                    and len(adapters) >= self.max_loras):
                skipped.append(self.waiting.popleft())
                continue
            if not self._hold(seq):
                break  # head of line waits for KV, as in vLLM
            self.waiting.popleft()
            if seq.adapter is not None:
                adapters.add(seq.adapter)
            seq.state = State.RUNNING
            self.running.append(seq)
            self._new.add(seq.id)
        self.waiting.extendleft(reversed(skipped))

    def plan(self) -> Step | None:
        """Admit what fits and return the next step, or None when there is nothing to run."""
        self._admit()
        if not self.running:
            return None
        prefill = tuple(s for s in self.running if s.id in self._new)
        decode = tuple(s for s in self.running if s.id not in self._new)
        seconds = self.timing.step_seconds(
            prefill_tokens=sum(s.prompt_tokens - s.cached_tokens for s in prefill),
            batch=len(self.running),
        )
        return Step(prefill=prefill, decode=decode, seconds=seconds)

    def commit(self, step: Step, now: float) -> StepResult:
        """Apply a planned step at time ``now``: one token per live sequence of it."""
        advanced: list[Sequence] = []
        first: list[Sequence] = []
        finished: list[Sequence] = []
        prompt_tokens = 0
        for seq in (*step.prefill, *step.decode):
            if seq.state is not State.RUNNING:
                continue  # aborted while the step ran
            if seq.id in self._new:
                self._new.discard(seq.id)
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
