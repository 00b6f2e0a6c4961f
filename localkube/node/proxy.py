"""hostPorts and NodePorts on 127.0.0.1: a TCP proxy to ready pods.

``desired_ports`` (pure) says which ports of 127.0.0.1 should be open and to
which backends: a container port with a ``hostPort`` opens that port to its own
pod; a ``NodePort`` or ``LoadBalancer`` Service opens each ``nodePort`` to the
ready pods behind the Service, and a ``LoadBalancer`` Service its ``port`` too
(as k3s's service load balancer does), with ``127.0.0.1`` as its ingress in
its status. Connections go round-robin to the backends that
are Ready when they arrive; with none, the connection is closed at once.
``ProxyController`` keeps the listeners equal to ``desired_ports``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import aiohttp

from localkube.node.client import SERVICES, ApiClient, ApiError, JsonObj
from localkube.node.config import HOST_IP
from localkube.node.endpoints import resolve_ports, service_pods
from localkube.node.informer import Informer
from localkube.node.podstatus import is_pod_ready

log = logging.getLogger(__name__)

Backend = tuple[str, int]
BIND_RETRY_SECONDS: Final = 2.0
COPY_CHUNK: Final = 65536


@dataclass
class PortPlan:
    """One port of 127.0.0.1: who claims it and where connections go now."""

    owner: str
    backends: list[Backend] = field(default_factory=list)


def desired_ports(pods: Sequence[JsonObj], services: Sequence[JsonObj]) -> dict[int, PortPlan]:
    """Port -> its plan. The first claimant (by kind, then name) of a port keeps it."""
    out: dict[int, PortPlan] = {}
    for pod in sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("name", ""))):
        meta = pod.get("metadata") or {}
        status = pod.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed") or meta.get("deletionTimestamp"):
            continue
        owner = f"pod {meta.get('namespace') or 'default'}/{meta.get('name')}"
        for c in (pod.get("spec") or {}).get("containers") or []:
            for port in c.get("ports") or []:
                host_port = port.get("hostPort")
                if not host_port or (port.get("protocol") or "TCP") != "TCP":
                    continue
                plan = out.setdefault(int(host_port), PortPlan(owner=owner))
                if plan.owner == owner and status.get("podIP") and is_pod_ready(pod):
                    plan.backends.append((str(status["podIP"]), int(port["containerPort"])))
    for svc in sorted(services, key=lambda s: str((s.get("metadata") or {}).get("name", ""))):
        spec = svc.get("spec") or {}
        if spec.get("type") not in ("NodePort", "LoadBalancer"):
            continue
        meta = svc.get("metadata") or {}
        owner = f"service {meta.get('namespace') or 'default'}/{meta.get('name')}"
        ready = [p for p in service_pods(svc, pods) if is_pod_ready(p)]
        for sp in spec.get("ports") or []:
            if (sp.get("protocol") or "TCP") != "TCP":
                continue
            exposed = [sp.get("nodePort")]
            if spec.get("type") == "LoadBalancer":
                exposed.append(sp.get("port"))
            one_port = {**svc, "spec": {**spec, "ports": [sp]}}
            backends = [(str(pod["status"]["podIP"]), resolved[0][1]) for pod in ready
                        if (resolved := resolve_ports(one_port, pod))]
            for port in exposed:
                if not port:
                    continue
                plan = out.setdefault(int(port), PortPlan(owner=owner))
                if plan.owner == owner:
                    plan.backends.extend(backends)
    return out


def load_balancer_status(service: JsonObj) -> JsonObj | None:
    """The ``status`` a LoadBalancer Service should have here, or None for other types."""
    if (service.get("spec") or {}).get("type") != "LoadBalancer":
        return None
    return {"loadBalancer": {"ingress": [{"ip": HOST_IP}]}}


class _Listener:
    def __init__(self, port: int, plan: PortPlan) -> None:
        self.port = port
        self.plan = plan
        self.server: asyncio.Server | None = None
        self._turn = itertools.count()
        self.connections: set[asyncio.Task[None]] = set()

    def pick(self) -> Backend | None:
        backends = self.plan.backends
        if not backends:
            return None
        return backends[next(self._turn) % len(backends)]

    async def open(self) -> None:
        self.server = await asyncio.start_server(self._handle, HOST_IP, self.port,
                                                 reuse_address=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.connections.add(task)
        try:
            backend = self.pick()
            if backend is None:
                return
            try:
                async with asyncio.timeout(5.0):
                    up_reader, up_writer = await asyncio.open_connection(*backend)
            except (OSError, TimeoutError):
                return
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        finally:
            writer.close()
            if task is not None:
                self.connections.discard(task)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            for task in list(self.connections):
                task.cancel()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(COPY_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


class ProxyController:
    """Opens, retargets and closes the listeners as pods and Services change."""

    def __init__(self, pods: Informer, services: Informer, api: ApiClient | None = None) -> None:
        self._pods = pods
        self._services = services
        self._api = api  # None for tests: no Service status is written
        self._listeners: dict[int, _Listener] = {}
        self._reported: set[int] = set()
        self._changed = asyncio.Event()
        pods.add_handler(lambda _k, _o: self._changed.set())
        services.add_handler(lambda _k, _o: self._changed.set())

    def ports(self) -> dict[int, list[Backend]]:
        return {port: list(lst.plan.backends) for port, lst in self._listeners.items()
                if lst.server is not None}

    async def _write_lb_status(self) -> None:
        if self._api is None:
            return
        for svc in self._services.items():
            wanted = load_balancer_status(svc)
            current = (svc.get("status") or {}).get("loadBalancer") or {}
            if wanted is None or current == wanted["loadBalancer"]:
                continue
            meta = svc.get("metadata") or {}
            try:
                await self._api.patch(SERVICES, meta.get("namespace"), str(meta.get("name")),
                                      {"status": wanted}, subresource="status")
            except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
                log.warning("service %s/%s: status not written: %s", meta.get("namespace"),
                            meta.get("name"), exc)

    async def _reconcile(self) -> bool:
        """Bring the listeners in line; True when every wanted port is open."""
        await self._write_lb_status()
        wanted = desired_ports(list(self._pods.items()), list(self._services.items()))
        for port in [p for p in self._listeners if p not in wanted]:
            await self._listeners.pop(port).close()
        all_open = True
        for port, plan in wanted.items():
            listener = self._listeners.get(port)
            if listener is None:
                listener = self._listeners[port] = _Listener(port, plan)
            listener.plan = plan
            if listener.server is None:
                try:
                    await listener.open()
                    self._reported.discard(port)
                    log.info("127.0.0.1:%d open for %s", port, plan.owner)
                except OSError as exc:
                    all_open = False
                    if port not in self._reported:  # said once; retried quietly
                        self._reported.add(port)
                        log.warning("127.0.0.1:%d for %s cannot be opened (retrying): %s",
                                    port, plan.owner, exc)
        return all_open

    async def run(self, stop: asyncio.Event) -> None:
        await self._pods.synced.wait()
        await self._services.synced.wait()
        try:
            while not stop.is_set():
                self._changed.clear()
                all_open = await self._reconcile()
                waiter = asyncio.ensure_future(self._changed.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait({waiter, stopper}, timeout=None if all_open
                                   else BIND_RETRY_SECONDS,
                                   return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
        finally:
            for listener in self._listeners.values():
                await listener.close()
            self._listeners.clear()
