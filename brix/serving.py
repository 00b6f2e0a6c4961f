"""Running an ASGI app the way every brix server does.

Binds ``$BIND_HOST`` (else 0.0.0.0, see DESIGN.md), supports port 0 (the OS
picks; tests use it), and prints exactly one ready line once the socket
accepts connections::

    <name> listening on http://<host>:<port>

Tests and localkube wait for that line (``READY_PATTERN``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final

READY_PATTERN: Final = re.compile(r"listening on (?P<url>(?:http|grpc)s?://\S+)")


# The young generation's threshold for servers (CPython's default is 700).
GC_THRESHOLD: Final = (10_000, 10, 10)


def quiet_gc() -> None:
    """Keep the cyclic garbage collector off a long-running server's request path.

    What exists once a server listens (modules, the app, its clients) lives as
    long as the process; ``gc.freeze()`` takes it out of the collector's scans,
    so a full collection no longer walks tens of thousands of objects (tens of
    milliseconds, paid by whatever requests wait meanwhile). The young
    generation's threshold rises from 700 to 10,000 allocations: a request
    allocates hundreds of objects, and with many requests in flight a small
    threshold promotes their live objects only to scan them again. Cycles
    are still collected, somewhat later; reference counting frees the rest at
    once. Measured on the gateway under load: the collector's share of its
    CPU went from 13% to under 1% (bench/gateway/RESULTS.md).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def bind_host(explicit: str | None = None) -> str:
    """The address to bind: an explicit one, else ``$BIND_HOST``, else ``0.0.0.0``."""
    return explicit or os.environ.get("BIND_HOST") or "0.0.0.0"


def connect_host(host: str) -> str:
    """An address a client on this machine can connect to for a bound ``host``."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def print_ready(name: str, scheme: str, host: str, port: int) -> None:
    """Print the one ready line (stdout, flushed)."""
    h = connect_host(host)
    if ":" in h:
        h = f"[{h}]"
    # One write of the whole line: print() writes the text and the newline
    # apart, and a log line from another thread (same pipe, unbuffered) could
    # land between them and glue itself to the URL.
    sys.stdout.write(f"{name} listening on {scheme}://{h}:{port}\n")
    sys.stdout.flush()


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def serve(
    app: Any,
    *,
    name: str,
    port: int,
    host: str | None = None,
    log_level: str = "info",
    timeout_graceful_shutdown: int | None = 10,
    sockets: Sequence[socket.socket] | None = None,
    on_ready: Callable[[str, int], None] | None = None,
    **uvicorn_options: Any,
) -> None:
    """Serve ``app`` until SIGINT/SIGTERM; exit non-zero with one line if the port is busy.

    ``sockets``: serve on these bound sockets (listening from then on) instead of
    binding ``host:port``. ``on_ready(host, port)``: called once serving, instead of
    printing the ready line (a gateway worker tells its supervisor).

    uvicorn is imported here, not at the top: components that only print the
    ready line (the operator, the scaler) do not need it installed.
    """
    import uvicorn

    class _Server(uvicorn.Server):
        """A uvicorn server that prints the ready line once it is serving."""

        def __init__(self, config: uvicorn.Config, *, name: str) -> None:
            super().__init__(config)
            self._name = name

        async def startup(self, sockets: list[Any] | None = None) -> None:
            await super().startup(sockets)
            if self.should_exit:
                return
            quiet_gc()  # the app's lifespan has run: what it made stays too
            for server in self.servers:
                for sock in server.sockets:
                    host, port = sock.getsockname()[:2]
                    if on_ready is not None:
                        on_ready(str(self.config.host or host), int(port))
                    else:
                        print_ready(self._name, "http", str(self.config.host or host), int(port))
                    return

    config = uvicorn.Config(
        app,
        host=bind_host(host),
        port=port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=timeout_graceful_shutdown,
        lifespan="on",
        # asyncio's own loop, not uvloop, for two reasons. libuv (since 1.45)
        # accepts one connection per loop iteration, so a server saturated by
        # its current clients let a burst of new ones wait in the accept queue
        # for seconds (256 new connections to a busy gateway: ~1% of their
        # requests at 1.3-2 s); asyncio accepts up to the backlog at once. And
        # uvloop has an open report of answers reaching the wrong requests
        # under heavy load behind uvicorn (MagicStack/uvloop#645), which a
        # gateway carrying many users' completions cannot risk. The price,
        # measured in bench/gateway and bench/sim: about the same CPU per
        # proxied request at 64 connections, up to a tenth more at 256, and a
        # quarter more per streamed token at saturation.
        loop="asyncio",
        **uvicorn_options,
    )
    server = _Server(config, name=name)
    try:
        # run(), not asyncio.run(serve()): it makes the loop configured above.
        server.run(sockets=list(sockets) if sockets is not None else None)
    except SystemExit:
        # uvicorn exits from startup when it cannot bind, after logging why.
        if server.started:
            raise
    except KeyboardInterrupt:  # pragma: no cover - second Ctrl-C
        return
    if not server.started:
        print(
            f"{name}: could not listen on {config.host}:{port} "
            "(is the port in use? pick another with --port)",
            file=sys.stderr,
        )
        sys.exit(1)


def install_signal_exit(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGTERM/SIGINT (for servers not run through ``serve``)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
