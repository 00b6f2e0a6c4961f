"""Pods that fail: retries before the first byte, errors after it, timeouts, disconnects."""

from __future__ import annotations

import http.server
import json
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers.gateway import leave_mid_request, start_gateway
from tests.helpers.procs import Proc, ProcessGroup, free_port
from tests.helpers.sim import FAST, sim_value, slow, start_sim
from tests.helpers.wait import wait_until

RUNNING = "vllm:num_requests_running"
TRY_FAILED = re.compile(r"gateway\.proxy: connect to \S+ failed")


def host_of(proc: Proc) -> str:
    assert proc.url is not None
    return proc.url.removeprefix("http://")


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


def events_of(lines: Iterator[str]) -> Iterator[dict[str, object] | str]:
    for line in lines:
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            yield data if data == "[DONE]" else json.loads(data)


def test_connect_failures_before_the_first_byte_go_to_another_pod(procs: ProcessGroup) -> None:
    live = start_sim(procs, name="m1", extra_args=FAST)
    routes = ["--static-routes", f"m1={dead_url()}", "--static-routes", f"m1={live.url}",
              "--routing", "round-robin"]
    gw = start_gateway(procs, extra_args=routes)
    without = start_gateway(procs, extra_args=[*routes, "--retries", "0",
                                               "--reconnect-hold", "0"])
    body = {"model": "m1", "prompt": "x", "max_tokens": 1}
    with httpx.Client(timeout=30) as client:
        answers = [client.post(f"{gw.url}/v1/completions", json=body) for _ in range(6)]
        assert [r.status_code for r in answers] == [200] * 6
        assert {r.headers["x-brix-pod"] for r in answers} == {host_of(live)}
        # The same routes without retries: every other request fails.
        codes = [client.post(f"{without.url}/v1/completions", json=body) for _ in range(6)]
        assert sorted(r.status_code for r in codes) == [200] * 3 + [502] * 3
        failed = next(r for r in codes if r.status_code == 502)
        assert failed.json()["error"]["code"] == "upstream_unavailable"


def test_no_reachable_pod_is_502_after_the_reconnect_hold(procs: ProcessGroup) -> None:
    gw = start_gateway(procs, extra_args=["--static-routes", f"m1={dead_url()}",
                                          "--static-routes", f"m1={dead_url()}",
                                          "--reconnect-hold", "0.5"])
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "m1", "messages": []},
                   timeout=30)
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "upstream_unavailable"
    assert r.json()["error"]["type"] == "bad_gateway"
    assert "within 0.5 s" in r.json()["error"]["message"]


def test_a_held_request_logs_its_failed_tries_once_not_every_second(
    procs: ProcessGroup,
) -> None:
    """Held for 4 s against two dead pods, a request tries both about a dozen times; the
    gateway logs its first round and that it holds, the tries after at debug only (a pod
    restarting under a thousand held requests would otherwise log a thousand a second)."""
    gw = start_gateway(procs, extra_args=["--static-routes", f"m1={dead_url()}",
                                          "--static-routes", f"m1={dead_url()}",
                                          "--reconnect-hold", "4"])
    r = httpx.post(f"{gw.url}/v1/completions", json={"model": "m1", "prompt": "x"},
                   timeout=30)
    assert r.status_code == 502
    assert "within 4 s" in r.json()["error"]["message"]
    gw.wait_for(r"holding a request for m1 up to 4 s more: no pod answered \(last: ")
    failed = TRY_FAILED.findall(gw.output())
    assert 1 <= len(failed) <= 2, failed  # the first try at each pod (--retries 2 allows 3)
    with_debug = start_gateway(procs, extra_args=[
        "--static-routes", f"m1={dead_url()}", "--reconnect-hold", "4", "--log-level", "debug"])
    r = httpx.post(f"{with_debug.url}/v1/completions", json={"model": "m1", "prompt": "x"},
                   timeout=30)
    assert r.status_code == 502
    # The same tries are there at debug: held, the request went on trying.
    wait_until(lambda: len(TRY_FAILED.findall(with_debug.output())) >= 5,
               "the held request's tries in the debug log")


