"""In-memory state shared by the handlers: the pods of base models, and wake-ups.

:class:`PodIndex` is fed by the pod watch (Kopf ``on.event``) and answers
"the pods of model M in namespace N" without an API call. :class:`Wakers`
holds one :class:`asyncio.Event` per LoraAdapter; a change to a pod of model
M sets the events of M's adapters so their loops re-reconcile at once. Events
only enqueue: the loop re-reads everything (level-triggered).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass

from lora_operator.model import PodInfo

Key = tuple[str, str]  # (namespace, name)


class PodIndex:
    def __init__(self) -> None:
        self._pods: dict[Key, PodInfo] = {}
        self._by_model: dict[Key, set[str]] = defaultdict(set)  # (namespace, model) -> names

    def upsert(self, pod: PodInfo) -> PodInfo | None:
        """Record ``pod``; return what was recorded before (None if it is new)."""
        key = (pod.namespace, pod.name)
        old = self._pods.get(key)
        if old is not None and old.model != pod.model:
            self._by_model[(old.namespace, old.model)].discard(old.name)
        self._pods[key] = pod
        self._by_model[(pod.namespace, pod.model)].add(pod.name)
        return old

    def remove(self, namespace: str, name: str) -> PodInfo | None:
        old = self._pods.pop((namespace, name), None)
        if old is not None:
            self._by_model[(old.namespace, old.model)].discard(old.name)
        return old

    def get(self, namespace: str, name: str) -> PodInfo | None:
        return self._pods.get((namespace, name))

    def of_model(self, namespace: str, model: str) -> list[PodInfo]:
        names = sorted(self._by_model.get((namespace, model), ()))
        return [self._pods[(namespace, n)] for n in names]


@dataclass
class _Waker:
    model: str
    event: asyncio.Event


class Wakers:
    def __init__(self) -> None:
        self._by_adapter: dict[Key, _Waker] = {}

    def register(self, namespace: str, name: str, model: str) -> asyncio.Event:
        """The adapter's event (kept across calls); ``model`` is updated on each call."""
        waker = self._by_adapter.get((namespace, name))
        if waker is None:
            waker = self._by_adapter[(namespace, name)] = _Waker(model, asyncio.Event())
        waker.model = model
        return waker.event

    def unregister(self, namespace: str, name: str) -> None:
        self._by_adapter.pop((namespace, name), None)

    def wake(self, namespace: str, name: str) -> None:
        waker = self._by_adapter.get((namespace, name))
        if waker is not None:
            waker.event.set()

    def wake_model(self, namespace: str, model: str) -> int:
        """Wake every adapter of ``model`` in ``namespace``; return how many."""
        n = 0
        for (ns, _), waker in self._by_adapter.items():
            if ns == namespace and waker.model == model:
                waker.event.set()
                n += 1
        return n
