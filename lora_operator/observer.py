"""Shared ``GET /v1/adapters`` calls: one request per pod serves every adapter asking.

Each adapter's reconcile asks every pod of its base model what it holds; with
many adapters on one model, those questions arrive together. A caller joins
the request already in flight to the same pod when that request started late
enough for it (``not_before``): a reconcile's first look accepts any request
in flight, a confirmation after its own calls only one sent after them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from lora_operator.model import Loaded, PodInfo
from lora_operator.sidecar import Sidecars

_Key = tuple[str, str, str | None, int]


class Observer:
    def __init__(self, sidecars: Sidecars, *, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self._sidecars = sidecars
        self._clock = clock
        self._inflight: dict[_Key, tuple[float, asyncio.Task[tuple[Loaded, ...]]]] = {}

    def now(self) -> float:
        return self._clock()

    async def list(self, pod: PodInfo, *, token: str | None, not_before: float | None = None
                   ) -> tuple[Loaded, ...]:
        """What ``pod``'s sidecar holds, from a request sent at ``not_before`` or later.

        ``not_before=None`` accepts any request in flight. Raises what
        :meth:`Sidecars.list` raises.
        """
        key = (pod.namespace, pod.name, pod.ip, pod.port)
        current = self._inflight.get(key)
        if current is not None and (not_before is None or current[0] >= not_before):
            return await asyncio.shield(current[1])
        started = self._clock()
        task = asyncio.ensure_future(self._sidecars.list(pod, token=token))
        entry = (started, task)
        self._inflight[key] = entry

        def done(_: object) -> None:
            if self._inflight.get(key) is entry:
                del self._inflight[key]

        task.add_done_callback(done)
        return await asyncio.shield(task)

    async def aclose(self) -> None:
        tasks = [t for _, t in self._inflight.values()]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