def test_a_pod_killed_mid_stream_ends_that_stream_with_an_error_event(
    procs: ProcessGroup,
) -> None:
    engines = [start_sim(procs, name="m1", extra_args=slow(ms_per_token=50)) for _ in range(2)]
    gw = start_gateway(procs, extra_args=[
        *[a for e in engines for a in ("--static-routes", f"m1={e.url}")],
        "--routing", "round-robin"])
    body = {"model": "m1", "prompt": "x", "max_tokens": 400, "stream": True, "ignore_eos": True}
    with httpx.Client(timeout=30) as client, \
            client.stream("POST", f"{gw.url}/v1/completions", json=body) as r:
        assert r.status_code == 200
        victim = next(e for e in engines if host_of(e) == r.headers["x-brix-pod"])
        survivor = next(e for e in engines if e is not victim)
        events = events_of(r.iter_lines())
        first = next(events)
        assert isinstance(first, dict)
        assert "choices" in first
        victim.signal(signal.SIGKILL)
        rest = list(events)
    assert rest, "the stream ended with no event after the pod died"
    last = rest[-1]
    assert isinstance(last, dict)
    assert "error" in last, last
    assert last["error"]["code"] == "upstream_error"  # type: ignore[index]
    assert "[DONE]" not in rest
    # New requests go to the pod that is left (the dead one refuses connections).
    with httpx.Client(timeout=30) as client:
        for _ in range(4):
            ok = client.post(f"{gw.url}/v1/completions",
                             json={"model": "m1", "prompt": "x", "max_tokens": 1})
            assert ok.status_code == 200, ok.text
            assert ok.headers["x-brix-pod"] == host_of(survivor)


def test_no_first_byte_in_time_is_504_and_the_pod_stops_working_on_it(
    procs: ProcessGroup,
) -> None:
    engine = start_sim(procs, name="m1", extra_args=slow(ms_per_token=100))
    gw = start_gateway(procs, extra_args=["--static-routes", f"m1={engine.url}",
                                          "--first-byte-timeout", "0.5"])
    r = httpx.post(f"{gw.url}/v1/completions", timeout=30,
                   json={"model": "m1", "prompt": "x", "max_tokens": 300, "ignore_eos": True})
    assert r.status_code == 504
    assert r.json()["error"]["code"] == "upstream_timeout"
    assert engine.url is not None
    url = engine.url
    wait_until(lambda: sim_value(url, RUNNING) == 0, "the engine dropped the request", timeout=10)


def test_a_stream_over_the_total_time_ends_with_an_error_event(procs: ProcessGroup) -> None:
    engine = start_sim(procs, name="m1", extra_args=slow(ms_per_token=50))
    gw = start_gateway(procs, extra_args=["--static-routes", f"m1={engine.url}",
                                          "--total-timeout", "1"])
    body = {"model": "m1", "prompt": "x", "max_tokens": 400, "stream": True, "ignore_eos": True}
    with httpx.stream("POST", f"{gw.url}/v1/completions", json=body, timeout=30) as r:
        assert r.status_code == 200
        events = list(events_of(r.iter_lines()))
    tokens = [e for e in events if isinstance(e, dict) and "choices" in e]
    assert 0 < len(tokens) < 400
    last = events[-1]
    assert isinstance(last, dict)
    assert last["error"]["code"] == "upstream_timeout"  # type: ignore[index]


def test_a_stream_whose_pod_stalls_after_it_started_ends_with_a_timeout_event(
    procs: ProcessGroup,
) -> None:
    # Stopped, not killed: its sockets stay open and nothing more comes. The
    # gateway's --first-byte-timeout bounds the silence between two pieces.
    engine = start_sim(procs, name="m1", extra_args=slow(ms_per_token=20))
    gw = start_gateway(procs, extra_args=["--static-routes", f"m1={engine.url}",
                                          "--first-byte-timeout", "1"])
    body = {"model": "m1", "prompt": "x", "max_tokens": 400, "stream": True, "ignore_eos": True}
    try:
        with httpx.stream("POST", f"{gw.url}/v1/completions", json=body, timeout=30) as r:
            assert r.status_code == 200
            events = events_of(r.iter_lines())
            for _ in range(10):  # pieces keep coming 20 ms apart: no timeout between them
                assert isinstance(next(events), dict)
            engine.signal(signal.SIGSTOP)
            rest = list(events)
    finally:
        engine.signal(signal.SIGCONT)
    tokens = [e for e in rest if isinstance(e, dict) and "choices" in e]
    assert len(tokens) < 390
    last = rest[-1]
    assert isinstance(last, dict)
    assert last["error"]["code"] == "upstream_timeout", last  # type: ignore[index]
    assert "[DONE]" not in rest


