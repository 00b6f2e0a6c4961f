"""``--workers 2``: the real gateway, two worker processes on one port, two sim pods.

Requests are held open (long streams) through connections that the kernel
hands to one worker or the other; which worker accepted a connection is read
from /proc (the worker process holding the other end of the socket). The
least-request pick of each worker counts what every worker has in flight,
and a worker killed with requests in flight leaves no count behind and no
hole in routing.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter

import httpx
import pytest

from tests.helpers.gateway import start_gateway
from tests.helpers.gateway_workers import through, worker_of, workers_of
from tests.helpers.procs import REPO, Proc, ProcessGroup
from tests.helpers.sim import slow, start_sim
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.integration

LONG_TOKENS = 600  # two minutes at 200 ms a token
LONG = {"model": "m1", "prompt": "x", "max_tokens": LONG_TOKENS, "stream": True, "ignore_eos": True}


def open_stream(url: str, tokens: int = LONG_TOKENS) -> tuple[socket.socket, str]:
    """A long least-request stream on a new connection, held open; returns (socket, pod)."""
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({**LONG, "max_tokens": tokens}).encode()
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nhost: gw\r\n"
                 b"content-type: application/json\r\nx-brix-routing: least-request\r\n"
                 b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(65536)
        assert chunk, "the gateway closed the connection before answering"
        head += chunk
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 200"), head
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return sock, headers["x-brix-pod"]


@pytest.fixture
def gateway(procs: ProcessGroup) -> tuple[Proc, list[str]]:
    """A gateway with two workers in front of two sim pods; the pods' x-brix-pod names."""
    pods = [start_sim(procs, name="m1", extra_args=slow(ms_per_token=200)) for _ in range(2)]
    urls = [p.url for p in pods if p.url is not None]
    gw = start_gateway(procs, extra_args=("--workers", "2", "--routing", "least-request",
                                          "--static-routes", ",".join(f"m1={u}" for u in urls)),
                       timeout=60)
    return gw, [u.removeprefix("http://") for u in urls]


def test_least_request_counts_every_workers_requests(
    gateway: tuple[Proc, list[str]],
) -> None:
    gw, pods = gateway
    assert gw.url is not None
    pids = workers_of(gw)
    assert len(pids) == 2
    held: list[socket.socket] = []
    in_flight: Counter[str] = Counter(dict.fromkeys(pods, 0))
    served_by: Counter[int] = Counter()
    try:
        # New connections land on either worker; go on until each has taken three.
        while min(served_by[p] for p in pids) < 3:
            assert len(held) < 40, f"connections kept landing on one worker: {served_by}"
            sock, pod = open_stream(gw.url)
            held.append(sock)
            served_by[worker_of(sock, pids)] += 1
            # The pod with the fewest streams open (through either worker) took it.
            assert in_flight[pod] == min(in_flight.values()), (dict(in_flight), pod)
            in_flight[pod] += 1
    finally:
        for sock in held:
            sock.close()


