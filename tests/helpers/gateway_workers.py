"""Which worker process of a ``--workers N`` gateway holds a connection.

The kernel hands each new connection to one of the workers (SO_REUSEPORT); the worker
that took it is the process holding the gateway's end of the socket, read from /proc.
"""

from __future__ import annotations

import http.client
import os
import socket

from tests.helpers.procs import Proc


def workers_of(gateway: Proc) -> set[int]:
    """The gateway's worker processes (children of the supervisor started by spawn)."""
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if ppid == gateway.popen.pid and b"spawn_main" in cmdline:
            pids.add(int(entry))
    return pids


def _server_inode(gateway_port: int, client_port: int) -> str | None:
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if (int(local.split(":")[1], 16) == gateway_port
                    and int(remote.split(":")[1], 16) == client_port
                    and inode != "0"):  # 0: not accepted yet, or closed (TIME_WAIT)
                return inode
    return None


def worker_of(sock: socket.socket, pids: set[int]) -> int:
    """Which of ``pids`` holds the gateway's end of ``sock`` (a connection to it)."""
    client_port = sock.getsockname()[1]
    gateway_port = sock.getpeername()[1]
    inode = _server_inode(gateway_port, client_port)
    assert inode is not None, "the gateway's end of the connection is not in /proc/net/tcp"
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    raise AssertionError(f"no worker of {pids} holds socket {inode}")


def exchange(url: str, pids: set[int], method: str, path: str,
             body: bytes | None = None) -> tuple[int, int, dict[str, str], bytes]:
    """One request on a new connection: (worker that took it, status, headers, body)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body=body, headers={"content-type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        assert conn.sock is not None  # kept alive: the worker still holds its end
        headers = {k.lower(): v for k, v in response.getheaders()}
        return worker_of(conn.sock, pids), response.status, headers, data
    finally:
        conn.close()


def through(url: str, pids: set[int], method: str, path: str,
            body: bytes | None = None) -> tuple[int, int, bytes]:
    """One request on a new connection: (worker that took it, status, body)."""
    worker, status, _, data = exchange(url, pids, method, path, body)
    return worker, status, data
