"""Putting the scaler together: HTTP metrics, the gRPC scaler, the fallback loop.

Ready lines (stdout): ``scaler metrics at http://host:port/metrics`` once the
HTTP side serves, then the one line tests wait for: ``scaler listening on
grpc(s)://host:port`` (in ``--mode loop``: ``scaler listening on http://...``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from brix.serving import bind_host, connect_host, print_ready
from scaler._proto import externalscaler_pb2_grpc as pb_grpc
from scaler.http import HttpServer
from scaler.keda import ExternalScaler
from scaler.metrics import ScalerMetrics
from scaler.prometheus import MetricsSource
from scaler.settings import ScalerSettings

log = logging.getLogger(__name__)

SERVICE_NAME = "externalscaler.ExternalScaler"


class Loop(Protocol):
    """The fallback loop as ``run`` sees it (``scaler.loop.FallbackLoop``)."""

    async def run(self, stop: asyncio.Event) -> None: ...

    def healthy(self) -> tuple[bool, str]: ...


def _read(flag: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise OSError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None


def server_credentials(settings: ScalerSettings) -> grpc.ServerCredentials | None:
    """TLS (and mTLS with a client CA) from PEM files, or None for plaintext."""
    if not settings.tls_cert or not settings.tls_key:
        return None
    cert = _read("--tls-cert", settings.tls_cert)
    key = _read("--tls-key", settings.tls_key)
    ca = _read("--tls-client-ca", settings.tls_client_ca) if settings.tls_client_ca else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                       require_client_auth=ca is not None)


async def start_grpc(settings: ScalerSettings, scaler: ExternalScaler,
                     host: str) -> tuple[grpc.aio.Server, int, HealthServicer]:
    # No SO_REUSEPORT: a second scaler on a busy port must fail, not share it.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    pb_grpc.add_ExternalScalerServicer_to_server(scaler, server)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = f"{host}:{settings.grpc_port}"
    credentials = server_credentials(settings)
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError:
        port = 0
    if port == 0:
        raise OSError(f"could not listen on {address} (is the port in use? pick another "
                      "with --grpc-port)")
    await server.start()
    serving = health_pb2.HealthCheckResponse.SERVING
    await health_servicer.set(SERVICE_NAME, serving)
    await health_servicer.set("", serving)
    return server, port, health_servicer


LoopFactory = Callable[[MetricsSource, ScalerMetrics], Loop]


async def run(settings: ScalerSettings, stop: asyncio.Event, *,
              make_loop: LoopFactory | None = None) -> None:
    """Serve until ``stop`` is set; the loop (if any) shares the cache and the metrics."""
    host = bind_host()
    metrics = ScalerMetrics()
    source = MetricsSource(settings.prometheus_url, timeout=settings.prometheus_timeout,
                           cache_ttl=settings.cache_ttl)
    loop = make_loop(source, metrics) if make_loop is not None else None

    def healthy() -> tuple[bool, str]:
        if loop is not None:
            return loop.healthy()
        return True, "ok"

    http = HttpServer(host, settings.http_port, metrics.registry, healthy)
    http.start()
    print(f"scaler metrics at http://{connect_host(host)}:{http.port}/metrics", flush=True)

    scaler: ExternalScaler | None = None
    server: grpc.aio.Server | None = None
    loop_task: asyncio.Task[None] | None = None
    try:
        if settings.serves_grpc:
            scaler = ExternalScaler(source, metrics, stream_interval=settings.stream_interval,
                                    forget_after=settings.keda_forget_after)
            server, port, health_servicer = await start_grpc(settings, scaler, host)
            scheme = "grpcs" if settings.tls_cert else "grpc"
            print_ready("scaler", scheme, host, port)
        else:
            print_ready("scaler", "http", host, http.port)
        if loop is not None:
            loop_task = asyncio.create_task(loop.run(stop), name="fallback loop")
        stopping = asyncio.create_task(stop.wait())
        waiters: list[asyncio.Future[object]] = [stopping]  # type: ignore[list-item]
        if loop_task is not None:
            waiters.append(loop_task)  # type: ignore[arg-type]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if loop_task is not None and loop_task.done():
            loop_task.result()  # a crashed loop ends the process with its error
    finally:
        stop.set()
        if loop_task is not None and not loop_task.done():
            try:
                await asyncio.wait_for(loop_task, 10)
            except TimeoutError:
                log.warning("the fallback loop did not stop within 10 s")
        if server is not None:
            await health_servicer.enter_graceful_shutdown()
            await server.stop(grace=2)
        if scaler is not None:
            await scaler.close()
        http.stop()
