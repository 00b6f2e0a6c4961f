"""``python -m gateway``: the brix gateway (see gateway/app.py for what it serves)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Sequence

from fastapi import FastAPI

from brix.config import build_parser, describe, load_settings
from brix.serving import configure_logging, serve
from gateway.app import GatewayApp, create_app, load_api_keys
from gateway.load import LoadTracker, SidecarPoller
from gateway.picker import STRATEGIES
from gateway.routing_config import RoutingConfig, RoutingConfigError, load_routing_config
from gateway.server import gateway_protocol
from gateway.settings import GatewaySettings
from gateway.static import ConfigError, parse_services, parse_static_routes
from gateway.table import RoutingTable
from gateway.workers import WorkerLink, WorkerSpec, supervise

log = logging.getLogger("gateway")

PROG = "python -m gateway"


def configure(settings: GatewaySettings) -> tuple[RoutingTable, RoutingConfig, bool]:
    """The table of configured routes, the routing config, and whether to watch Kubernetes."""
    static = parse_static_routes(settings.static_routes)
    for model, endpoints in parse_services(settings.services).items():
        static.setdefault(model, []).extend(endpoints)
    try:
        routing = load_routing_config(settings.routing_config)
    except RoutingConfigError as exc:
        raise RoutingConfigError(f"--routing-config {settings.routing_config}: {exc}") from exc
    if settings.routing not in STRATEGIES and settings.routing not in routing.profiles:
        known = ", ".join(sorted(STRATEGIES | routing.profiles.keys()))
        raise RoutingConfigError(f"--routing: unknown strategy or profile "
                                 f"{settings.routing!r} (known: {known})")
    table = RoutingTable(static=static, hold_models=settings.hold_models)
    watch = settings.discovery == "kubernetes"
    if settings.discovery == "auto":
        from gateway.discovery import kubernetes_configured

        watch = kubernetes_configured(settings.kubeconfig)
        if not watch:
            log.info("no Kubernetes configuration found: serving the configured routes only")
    return table, routing, watch


def build(settings: GatewaySettings, *, worker: WorkerLink | None = None) -> FastAPI:
    """The app with its table, discovery and poller wired as the settings say.

    A worker of ``--workers N`` (``worker``) runs neither discovery nor the
    poller: its table, queues and shared counts come from its supervisor.
    """
    table, routing, watch = configure(settings)
    if worker is not None:
        return create_app(settings, table=table, tracker=worker.tracker,
                          lifespan=worker.lifespan(table), routing=routing)
    tracker = LoadTracker()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        discovery = None
        if watch:
            from gateway.discovery import Discovery, api_client

            discovery = Discovery(table, asyncio.get_running_loop(),
                                  api_client(settings.kubeconfig),
                                  namespaces=settings.namespaces)
            discovery.start()
            app.state.discovery = discovery
        poller = SidecarPoller(tracker, table.endpoints, interval=settings.sidecar_poll_interval,
                               client=app.state.proxy.client,
                               idle_after=settings.sidecar_poll_idle or None)
        poll_task = asyncio.create_task(poller.run(), name="sidecar-poller")
        try:
            yield
        finally:
            poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poll_task
            if discovery is not None:
                discovery.stop()

    return create_app(settings, table=table, tracker=tracker, lifespan=lifespan,
                      routing=routing)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(GatewaySettings, prog=PROG)
    settings = load_settings(GatewaySettings, argv, prog=PROG, parser=parser)
    configure_logging(settings.log_level)
    try:
        load_api_keys(settings)
        app = build(settings)
    except RoutingConfigError as exc:  # one line, naming the key at fault
        parser.exit(2, f"{PROG}: error: {exc}\n")
    except (ConfigError, OSError) as exc:
        parser.error(str(exc))
    log.info("settings: %s", describe(settings))
    if settings.workers > 1:
        table, _, watch = configure(settings)
        return supervise(settings, table=table, watch=watch, target="gateway.__main__:run_worker")
    # Slow or oversized request heads are bounded by the HTTP protocol (brix.http_guard),
    # idle kept-alive connections by uvicorn (timeout_keep_alive), bodies by the app.
    # The completion routes are served by the protocol itself (gateway.server).
    serve(GatewayApp(app), name="brix gateway", port=settings.port, host=settings.host,
          log_level=settings.log_level,
          http=gateway_protocol(app.state.completions, header_timeout=settings.header_timeout,
                                max_header_bytes=settings.max_header_bytes),
          timeout_keep_alive=settings.keep_alive_timeout,
          # The gateway reads no client address; X-Forwarded-* pass to the pod as sent.
          proxy_headers=False)
    return 0


def run_worker(spec: WorkerSpec) -> None:
    """One worker of ``--workers N`` (in its own process, started by ``supervise``)."""
    settings = spec.settings
    configure_logging(settings.log_level)
    link = WorkerLink(spec)
    app = build(settings, worker=link)
    serve(GatewayApp(app), name="brix gateway", port=spec.port, host=spec.host,
          log_level=settings.log_level, sockets=[link.listener()], on_ready=link.ready,
          http=gateway_protocol(app.state.completions, header_timeout=settings.header_timeout,
                                max_header_bytes=settings.max_header_bytes),
          timeout_keep_alive=settings.keep_alive_timeout,
          proxy_headers=False)


if __name__ == "__main__":
    sys.exit(main())
