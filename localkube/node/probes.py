"""Probes: their settings and the threshold logic (pure), and running one (I/O).

``ProbeState`` turns a series of single results into the probe's verdict the
way the kubelet does: ``successThreshold`` successes in a row make it pass,
``failureThreshold`` failures in a row make it fail. A readiness probe starts
failing, liveness and startup probes start passing (a startup probe's verdict
only matters once it fails or first passes).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp

JsonObj = dict[str, Any]
ProbeKind = Literal["readiness", "liveness", "startup"]


@dataclass(frozen=True, kw_only=True)
class ProbeSpec:
    """A probe's action and timings (Kubernetes' defaults where unset)."""

    action: JsonObj
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def parse(cls, probe: JsonObj | None, kind: ProbeKind) -> ProbeSpec | None:
        if not probe:
            return None
        action = {k: v for k, v in probe.items()
                  if k in ("httpGet", "tcpSocket", "exec", "grpc")}
        success = int(probe.get("successThreshold") or 1)
        if kind != "readiness":
            success = 1  # the API requires 1 for liveness and startup probes
        return cls(
            action=action,
            initial_delay=float(probe.get("initialDelaySeconds") or 0),
            period=float(probe.get("periodSeconds") or 10),
            timeout=float(probe.get("timeoutSeconds") or 1),
            success_threshold=max(1, success),
            failure_threshold=max(1, int(probe.get("failureThreshold") or 3)),
        )


@dataclass
class ProbeState:
    """The verdict of one probe of one running container. Purely computational."""

    spec: ProbeSpec
    passing: bool
    successes: int = 0
    failures: int = 0

    @classmethod
    def initial(cls, spec: ProbeSpec, kind: ProbeKind) -> ProbeState:
        return cls(spec=spec, passing=kind != "readiness")

    def record(self, ok: bool) -> bool:
        """Add one result; return True when the verdict changed."""
        before = self.passing
        if ok:
            self.successes += 1
            self.failures = 0
            if self.successes >= self.spec.success_threshold:
                self.passing = True
        else:
            self.failures += 1
            self.successes = 0
            if self.failures >= self.spec.failure_threshold:
                self.passing = False
        return before != self.passing


@dataclass(frozen=True, kw_only=True)
class ProbeTarget:
    """Where a probe of one container goes."""

    pod_ip: str
    ports: Mapping[str, int] = field(default_factory=dict)  # named container ports
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None


def resolve_port(port: Any, named: Mapping[str, int]) -> int:
    if isinstance(port, int):
        return port
    text = str(port)
    if text.isdigit():
        return int(text)
    if text in named:
        return named[text]
    raise ValueError(f"port {text!r} is not a container port name")


async def run_probe(spec: ProbeSpec, target: ProbeTarget,
                    session: aiohttp.ClientSession) -> tuple[bool, str]:
    """Run the probe once: (success, a message on failure)."""
    try:
        async with asyncio.timeout(spec.timeout + 1.0):
            return await _run(spec.action, target, session, spec.timeout)
    except TimeoutError:
        return False, f"timed out after {spec.timeout:g}s"
    except ValueError as exc:
        return False, str(exc)


async def _run(action: JsonObj, target: ProbeTarget, session: aiohttp.ClientSession,
               seconds: float) -> tuple[bool, str]:
    if "httpGet" in action:
        return await _http(action["httpGet"], target, session, seconds)
    if "tcpSocket" in action:
        return await _tcp(action["tcpSocket"], target, seconds)
    if "exec" in action:
        return await _exec(action["exec"], target, seconds)
    return False, f"probe action {sorted(action)} is not supported by localkube"


async def _http(get: JsonObj, target: ProbeTarget, session: aiohttp.ClientSession,
                seconds: float) -> tuple[bool, str]:
    host = str(get.get("host") or target.pod_ip)
    port = resolve_port(get.get("port"), target.ports)
    scheme = str(get.get("scheme") or "HTTP").lower()
    path = str(get.get("path") or "/")
    if not path.startswith("/"):
        path = "/" + path
    headers = {str(h.get("name")): str(h.get("value")) for h in get.get("httpHeaders") or []}
    headers.setdefault("User-Agent", "kube-probe/localkube")
    try:
        async with session.get(f"{scheme}://{host}:{port}{path}", headers=headers,
                               allow_redirects=False, ssl=False,
                               timeout=aiohttp.ClientTimeout(total=seconds)) as resp:
            await resp.read()
            if 200 <= resp.status < 400:
                return True, ""
            return False, f"HTTP probe failed with statuscode: {resp.status}"
    except (aiohttp.ClientError, OSError) as exc:
        return False, f"Get {scheme}://{host}:{port}{path}: {exc}"


async def _tcp(sock: JsonObj, target: ProbeTarget, seconds: float) -> tuple[bool, str]:
    host = str(sock.get("host") or target.pod_ip)
    port = resolve_port(sock.get("port"), target.ports)
    try:
        async with asyncio.timeout(seconds):
            _, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        return False, f"dial tcp {host}:{port}: {exc}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, ""


async def _exec(ex: JsonObj, target: ProbeTarget, seconds: float) -> tuple[bool, str]:
    command = [str(c) for c in ex.get("command") or []]
    if not command:
        return False, "exec probe has no command"
    try:
        proc = await asyncio.create_subprocess_exec(
            *command, env=dict(target.env), cwd=target.cwd, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return False, f"exec {command[0]}: {exc}"
    try:
        async with asyncio.timeout(seconds):
            out, _ = await proc.communicate()
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise
    if proc.returncode == 0:
        return True, ""
    return False, f"command exited {proc.returncode}: {out.decode('utf-8', 'replace')[-200:]}"
