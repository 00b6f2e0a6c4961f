"""The Kopf handlers: they only gather events and hand over to the reconciler.

- Pods labelled ``brix.dev/model`` feed the :class:`~lora_operator.state.PodIndex`;
  a change that matters (IP, readiness, labels, port, gone) wakes the adapters
  of that pod's model.
- One daemon per LoraAdapter runs the level-triggered loop: reconcile, then
  wait for a wake-up or the delay the reconcile asked for.
- create/update/resume only wake the daemon (the loop re-reads everything).
- The deletion handler (Kopf's finalizer) unloads everywhere, retrying with
  backoff up to ``delete_timeout``.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Mapping
from typing import Any, cast

import kopf

from brix.contract import LORA_GROUP, LORA_PLURAL, LORA_VERSION, MODEL_LABEL
from lora_operator.model import PodInfo
from lora_operator.reconciler import Context, RetryLater, finalize, reconcile

logger = logging.getLogger(__name__)

FINALIZER = "brix.dev/lora-operator"


class KopfEvents:
    """Events through Kopf's poster (it batches and retries them)."""

    def info(self, body: Mapping[str, Any], *, reason: str, message: str) -> None:
        kopf.info(cast(kopf.Body, body), reason=reason, message=message)

    def warn(self, body: Mapping[str, Any], *, reason: str, message: str) -> None:
        kopf.warn(cast(kopf.Body, body), reason=reason, message=message)


async def _wait(event: asyncio.Event, stopped: Any, delay: float) -> None:
    """Until ``event`` is set, the daemon is stopped, or ``delay`` seconds pass."""
    waiters = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(stopped.wait())}
    try:
        await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


def register(registry: kopf.OperatorRegistry, ctx: Context) -> None:
    """Register the handlers on ``registry``, bound to ``ctx``."""
    lora = (LORA_GROUP, LORA_VERSION, LORA_PLURAL)

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """--kubeconfig (set as $KUBECONFIG), else in-cluster, else $KUBECONFIG/~/.kube/config."""
        if ctx.settings.kubeconfig:
            return kopf.login_with_kubeconfig(**kwargs)
        return kopf.login_via_client(**kwargs)

    @kopf.on.event("", "v1", "pods", id="pod-index", labels={MODEL_LABEL: kopf.PRESENT},
                   registry=registry)
    async def pod_changed(*, event: Mapping[str, Any], body: kopf.Body, **_: Any) -> None:
        pod = PodInfo.from_body(body)
        if event.get("type") == "DELETED":
            old = ctx.pods.remove(pod.namespace, pod.name)
            changed = old is not None
            await ctx.sidecars.forget(pod)
        else:
            old = ctx.pods.upsert(pod)
            changed = old != pod
        if changed:
            ctx.wakers.wake_model(pod.namespace, pod.model)
            if old is not None and old.model != pod.model:
                ctx.wakers.wake_model(old.namespace, old.model)

    # Stopping (deletion, operator exit): the flag first, and only after 5 s of
    # not exiting (a long sidecar call) a cancellation, 10 s more at most.
    @kopf.daemon(*lora, id="keep-loaded", registry=registry, cancellation_backoff=5.0,
                 cancellation_timeout=10.0, initial_delay=0.0)
    async def keep_loaded(*, body: kopf.Body, namespace: str | None, name: str,
                          stopped: Any, **_: Any) -> None:
        namespace = namespace or "default"
        event = ctx.wakers.register(namespace, name, str(body.spec.get("baseModel", "")))
        try:
            await _keep_loaded(body=body, namespace=namespace, name=name, stopped=stopped,
                               event=event)
        finally:
            # Paused (peering) or deleted: this replica no longer reports the adapter,
            # and another one may write its status meanwhile.
            ctx.reports.pop((namespace, name), None)
            ctx.written.pop((namespace, name), None)

    async def _keep_loaded(*, body: kopf.Body, namespace: str, name: str, stopped: Any,
                           event: asyncio.Event) -> None:
        while not stopped:
            event.clear()
            async with ctx.lock(namespace, name):
                if body.metadata.get("deletionTimestamp") or stopped:
                    return
                try:
                    delay = await reconcile(ctx, body)
                except Exception:  # a bug or an API outage: log it, retry with backoff
                    logger.exception("%s/%s: reconcile failed", namespace, name)
                    key = (namespace, name)
                    attempts = ctx.failed_attempts[key] = ctx.failed_attempts.get(key, 0) + 1
                    delay = ctx.backoff(attempts)
            await _wait(event, stopped, delay)

    @kopf.on.create(*lora, id="wake-on-create", registry=registry)
    @kopf.on.update(*lora, id="wake-on-update", field="spec", registry=registry)
    @kopf.on.resume(*lora, id="wake-on-resume", registry=registry)
    async def spec_changed(*, namespace: str | None, name: str, meta: kopf.Meta,
                           **_: Any) -> None:
        key = (namespace or "default", name)
        if ctx.seen_generation.get(key) != meta.get("generation"):
            ctx.wakers.wake(*key)

    @kopf.on.delete(*lora, id="unload-everywhere", registry=registry)
    async def unload_everywhere(*, body: kopf.Body, namespace: str | None, name: str,
                                runtime: datetime.timedelta, retry: int, **_: Any) -> None:
        async with ctx.lock(namespace or "default", name):
            try:
                await finalize(ctx, body, runtime=runtime.total_seconds(), retry=retry)
            except RetryLater as exc:
                raise kopf.TemporaryError(str(exc), delay=exc.delay) from None

    @kopf.on.cleanup(registry=registry)
    async def close_clients(**_: Any) -> None:
        await ctx.sidecars.aclose()
