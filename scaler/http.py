"""The scaler's HTTP side: ``/metrics`` and ``/healthz``, served from a thread.

The scaler's work is on its asyncio loop (gRPC, the fallback loop); this small
WSGI server only reads a registry and a health flag, so a thread keeps it apart.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

StartResponse = Callable[..., Any]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


def make_app(registry: CollectorRegistry,
             healthy: Callable[[], tuple[bool, str]]) -> Callable[..., Iterable[bytes]]:
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            result: Iterable[bytes] = metrics(environ, start_response)
            return result
        if path == "/healthz":
            ok, why = healthy()
            start_response("200 OK" if ok else "503 Service Unavailable",
                           [("Content-Type", "text/plain; charset=utf-8")])
            return [why.encode() + b"\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: try /metrics or /healthz\n"]

    return app


class HttpServer:
    """The WSGI server in a daemon thread; ``port`` is the bound one (port 0 allowed)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry,
                 healthy: Callable[[], tuple[bool, str]]) -> None:
        try:
            self._server = make_server(host, port, make_app(registry, healthy),
                                       server_class=_Server, handler_class=_QuietHandler)
        except OSError as exc:
            raise OSError(f"could not listen on {host}:{port} ({exc.strerror or exc}; pick "
                          "another with --http-port)") from None
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="scaler-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
