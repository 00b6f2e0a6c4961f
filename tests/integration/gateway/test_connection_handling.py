"""HTTP/1.1 on one connection through the real gateway process, read with h11.

The completion routes are served by the gateway's own protocol
(gateway.server) and everything else by the ASGI app; on one connection
both must keep HTTP's rules: pipelined requests answered in order, the
connection kept alive after an error answer, ``Expect: 100-continue``,
chunked request bodies, a query string, HTTP/1.0 closing after its answer,
and a client that leaves mid-body giving its place back.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import h11
import httpx
import pytest

from tests.helpers.gateway import start_gateway
from tests.helpers.procs import Proc, ProcessGroup
from tests.helpers.sim import FAST, start_sim
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.integration

QUICK = json.dumps({"model": "m1", "prompt": "x", "max_tokens": 1}).encode()
JSON = {"content-type": "application/json"}  # (the sim refuses a body without it)
MAX_IN_FLIGHT = 2


@pytest.fixture(scope="module")
def gw(module_procs: ProcessGroup) -> Proc:
    engine = start_sim(module_procs, name="m1", extra_args=FAST)
    return start_gateway(module_procs, extra_args=[
        "--static-routes", f"m1={engine.url}", "--max-in-flight", str(MAX_IN_FLIGHT),
        "--body-timeout", "60"])


def connect(gw: Proc) -> socket.socket:
    assert gw.url is not None
    host, port = gw.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=20)


def post(path: bytes, body: bytes, *, request_id: bytes, extra: bytes = b"") -> bytes:
    return (b"POST " + path + b" HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
            b"x-request-id: " + request_id + b"\r\ncontent-length: %d\r\n" % len(body)
            + extra + b"\r\n" + body)


class Reader:
    """Answers read off one socket, one after another (h11's client side)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.conn = h11.Connection(h11.CLIENT)

    def _next_event(self) -> Any:
        while (event := self.conn.next_event()) is h11.NEED_DATA:
            self.conn.receive_data(self.sock.recv(65536))
        return event

    def answer(self) -> tuple[int, dict[bytes, bytes], bytes]:
        """The next final answer's status, headers and body (interim 1xx ones skipped)."""
        conn = self.conn
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        if conn.our_state is h11.IDLE:  # h11 reads an answer to a request it "sent"
            conn.send(h11.Request(method="POST", target="/", headers=[("host", "gw")]))
            conn.send(h11.EndOfMessage())
        event = self._next_event()
        while isinstance(event, h11.InformationalResponse):
            event = self._next_event()
        assert isinstance(event, h11.Response), event
        status, headers, body = event.status_code, dict(event.headers), b""
        while not isinstance(event := self._next_event(), h11.EndOfMessage):
            body += event.data
        return status, headers, body


def test_pipelined_requests_are_answered_in_order_on_either_path(gw: Proc) -> None:
    with connect(gw) as sock:
        sock.sendall(post(b"/v1/completions", QUICK, request_id=b"first")
                     + b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n"
                     + post(b"/v1/completions", b"{not json", request_id=b"third")
                     + post(b"/v1/chat/completions", json.dumps(
                         {"model": "m1", "max_tokens": 1,
                          "messages": [{"role": "user", "content": "hi"}]}).encode(),
                         request_id=b"fourth"))
        reader = Reader(sock)
        status, headers, body = reader.answer()
        assert (status, headers[b"x-request-id"]) == (200, b"first")
        assert json.loads(body)["object"] == "text_completion"
        assert b"x-brix-pod" in headers
        status, _, body = reader.answer()
        assert (status, json.loads(body)) == (200, {"status": "ok"})
        status, headers, body = reader.answer()
        assert (status, headers[b"x-request-id"]) == (400, b"third")
        assert json.loads(body)["error"]["code"] == "invalid_json"
        status, headers, body = reader.answer()
        assert (status, headers[b"x-request-id"]) == (200, b"fourth")
        assert json.loads(body)["object"] == "chat.completion"


def test_the_connection_stays_open_after_error_answers(gw: Proc) -> None:
    with connect(gw) as sock:
        reader = Reader(sock)
        for body, status, code in [
            (b"[1]", 400, "invalid_json"),
            (json.dumps({"model": "nope", "prompt": "x"}).encode(), 404, "model_not_found"),
            (json.dumps({"prompt": "x"}).encode(), 400, "missing_model"),
        ]:
            sock.sendall(post(b"/v1/completions", body, request_id=b"e"))
            got, headers, answer = reader.answer()
            assert (got, json.loads(answer)["error"]["code"]) == (status, code)
            assert b"connection" not in headers
        sock.sendall(post(b"/v1/completions", QUICK, request_id=b"ok"))
        assert reader.answer()[0] == 200


def test_a_query_string_a_chunked_body_and_expect_continue_are_served(gw: Proc) -> None:
    with connect(gw) as sock:
        reader = Reader(sock)
        sock.sendall(post(b"/v1/completions?trace=1", QUICK, request_id=b"q"))
        assert reader.answer()[0] == 200
        half = len(QUICK) // 2
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nhost: gw\r\n"
                     b"content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
                     + b"%x\r\n%s\r\n" % (half, QUICK[:half])
                     + b"%x\r\n%s\r\n0\r\n\r\n" % (len(QUICK) - half, QUICK[half:]))
        assert reader.answer()[0] == 200
        head = post(b"/v1/completions", QUICK, request_id=b"c",
                    extra=b"expect: 100-continue\r\n").removesuffix(QUICK)
        sock.sendall(head)
        assert sock.recv(25).startswith(b"HTTP/1.1 100")
        sock.sendall(QUICK)
        status, headers, _ = reader.answer()
        assert (status, headers[b"x-request-id"]) == (200, b"c")