def test_a_killed_worker_leaves_no_count_and_no_hole(
    gateway: tuple[Proc, list[str]],
) -> None:
    gw, pods = gateway
    assert gw.url is not None
    pids = workers_of(gw)
    held: list[tuple[socket.socket, str, int]] = []
    try:
        # Open streams until one worker holds two more on one pod than on the other
        # (all together the pods stay even): that worker is the one to kill.
        victim = None
        while victim is None:
            # Usually within 7 streams; not within 80 about once in 50,000 runs.
            assert len(held) < 80, "no worker came to hold two more streams on one pod"
            sock, pod = open_stream(gw.url)
            held.append((sock, pod, worker_of(sock, pids)))
            for w in pids:
                mine = Counter(p for _, p, by in held if by == w)
                if abs(mine[pods[0]] - mine[pods[1]]) >= 2:
                    victim = w
        survivor: Counter[str] = Counter(dict.fromkeys(pods, 0))
        survivor.update(p for _, p, by in held if by != victim)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: victim not in workers_of(gw), "the supervisor reaps the worker",
                   timeout=10)
        # Routing goes on through the other worker while the supervisor starts another.
        for _ in range(4):
            r = httpx.post(f"{gw.url}/v1/completions", timeout=30,
                           json={"model": "m1", "prompt": "x", "max_tokens": 1})
            assert r.status_code == 200, r.text
        wait_until(lambda: len(workers_of(gw)) == 2, "the supervisor starts another worker",
                   timeout=60)
        # What the dead worker had in flight no longer counts: the next streams go by the
        # survivor's alone (counted with the dead one's, the pods would look even).
        for _ in range(2):
            sock, pod = open_stream(gw.url)
            held.append((sock, pod, 0))
            assert survivor[pod] == min(survivor.values()), (dict(survivor), pod)
            survivor[pod] += 1
        assert "Traceback" not in gw.output()
    finally:
        for sock, _, _ in held:
            sock.close()


def test_metrics_are_the_whole_gateways_whichever_worker_answers(
    gateway: tuple[Proc, list[str]],
) -> None:
    gw, _ = gateway
    assert gw.url is not None
    pids = workers_of(gw)
    short = json.dumps({"model": "m1", "prompt": "x", "max_tokens": 1}).encode()
    answered: Counter[int] = Counter()
    while min(answered[p] for p in pids) < 2:
        assert sum(answered.values()) < 40, answered
        worker, status, _ = through(gw.url, pids, "POST", "/v1/completions", short)
        assert status == 200
        answered[worker] += 1
    total = sum(answered.values())
    line = f'brix_gateway_requests_total{{code="200",model="m1"}} {float(total)}'
    scraped: set[int] = set()
    for _ in range(40):
        if scraped == pids:
            break
        worker, status, text = through(gw.url, pids, "GET", "/metrics")
        assert status == 200
        assert line in text.decode().splitlines(), text.decode()[:2000]
        scraped.add(worker)
    assert scraped == pids


def test_sigterm_stops_every_worker(gateway: tuple[Proc, list[str]]) -> None:
    gw, _ = gateway
    assert gw.url is not None
    pids = workers_of(gw)
    streams = [open_stream(gw.url, tokens=10)[0] for _ in range(4)]  # 2 s each, any worker
    os.kill(gw.popen.pid, signal.SIGTERM)  # the supervisor only, as Kubernetes does
    for sock in streams:  # drained: each runs to its end
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        sock.close()
        assert b"data: [DONE]" in received, received[-300:]
    assert gw.popen.wait(30) == 0
    wait_until(lambda: not any(os.path.exists(f"/proc/{p}") for p in pids), "every worker exits",
               timeout=10)


@pytest.mark.parametrize("value", ["0", "-2"])
def test_workers_below_one_stops_with_one_clear_line(value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--port", "0", "--discovery", "none",
         "--workers", value],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
    )
    assert result.returncode == 2
    assert f"workers must be >= 1 (got {value})" in result.stderr.splitlines()[-1]
    assert "Traceback" not in result.stderr


def test_a_port_in_use_stops_with_one_clear_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        start = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "gateway", "--port", str(port), "--discovery", "none",
             "--workers", "2", "--host", "127.0.0.1"],
            capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
        )
    assert result.returncode == 1, (time.monotonic() - start, result.stderr)
    assert "could not listen" in result.stderr.splitlines()[-1]
    assert "Traceback" not in result.stderr


def test_a_second_gateway_with_workers_does_not_join_the_port(
    gateway: tuple[Proc, list[str]],
) -> None:
    gw, _ = gateway
    assert gw.url is not None
    port = gw.url.rsplit(":", 1)[1]
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--port", port, "--discovery", "none",
         "--workers", "2", "--host", "127.0.0.1"],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "could not listen" in result.stderr.splitlines()[-1]
