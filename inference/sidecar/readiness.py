"""Readiness: the engine has answered a real completion, and still answers.

vLLM's /health answers before the engine can serve, so the first check (and the
first after any failed check) is a real one-token completion. Once that came
back, a check is the engine's model list: a completion would wait behind a full
batch, past the kubelet's probe timeout (1 s by default), and take a busy pod
out of routing and out of Prometheus' scrape exactly when it is needed most. An
engine that stops answering fails the model list, and the next check after it
asks for a completion again.

The answer is reused for ``ttl`` seconds, and concurrent probes share one check,
so frequent kubelet probes put at most one request per ``ttl`` on the engine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from .engine_client import EngineClient, EngineError


@dataclass(frozen=True, slots=True)
class ReadyState:
    ready: bool
    detail: str
    checked_at: float


class Readiness:
    """``clock`` is a test seam (monotonic seconds)."""

    def __init__(
        self, engine: EngineClient, *, ttl: float, timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._ttl = ttl
        self._timeout = timeout
        self._clock = clock
        self._last: ReadyState | None = None
        self._served = False  # a completion came back since the last failed check
        self._lock = asyncio.Lock()

    def _fresh(self) -> ReadyState | None:
        last = self._last
        if last is not None and self._clock() - last.checked_at < self._ttl:
            return last
        return None

    async def check(self) -> ReadyState:
        state = self._fresh()
        if state is not None:
            return state
        async with self._lock:
            state = self._fresh()
            if state is None:
                state = await self._probe()
                self._last = state
            return state

    async def _probe(self) -> ReadyState:
        try:
            models = await self._engine.models(timeout_s=self._timeout)
            base = next((m.id for m in models if not m.is_adapter), None)
            if base is None:
                self._served = False
                return ReadyState(False, "the engine serves no base model", self._clock())
            if not self._served:
                await self._engine.complete_one_token(base)
        except EngineError as exc:
            self._served = False
            return ReadyState(False, f"the engine cannot serve yet: {exc}", self._clock())
        self._served = True
        return ReadyState(True, f"the engine completes requests for {base}", self._clock())
