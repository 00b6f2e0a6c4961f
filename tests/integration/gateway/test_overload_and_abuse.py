"""Overload and hostile clients through the real gateway process: each costs bounded resources.

Which layer enforces what (DESIGN.md, "Gateway"):

- requests in flight (``--max-in-flight``, 429) and held (``--max-pending``,
  503 ``overloaded``), and the body's time (``--body-timeout``, 408): the
  gateway's completion endpoint (gateway.completions, gateway.admission);
- the request head's time (``--header-timeout``, 408) and size
  (``--max-header-bytes``, 431): the gateway's HTTP protocol (brix.http_guard),
  a subclass of uvicorn's httptools one;
- idle kept-alive connections: uvicorn's ``timeout_keep_alive``;
- a client that vanishes: its disconnect cancels the call and the upstream
  request (gateway.proxy), and its place in flight is given back.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from tests.helpers.gateway import start_gateway
from tests.helpers.procs import Proc, ProcessGroup
from tests.helpers.sim import sim_value, slow, start_sim
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.integration
MAX_IN_FLIGHT = 6
MAX_PENDING = 2
STREAM = {"model": "m1", "prompt": "x", "max_tokens": 2000, "stream": True, "ignore_eos": True}
QUICK = {"model": "m1", "prompt": "x", "max_tokens": 1}


@pytest.fixture(scope="module")
def engine(module_procs: ProcessGroup) -> Proc:
    # 2000 tokens at 20 ms: a stream lasts 40 s unless its client leaves.
    return start_sim(module_procs, name="m1", extra_args=slow(ms_per_token=20))


@pytest.fixture(scope="module")
def gw(module_procs: ProcessGroup, engine: Proc) -> Proc:
    return start_gateway(module_procs, extra_args=[
        "--static-routes", f"m1={engine.url}", "--hold-models", "cold",
        "--hold-timeout", "20", "--max-in-flight", str(MAX_IN_FLIGHT),
        "--max-pending", str(MAX_PENDING), "--overload-retry-after", "3",
        "--header-timeout", "1", "--body-timeout", "1", "--max-header-bytes", "16384",
    ])


def address(proc: Proc) -> tuple[str, int]:
    assert proc.url is not None
    host, port = proc.url.removeprefix("http://").split(":")
    return host, int(port)


def error_of(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    error: dict[str, Any] = body["error"]
    return error


def raw_answer(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    """Read one whole answer (the server closes the connection after it)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


@pytest.fixture
def open_streams(gw: Proc) -> Iterator[Callable[[int], list[httpx.Response]]]:
    """Open n streams that stay open until the test ends (their first bytes read)."""
    with ExitStack() as stack:
        client = stack.enter_context(httpx.Client(timeout=30))
        readers: list[Iterator[bytes]] = []

        def open_n(n: int) -> list[httpx.Response]:
            streams = []
            for _ in range(n):
                r = stack.enter_context(client.stream("POST", f"{gw.url}/v1/completions",
                                                      json=STREAM))
                assert r.status_code == 200
                chunks = r.iter_raw()  # kept: dropping the iterator would close the stream
                next(chunks)
                readers.append(chunks)
                streams.append(r)
            return streams

        yield open_n


def test_beyond_max_in_flight_is_429_with_retry_after_then_room_again(
    gw: Proc, open_streams: Callable[[int], list[httpx.Response]],
) -> None:
    streams = open_streams(MAX_IN_FLIGHT)
    r = httpx.post(f"{gw.url}/v1/completions", json=QUICK, timeout=30)
    error = error_of(r, 429)
    assert error["code"] == "too_many_requests"
    assert error["type"] == "rate_limit_error"
    assert r.headers["retry-after"] == "3"
    for s in streams:
        s.close()
    wait_until(lambda: httpx.post(f"{gw.url}/v1/completions", json=QUICK,
                                  timeout=30).status_code == 200, "room again", timeout=15)


