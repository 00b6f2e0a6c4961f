"""The kubelet: one ``PodWorker`` per pod object, for as long as the pod exists.

localkube has a single node, so every pod is run here (whatever its
``spec.nodeName`` says; a pod without one is given ``localkube``). On stop,
every worker stops its processes (with a short grace) and the kubelet returns
only when all of them are gone; pod objects are left as they are, so a
restarted localkube with a persistent state directory runs them again.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Final

from localkube.node import processes
from localkube.node.client import JsonObj
from localkube.node.config import NODE_STOP_GRACE_SECONDS
from localkube.node.informer import Informer
from localkube.node.podworker import NodeContext, PodWorker

log = logging.getLogger(__name__)

SHUTDOWN_SLACK: Final = 5.0
"""Seconds beyond the stop grace before the kubelet stops waiting for a pod worker."""


class Kubelet:
    def __init__(self, ctx: NodeContext, pods: Informer) -> None:
        self._ctx = ctx
        self._workers: dict[str, PodWorker] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._accepting = True
        ctx.name_taken = self._name_taken
        pods.add_handler(self._on_pod)

    def _name_taken(self, namespace: str, name: str, uid: str) -> bool:
        return any(w.namespace == namespace and w.name == name and w.uid != uid
                   for w in self._workers.values())

    def _on_pod(self, kind: str, pod: JsonObj) -> None:
        uid = str((pod.get("metadata") or {}).get("uid", ""))
        if not uid:
            return
        worker = self._workers.get(uid)
        if kind == "DELETED":
            if worker is not None:
                worker.vanish()
            return
        if worker is not None:
            worker.update(pod)
            return
        if not self._accepting:
            return
        worker = PodWorker(self._ctx, pod)
        self._workers[uid] = worker
        task = asyncio.create_task(self._run_worker(uid, worker),
                                   name=f"pod {worker.namespace}/{worker.name}")
        self._tasks[uid] = task

    async def _run_worker(self, uid: str, worker: PodWorker) -> None:
        try:
            await worker.run()
        except Exception:
            log.exception("pod %s/%s: worker failed", worker.namespace, worker.name)
        finally:
            self._workers.pop(uid, None)
            self._tasks.pop(uid, None)

    def worker_count(self) -> int:
        return len(self._workers)

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stop every pod's processes and wait until they are gone."""
        self._accepting = False
        self._ctx.stopping.set()
        for worker in list(self._workers.values()):
            worker.terminate.set()
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=NODE_STOP_GRACE_SECONDS + SHUTDOWN_SLACK)
        if pending:
            # Should not happen; if a worker is stuck, its processes still must not outlive
            # localkube.
            log.error("%d pod workers did not stop; killing their processes", len(pending))
            for pgid in list(self._ctx.live_groups):
                processes.signal_group(pgid, signal.SIGKILL)
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=SHUTDOWN_SLACK)