def test_http_1_0_gets_its_answer_and_the_connection_closes(gw: Proc) -> None:
    with connect(gw) as sock:
        sock.sendall(post(b"/v1/completions", QUICK, request_id=b"old")
                     .replace(b"HTTP/1.1", b"HTTP/1.0", 1))
        data = b""
        while chunk := sock.recv(65536):  # read until the gateway closes
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"\r\nconnection: close" in head
    assert json.loads(body)["object"] == "text_completion"


def test_a_client_leaving_mid_body_gives_its_place_back(gw: Proc) -> None:
    assert gw.url is not None
    for _ in range(2):  # more than --max-in-flight, one after another
        socks = [connect(gw) for _ in range(MAX_IN_FLIGHT)]
        for s in socks:  # each takes a place while its body is awaited
            s.sendall(post(b"/v1/completions", QUICK, request_id=b"gone")[:-5])
        for s in socks:
            s.close()
    # Every place is free again: with all but one held by a waiting body, one more
    # request is admitted (a single place kept by a vanished client would make it 429).
    held = [connect(gw) for _ in range(MAX_IN_FLIGHT - 1)]
    try:
        for s in held:
            s.sendall(post(b"/v1/completions", QUICK, request_id=b"held")[:-5])
        with httpx.Client(timeout=20) as client:
            statuses: list[int] = []

            def admitted() -> bool:
                statuses.append(client.post(f"{gw.url}/v1/completions", content=QUICK,
                                            headers=JSON).status_code)
                return statuses[-1] == 200

            wait_until(admitted, "a request admitted", timeout=10)
            assert statuses[-1] == 200
    finally:
        for s in held:
            s.close()


def test_an_idle_connection_outlives_uvicorns_5_s_and_keep_alive_timeout_bounds_it(
    gw: Proc, procs: ProcessGroup,
) -> None:
    """Idle past uvicorn's own default (5 s), a kept-alive connection is still served: a
    proxy in front (60 s idle timeouts are common) would otherwise send on a connection
    the gateway was closing. ``--keep-alive-timeout`` bounds it."""
    with connect(gw) as sock:
        reader = Reader(sock)
        sock.sendall(post(b"/v1/completions", QUICK, request_id=b"a"))
        assert reader.answer()[0] == 200
        time.sleep(6)
        sock.sendall(post(b"/v1/completions", QUICK, request_id=b"b"))
        assert reader.answer()[0] == 200
    engine = start_sim(procs, name="m1", extra_args=FAST)
    short = start_gateway(procs, extra_args=["--static-routes", f"m1={engine.url}",
                                             "--keep-alive-timeout", "1"])
    with connect(short) as sock:
        sock.sendall(post(b"/v1/completions", QUICK, request_id=b"c"))
        assert Reader(sock).answer()[0] == 200
        sock.settimeout(20)
        assert sock.recv(1) == b""  # closed by the gateway once idle for its timeout