def test_beyond_max_pending_is_503_overloaded(gw: Proc) -> None:
    cold = {"model": "cold", "prompt": "x"}

    def pending() -> float:
        text = httpx.get(f"{gw.url}/metrics", timeout=10).text
        line = next((x for x in text.splitlines()
                     if x.startswith('brix_gateway_requests_pending{model="cold"}')), None)
        return float(line.split()[-1]) if line else 0.0

    with concurrent.futures.ThreadPoolExecutor(MAX_PENDING) as pool:
        held = [pool.submit(httpx.post, f"{gw.url}/v1/completions", json=cold, timeout=60)
                for _ in range(MAX_PENDING)]
        wait_until(lambda: pending() == MAX_PENDING, "the requests held", timeout=15)
        r = httpx.post(f"{gw.url}/v1/completions", json=cold, timeout=30)
        error = error_of(r, 503)
        assert error["code"] == "overloaded"
        assert r.headers["retry-after"] == "3"
        # The held ones are still held: they end with the hold's own 503.
        for f in held:
            assert error_of(f.result(), 503)["code"] == "no_ready_endpoint"


def test_oversized_headers_are_431_and_the_gateway_goes_on(gw: Proc) -> None:
    r = httpx.post(f"{gw.url}/v1/completions", json=QUICK, timeout=30,
                   headers={"x-big": "a" * 40_000})
    error = error_of(r, 431)
    assert error["code"] == "headers_too_large"
    assert httpx.post(f"{gw.url}/v1/completions", json=QUICK, timeout=30).status_code == 200


def test_slowloris_headers_get_408_and_the_connection_closed(gw: Proc) -> None:
    socks = [socket.create_connection(address(gw), timeout=20) for _ in range(30)]
    try:
        for s in socks:
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nhost: gw\r\n")
        # Keep dripping a header byte by byte past the header timeout.
        for _ in range(8):
            for s in socks:
                with contextlib.suppress(OSError):  # closed by the gateway already
                    s.sendall(b"x")
            time.sleep(0.25)
        # Meanwhile the gateway serves everyone else.
        assert httpx.post(f"{gw.url}/v1/completions", json=QUICK, timeout=30).status_code == 200
        for s in socks:
            status, body = raw_answer(s)
            assert status == 408
            assert body["error"]["code"] == "request_timeout"
    finally:
        for s in socks:
            s.close()


def test_a_slow_body_is_408(gw: Proc) -> None:
    body = json.dumps(QUICK).encode()
    with socket.create_connection(address(gw), timeout=20) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json"
                  b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n")
        # A byte every 0.2 s: well past the body timeout before the body is all there.
        with contextlib.suppress(OSError):  # the gateway may hang up first
            for byte in body[:15]:
                s.sendall(bytes([byte]))
                time.sleep(0.2)
        data = s.recv(65536)
    assert data.startswith(b"HTTP/1.1 408"), data
    assert b'"request_timeout"' in data


def test_clients_that_vanish_give_back_their_place_and_stop_the_engine(
    gw: Proc, engine: Proc,
) -> None:
    assert engine.url is not None
    url = engine.url
    body = json.dumps(STREAM).encode()
    head = (b"POST /v1/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n")
    for _ in range(2):  # more clients vanish than the gateway takes at once
        socks = [socket.create_connection(address(gw), timeout=20)
                 for _ in range(MAX_IN_FLIGHT)]
        for s in socks[: MAX_IN_FLIGHT // 2]:
            s.sendall(head + body)  # mid-stream
        for s in socks[MAX_IN_FLIGHT // 2:]:
            s.sendall(head + body[:10])  # mid-body
        wait_until(lambda: sim_value(url, "vllm:num_requests_running") == MAX_IN_FLIGHT // 2,
                   "the engine runs the streams", timeout=15)
        for s in socks[: MAX_IN_FLIGHT // 2]:
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
        for s in socks:
            s.close()
        wait_until(lambda: sim_value(url, "vllm:num_requests_running") == 0,
                   "the engine stopped the vanished clients' requests", timeout=15)
    # Every place was given back: a full set of streams is admitted again.
    with httpx.Client(timeout=30) as client, ExitStack() as stack:
        for _ in range(MAX_IN_FLIGHT):
            r = stack.enter_context(client.stream("POST", f"{gw.url}/v1/completions",
                                                  json=STREAM))
            assert r.status_code == 200
