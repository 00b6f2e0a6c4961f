"""A client that leaves, with the gateway served by a server without ``brix.disconnect``.

The gateway's own server (brix.http_guard) calls back when a client leaves
(test_upstream_failures covers it); served by another ASGI server, the gateway
falls back to waiting on ``receive`` for ``http.disconnect``. Here it is served
by plain uvicorn, in a thread of this process.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest
import uvicorn

from gateway.__main__ import build
from gateway.app import GatewayApp
from gateway.settings import GatewaySettings
from tests.helpers.gateway import leave_mid_request
from tests.helpers.procs import ProcessGroup
from tests.helpers.sim import slow, start_sim

pytestmark = pytest.mark.integration

RUNNING = "vllm:num_requests_running"


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
    settings = GatewaySettings(discovery="none", static_routes=[f"m1={engine.url}"])
    with plain_uvicorn(GatewayApp(build(settings))) as gw:
        leave_mid_request(gw, engine.url, stream=stream)
