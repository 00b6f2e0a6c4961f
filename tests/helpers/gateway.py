"""Start the brix gateway (``python -m gateway``) for a test.

Usage::

    def test_x(procs):
        engine = start_sim(procs, name="m1", extra_args=FAST)
        gw = start_gateway(procs, extra_args=("--static-routes", f"m1={engine.url}"))
        httpx.post(gw.url + "/v1/completions", json={"model": "m1", "prompt": "hi"})

With ``kubeconfig`` the gateway watches that cluster (Pods, Deployments,
LoraAdapters); without it, it serves only the routes given in ``extra_args``
(``--static-routes MODEL=URL``, ``--services``, ``--hold-models``).
``gw.url`` is ``http://127.0.0.1:PORT``.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from tests.helpers.procs import Proc, ProcessGroup
from tests.helpers.sim import sim_value
from tests.helpers.wait import wait_until

RUNNING = "vllm:num_requests_running"


def start_gateway(
    procs: ProcessGroup,
    *,
    kubeconfig: str | Path | None = None,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Proc:
    """Start a gateway on a free loopback port; returns once it listens."""
    discovery = ["--kubeconfig", str(kubeconfig)] if kubeconfig else ["--discovery", "none"]
    full_env = {"BIND_HOST": "127.0.0.1", **(env or {})}
    return procs.start(
        ["-m", "gateway", "--port", "0", *discovery, *extra_args],
        name="gateway", env=full_env, timeout=timeout,
    )




def leave_mid_request(gateway_url: str, engine_url: str, *, stream: bool) -> None:
    """Send a minute of work (600 tokens of a sim at 100 ms each) through the gateway on a
    raw socket, leave once the engine runs it (after the first bytes when streaming), and
    check that the engine stopped it and the gateway counted a 499."""
    body = json.dumps({"model": "m1", "prompt": "x", "max_tokens": 600, "stream": stream,
                       "ignore_eos": True}).encode()
    host, port = gateway_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nhost: gw\r\n"
                     b"content-type: application/json\r\n"
                     b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        wait_until(lambda: sim_value(engine_url, RUNNING) == 1,
                   "the engine runs the request", timeout=15)
        if stream:
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    # The client is gone; the engine stops long before the minute is over.
    wait_until(lambda: sim_value(engine_url, RUNNING) == 0, "the engine stopped the request",
               timeout=15)
    metrics = httpx.get(f"{gateway_url}/metrics", timeout=10).text
    assert 'brix_gateway_requests_total{code="499",model="m1"} 1.0' in metrics
