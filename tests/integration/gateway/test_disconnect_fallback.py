"""A client that leaves, with the gateway served by a server without ``brix.disconnect``.

The gateway's own server (brix.http_guard) calls back when a client leaves
(test_upstream_failures covers it); served by another ASGI server, the gateway
falls back to waiting on ``receive`` for ``http.disconnect``. Here it is served
by plain uvicorn, in a thread of this process.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import uvicorn

from gateway.__main__ import build
from gateway.app import GatewayApp
from gateway.settings import GatewaySettings
from tests.helpers.procs import ProcessGroup
from tests.helpers.sim import sim_value, slow, start_sim

pytestmark = pytest.mark.integration

RUNNING = "vllm:num_requests_running"


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.05)


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@contextlib.contextmanager
def plain_uvicorn(app: GatewayApp) -> Iterator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, http="httptools", loop="asyncio",
                            lifespan="on", log_level="warning")
    server = _Server(config)
    thread = threading.Thread(target=server.run, name="plain-uvicorn", daemon=True)
    thread.start()
    try:
        assert server.ready.wait(30), "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.mark.parametrize("stream", [True, False])
def test_served_elsewhere_a_client_that_leaves_still_cancels_the_upstream_request(
    procs: ProcessGroup, stream: bool,
) -> None:
    engine = start_sim(procs, name="m1", extra_args=slow(ms_per_token=100))
    assert engine.url is not None
    url = engine.url
    settings = GatewaySettings(discovery="none", static_routes=[f"m1={url}"])
    # 600 tokens at 100 ms: a minute of work unless the gateway cancels it.
    body = json.dumps({"model": "m1", "prompt": "x", "max_tokens": 600, "stream": stream,
                       "ignore_eos": True}).encode()
    with plain_uvicorn(GatewayApp(build(settings))) as gw:
        host, port = gw.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(b"POST /v1/completions HTTP/1.1\r\nhost: gw\r\n"
                         b"content-type: application/json\r\n"
                         b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            wait_until(lambda: sim_value(url, RUNNING) == 1, 15, "the engine runs the request")
            if stream:
                assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        # The client is gone; the engine stops long before the minute is over.
        wait_until(lambda: sim_value(url, RUNNING) == 0, 15, "the engine stopped the request")
        metrics = httpx.get(f"{gw}/metrics", timeout=10).text
        assert 'brix_gateway_requests_total{code="499",model="m1"} 1.0' in metrics