def test_a_client_that_reads_slowly_gets_the_whole_stream_in_order(procs: ProcessGroup) -> None:
    # 30,000 tokens as fast as the sim makes them, some 7 MB of events (past what
    # the kernel buffers on loopback), to a client that reads nothing for three
    # seconds: the gateway stops reading from the pod while its client is behind,
    # then passes on all of it.
    engine = start_sim(procs, name="m1", extra_args=(
        "--prefill-tokens-per-s", "1000000", "--decode-ms-per-token", "0.01",
        "--decode-ms-per-token-per-seq", "0", "--max-model-len", "32768"))
    gw = start_gateway(procs, extra_args=["--static-routes", f"m1={engine.url}"])
    assert gw.url is not None
    body = json.dumps({"model": "m1", "prompt": "x", "max_tokens": 30000, "stream": True,
                       "ignore_eos": True}).encode()
    host, port = gw.url.removeprefix("http://").split(":")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(30)
        sock.connect((host, int(port)))
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n"
                     b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                     % (len(body), body))
        time.sleep(3)
        received = bytearray()
        while chunk := sock.recv(65536):
            received.extend(chunk)
    head, _, chunked = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    pieces, at = [], 0
    while True:  # undo the chunked framing
        eol = chunked.index(b"\r\n", at)
        n = int(chunked[at:eol], 16)
        if n == 0:
            break
        pieces.append(chunked[eol + 2:eol + 2 + n])
        at = eol + 4 + n
    text = b"".join(pieces)
    events = list(events_of(iter(text.decode().splitlines())))
    assert events[-1] == "[DONE]"
    texts = [e["choices"][0]["text"] for e in events  # type: ignore[index]
             if isinstance(e, dict) and "choices" in e]
    assert sum(1 for t in texts if t) == 30000


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_leaves_cancels_the_upstream_request(procs: ProcessGroup,
                                                           stream: bool) -> None:
    engine = start_sim(procs, name="m1", extra_args=slow(ms_per_token=100))
    assert engine.url is not None
    gw = start_gateway(procs, extra_args=["--static-routes", f"m1={engine.url}"])
    assert gw.url is not None
    leave_mid_request(gw.url, engine.url, stream=stream)


def test_a_cookie_one_answer_sets_never_reaches_another_request(procs: ProcessGroup) -> None:
    # A stand-in pod (not an engine: no engine sets cookies) that sets one and
    # records the Cookie header of every request it gets.
    seen: list[str | None] = []

    class Pod(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            seen.append(self.headers.get("cookie"))
            body = json.dumps({"id": "x", "object": "text_completion", "choices": []}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.send_header("set-cookie", "session=secret-of-the-first-client; Path=/")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pod)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # By name, as a Service would be: a client's cookie jar keeps no cookie of
        # a bare IP address, but keeps a host name's.
        gw = start_gateway(procs, extra_args=[
            "--static-routes", f"m1=http://localhost:{server.server_address[1]}"])
        body = {"model": "m1", "prompt": "x", "max_tokens": 1}
        first = httpx.post(f"{gw.url}/v1/completions", json=body, timeout=30)
        assert first.status_code == 200
        assert "secret-of-the-first-client" in first.headers["set-cookie"]  # passed on
        second = httpx.post(f"{gw.url}/v1/completions", json=body, timeout=30)
        assert second.status_code == 200
        assert seen == [None, None]
    finally:
        server.shutdown()
        server.server_close()
