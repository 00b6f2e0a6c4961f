"""``python -m lora_operator``: run the operator (Kopf underneath).

Serves ``/metrics`` and ``/healthz`` on ``--port`` and Kopf's liveness
endpoint on ``--liveness-port``; prints ``lora_operator listening on
http://host:port`` (the metrics port) once Kopf has started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Sequence

import httpx
import kopf

from brix.config import describe
from brix.serving import bind_host, configure_logging, connect_host, print_ready
from lora_operator import metrics
from lora_operator.handlers import FINALIZER, KopfEvents, register
from lora_operator.kube import Kube, api_client
from lora_operator.observer import Observer
from lora_operator.reconciler import Context
from lora_operator.settings import Settings, load
from lora_operator.sidecar import Sidecars
from lora_operator.state import PodIndex, Wakers
from lora_operator.tokens import Tokens

logger = logging.getLogger("lora_operator")

NAME = "lora_operator"
STORAGE_PREFIX = "lora-operator.brix.dev"


def peering_priority(settings: Settings) -> int:
    """The given priority, else a random one: replicas of one Deployment must differ.

    Kopf freezes every operator when the highest priority is shared; with
    distinct priorities the highest replica works, the others stand by and the
    next takes over once the active one's peering record goes (at once on a
    clean exit, after the record's lifetime on a crash).
    """
    if settings.priority is not None:
        return settings.priority
    return secrets.randbelow(1_000_000) + 1


def kopf_settings(settings: Settings) -> kopf.OperatorSettings:
    """Kopf's settings from ours: our finalizer and annotations, peering, Events."""
    op = kopf.OperatorSettings()
    op.persistence.finalizer = FINALIZER
    op.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=STORAGE_PREFIX)
    op.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=STORAGE_PREFIX, key="last-handled-configuration")
    op.posting.reporting_component = "brix-lora-operator"
    op.posting.event_name_prefix = "brix-lora-operator-"
    op.posting.reporting_instance = os.environ.get("POD_NAME") or socket.gethostname()
    # A stopping daemon (its adapter being deleted) usually exits within a few
    # awaits; give it half a second before Kopf falls back to polling, which
    # would delay the deletion handler by patches and re-checks.
    op.background.instant_exit_timeout = 0.5
    op.peering.name = settings.peering
    op.peering.mandatory = settings.peering_mandatory
    op.peering.standalone = settings.standalone
    op.peering.priority = peering_priority(settings)
    if not settings.standalone:
        logger.info("peering %r with priority %d", settings.peering, op.peering.priority)
    return op


def build_context(settings: Settings) -> Context:
    kube = Kube(api_client(settings.kubeconfig))
    sidecars = Sidecars(timeout=settings.sidecar_timeout, load_timeout=settings.load_timeout,
                        max_concurrent=settings.max_concurrent_calls)
    return Context(
        settings=settings,
        pods=PodIndex(),
        wakers=Wakers(),
        sidecars=sidecars,
        observer=Observer(sidecars),
        tokens=Tokens(explicit=settings.sidecar_token, secret_name=settings.sidecar_token_secret,
                      secret_key=settings.sidecar_token_key, reader=kube.read_secret),
        status=kube,
        events=KopfEvents(),
    )


async def _wait_liveness(url: str) -> None:
    """Until Kopf's liveness endpoint answers (it starts with the operator's tasks)."""
    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code < 500:
                    return
            await asyncio.sleep(0.1)


async def _announce(ready: asyncio.Event, *, host: str, port: int, liveness: str | None) -> None:
    """The ready line, once Kopf has started and its liveness endpoint answers."""
    await ready.wait()
    if liveness:
        await _wait_liveness(liveness)
    print_ready(NAME, "http", host, port)


async def run(settings: Settings) -> None:
    ctx = build_context(settings)
    if not settings.standalone:
        problem = await Kube(api_client(settings.kubeconfig)).ensure_peering(
            settings.peering, settings.namespaces)
        if problem:
            logger.warning("%s", problem)
    registry = kopf.OperatorRegistry()
    register(registry, ctx)
    host = bind_host()
    runner, port = await metrics.start(
        metrics.make_app(metrics.registry_for(ctx.reports)), host=host, port=settings.port)
    ready = asyncio.Event()
    # Kopf binds its liveness endpoint to the host of this URL (the pod's address).
    liveness = f"http://{host}:{settings.liveness_port}/healthz" if settings.liveness_port else None
    probe = (f"http://{connect_host(host)}:{settings.liveness_port}/healthz"
             if settings.liveness_port else None)
    announcer = asyncio.create_task(_announce(ready, host=host, port=port, liveness=probe))
    try:
        await kopf.operator(
            registry=registry,
            settings=kopf_settings(settings),
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            liveness_endpoint=liveness,
            ready_flag=ready,
        )
    finally:
        announcer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await announcer
        await ctx.observer.aclose()
        await ctx.sidecars.aclose()
        await runner.cleanup()


def _check_connection(settings: Settings) -> None:
    """Fail at once, in one line, when there is no usable Kubernetes configuration."""
    if settings.kubeconfig and not os.path.isfile(settings.kubeconfig):
        raise SystemExit(f"{NAME}: --kubeconfig {settings.kubeconfig}: no such file")
    try:
        api_client(settings.kubeconfig)
    except Exception as exc:  # the client's ConfigException, or a bad YAML file
        raise SystemExit(f"{NAME}: no usable Kubernetes configuration (--kubeconfig, "
                         f"$KUBECONFIG, in-cluster): {exc}") from None


def main(argv: Sequence[str] | None = None) -> None:
    settings = load(argv)
    _check_connection(settings)
    configure_logging(settings.log_level)
    # A line per sidecar call, probe, or handled pod event is noise at INFO; the
    # operator logs one line per reconcile that changed something instead.
    for noisy in ("httpx", "aiohttp.access", "kopf.objects"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(
            settings.log_level)))
    if settings.kubeconfig:
        # Kopf's own login reads $KUBECONFIG; the flag wins over the environment.
        os.environ["KUBECONFIG"] = settings.kubeconfig
    logger.info("starting with %s", describe(settings))
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
