"""``--workers N``: one supervising process, N worker processes serving one port.

The supervisor owns what must happen once: discovery (the Kubernetes watches,
or the configured routes) and the sidecar poller. It publishes their state to
every worker over a Unix socket pair per worker, as a whole ``Update`` (the
table's objects, the endpoint -> column map, the polled queues, which kinds
are listed) whenever something changed, at most every ``TICK`` seconds for
what it polls. A whole state, not a stream of changes: a worker that starts
late or falls behind needs only the newest one, so a slow worker delays only
itself (each has its own feeder, which skips to the newest update). The
messages are pickles between a parent and the children it started, from the
same code.

Why a socket pair for the table and shared memory for the counts: the table
changes a few times a second at most and is read as Python objects (routes,
adapters), which a message carries as is; in-flight counts change twice per
request and are read at every pick, so they live in shared memory
(``gateway.shared_load``), one row per worker, summed by readers.

Workers bind the port with SO_REUSEPORT, so the kernel spreads new
connections over the workers evenly (one accept queue each) and a dead
worker's share goes to the others until its replacement listens. The
supervisor holds the port bound (not listening) so that port 0 picks one port
for all and a port in use (by anything, another gateway with workers too) is a
one-line error before any worker starts.

A worker that dies is started again (after 0.5 s, doubling up to 10 s while it
keeps dying young); its row of counts is zeroed first, so nothing it had in
flight stays counted. SIGTERM (or SIGINT) goes on to every worker, each drains
as a single gateway does (uvicorn's graceful shutdown), then the supervisor
exits. A worker whose supervisor is gone stops too.

Metrics: prometheus_client's multiprocess mode (``gateway.metrics``), one
directory per supervisor, removed at exit: a scrape answered by any worker
has the whole gateway's series, under the names of a single gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import mmap
import multiprocessing
import os
import pickle
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from multiprocessing.reduction import DupFd
from typing import Any

import aiohttp
from fastapi import FastAPI
from prometheus_client import multiprocess

from brix.serving import bind_host, print_ready
from gateway.load import LoadTracker, SidecarPoller
from gateway.settings import GatewaySettings
from gateway.shared_load import Columns, SharedCounts, SharedLoadTracker, reusable
from gateway.table import Key, Kind, RoutingTable, State

log = logging.getLogger("gateway.workers")

KINDS: tuple[Kind, ...] = ("pods", "deployments", "adapters")
TICK = 0.25
"""Seconds between the supervisor's looks at what it does not hear of (polled queues,
listings done, workers' acknowledgements)."""
RESTART_MIN, RESTART_MAX, YOUNG = 0.5, 10.0, 10.0
"""A dead worker is restarted after RESTART_MIN s, doubling to RESTART_MAX while it
dies within YOUNG s of starting."""

DRAIN = 10
"""Seconds a worker drains its requests after SIGTERM (brix.serving's graceful shutdown)."""
_READY = "ready"
_LENGTH = struct.Struct("!Q")


def restart_delay(previous: float | None, lived: float) -> float:
    """Seconds to wait before starting a dead worker again: RESTART_MIN after its first
    death or a life longer than YOUNG s, else twice the ``previous`` delay, at most
    RESTART_MAX."""
    if previous is None or lived > YOUNG:
        return RESTART_MIN
    return min(previous * 2, RESTART_MAX)


@dataclass(frozen=True)
class Update:
    """What the supervisor knows, as a worker applies it."""

    version: int
    objects: dict[Kind, dict[Key, State]]
    columns: dict[str, int]
    queues: dict[str, tuple[int, int]]
    kv_cache: dict[str, float]
    synced: frozenset[str] | None
    """Kinds listed from Kubernetes so far; None without discovery."""


def frame(message: object) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


async def read_frame(reader: asyncio.StreamReader) -> Any:
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    # A pickle from the process that started this one, running the same code.
    return pickle.loads(await reader.readexactly(length))  # noqa: S301


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with SO_REUSEPORT (not yet listening)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


# --- the worker's end ---------------------------------------------------------

@dataclass
class WorkerSpec:
    """What a worker process is started with (pickled into it)."""

    settings: GatewaySettings
    index: int
    workers: int
    host: str
    port: int
    memory: Any  # a DupFd of the shared memory's file descriptor
    link: socket.socket


class _MirroredDiscovery:
    """What /health reads of discovery (``synced``), as the supervisor reports it."""

    def __init__(self) -> None:
        self.synced: dict[str, threading.Event] = {kind: threading.Event() for kind in KINDS}


class WorkerLink:
    """A worker's end of its supervisor: the shared counts, the table's updates."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        fd = spec.memory.detach()
        self._memory = mmap.mmap(fd, SharedCounts.size(spec.workers))
        os.close(fd)
        self.counts = SharedCounts(self._memory, workers=spec.workers)
        self.tracker = SharedLoadTracker(self.counts, spec.index)
        self._writer: asyncio.StreamWriter | None = None

    def listener(self) -> socket.socket:
        return reuseport_socket(self.spec.host, self.spec.port)

    def ready(self, host: str, port: int) -> None:
        """Serving: tell the supervisor (it prints the one ready line for all)."""
        if self._writer is not None:
            self._writer.write(frame(_READY))

    def apply(self, update: Update, table: RoutingTable, app: FastAPI) -> None:
        for kind in KINDS:
            table.replace(kind, update.objects[kind])
        tracker = self.tracker
        tracker.set_columns(update.columns, update.version)
        tracker.queues, tracker.kv_cache = update.queues, update.kv_cache
        if update.synced is not None:
            mirror = getattr(app.state, "discovery", None)
            if not isinstance(mirror, _MirroredDiscovery):
                mirror = app.state.discovery = _MirroredDiscovery()
            for listed in update.synced:
                mirror.synced[listed].set()

    def lifespan(self, table: RoutingTable) -> Callable[[FastAPI],
                                                        AbstractAsyncContextManager[None]]:
        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            reader, self._writer = await asyncio.open_unix_connection(sock=self.spec.link)
            # Serve nothing before the first update: the routes come from it.
            self.apply(await read_frame(reader), table, app)
            follow = asyncio.create_task(self._follow(reader, table, app), name="updates")
            try:
                yield
            finally:
                follow.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follow
                self._writer.close()

        return lifespan

    async def _follow(self, reader: asyncio.StreamReader, table: RoutingTable,
                      app: FastAPI) -> None:
        try:
            while True:
                self.apply(await read_frame(reader), table, app)
        except (asyncio.IncompleteReadError, ConnectionError):
            log.error("worker %d: the supervisor is gone; stopping", self.spec.index)
            os.kill(os.getpid(), signal.SIGTERM)


# --- the supervisor -------------------------------------------------------------

@dataclass
class _Slot:
    index: int
    process: BaseProcess
    writer: asyncio.StreamWriter
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    sent: int | None = None
    ready: bool = False


class Supervisor:
    """Discovery, the poller and N workers, until SIGTERM/SIGINT."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        table: RoutingTable,
        watch: bool,
        target: str,
    ) -> None:
        self.settings = settings
        self.table = table
        self.watch = watch
        self.target = target
        self.n = settings.workers
        self.tracker = LoadTracker()
        self.columns = Columns()
        self.version = 0
        self.slots: dict[int, _Slot] = {}
        self.stopping = False
        self._update: Update | None = None
        self._frame = b""
        self._announced = False
        self._discovery: Any = None

    # --- state -> workers ---

    def refresh(self) -> bool:
        """Take in what changed (table, polls, listings); True when workers need an update."""
        objects = {kind: self.table.objects(kind) for kind in KINDS}
        last = self._update
        columns = last.columns if last else {}
        version = last.version if last else 0
        if last is None or objects != last.objects:
            version += 1
            columns = self.columns.assign({e.url for e in self.table.endpoints()}, version)
            if self.columns.unplaced:
                log.warning("%d endpoints beyond the shared counts' capacity: each worker "
                            "counts only its own requests to them", len(self.columns.unplaced))
        synced = None
        if self._discovery is not None:
            synced = frozenset(k for k, e in self._discovery.synced.items() if e.is_set())
        update = Update(version, objects, columns, dict(self.tracker.queues),
                        dict(self.tracker.kv_cache), synced)
        if update == last:
            return False
        self._update, self._frame = update, frame(update)
        return True

    def release_columns(self) -> None:
        sent = {i: s.sent for i, s in self.slots.items() if s.sent is not None}
        self.columns.release(lambda col, version: reusable(self.counts, col, version, sent))

    def follow_interest(self) -> None:
        """Workers routed on queues: wake (or keep awake) the poller."""
        wanted = self.counts.wanted_at()  # 0: no worker has asked yet
        if wanted > 0 and wanted > self.tracker.queues_wanted_at:
            self.tracker.queues_wanted_at = wanted
            self.tracker.queues_wanted.set()

    async def _publish(self) -> None:
        while True:
            changed = self.table.changed()
            if self.refresh():
                for slot in self.slots.values():
                    slot.wake.set()
            self.release_columns()
            self.follow_interest()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), TICK)

    async def _feed(self, slot: _Slot) -> None:
        while True:
            await slot.wake.wait()
            slot.wake.clear()
            assert self._update is not None
            slot.writer.write(self._frame)
            slot.sent = self._update.version
            await slot.writer.drain()

    async def _listen(self, slot: _Slot, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                if await read_frame(reader) == _READY:
                    slot.ready = True
                    if not self._announced and len(self.slots) == self.n and all(
                            s.ready for s in self.slots.values()):
                        self._announced = True
                        print_ready("brix gateway", "http", self.host, self.port)

    # --- workers ---

    async def _start(self, index: int) -> tuple[_Slot, list[asyncio.Task[None]]]:
        ours, theirs = socket.socketpair()
        spec = WorkerSpec(self.settings, index, self.n, self.host, self.port,
                          DupFd(self.memfd), theirs)
        process = multiprocessing.get_context("spawn").Process(
            target=_run_worker, args=(self.target, spec), name=f"gateway-worker-{index}",
            daemon=True)
        process.start()
        theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        slot = _Slot(index, process, writer)
        slot.wake.set()
        self.slots[index] = slot
        return slot, [asyncio.create_task(self._feed(slot)),
                      asyncio.create_task(self._listen(slot, reader))]

    async def _exited(self, process: BaseProcess) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def exited() -> None:
            if not done.done():
                done.set_result(None)

        loop.add_reader(process.sentinel, exited)
        try:
            await done
        finally:
            loop.remove_reader(process.sentinel)
        process.join()

    async def _keep(self, index: int) -> None:
        """Worker ``index``, started again each time it dies, until stopping."""
        loop = asyncio.get_running_loop()
        backoff: float | None = None
        while not self.stopping:
            born = loop.time()
            slot, tasks = await self._start(index)
            try:
                await self._exited(slot.process)
            finally:
                for task in tasks:
                    task.cancel()
                slot.writer.close()
                # Dead: nothing it had in flight counts any more, its gauges neither.
                self.counts.clear(index)
                if slot.process.pid is not None:
                    multiprocess.mark_process_dead(  # type: ignore[no-untyped-call]
                        slot.process.pid, self.metrics_dir)
            if self.stopping:
                return
            backoff = restart_delay(backoff, loop.time() - born)
            log.warning("worker %d (pid %s) exited with %s; starting another in %.1fs",
                        index, slot.process.pid, slot.process.exitcode, backoff)
            await asyncio.sleep(backoff)

    # --- the whole ---

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        tasks: list[asyncio.Task[None]] = []
        session = aiohttp.ClientSession()
        if self.watch:
            from gateway.discovery import Discovery, api_client

            self._discovery = Discovery(self.table, loop, api_client(self.settings.kubeconfig),
                                        namespaces=self.settings.namespaces)
            self._discovery.start()
        poller = SidecarPoller(self.tracker, self.table.endpoints,
                               interval=self.settings.sidecar_poll_interval, client=session,
                               idle_after=self.settings.sidecar_poll_idle or None)
        tasks.append(asyncio.create_task(poller.run(), name="sidecar-poller"))
        self.refresh()
        tasks.append(asyncio.create_task(self._publish(), name="publish"))
        keepers = [asyncio.create_task(self._keep(i), name=f"worker-{i}") for i in range(self.n)]
        try:
            await stop.wait()
            log.info("stopping: draining %d workers", self.n)
            self.stopping = True
            for slot in self.slots.values():
                if slot.process.is_alive():
                    slot.process.terminate()
            _, late = await asyncio.wait(keepers, timeout=DRAIN + 5)
            for slot in self.slots.values():
                if slot.process.is_alive():
                    slot.process.kill()
            if late:
                await asyncio.wait(late, timeout=5)
        finally:
            for task in [*tasks, *keepers]:
                task.cancel()
            await asyncio.gather(*tasks, *keepers, return_exceptions=True)
            if self._discovery is not None:
                self._discovery.stop()
            await session.close()
        return 0

    def open(self) -> None:
        """Reserve the port, make the shared memory and the metrics directory."""
        self.host = bind_host(self.settings.host)
        # First without SO_REUSEPORT, which would let this gateway join the port of
        # another one running with --workers: a port in use must be an error.
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((self.host, self.settings.port))
            port = int(probe.getsockname()[1])
        self.reserved = reuseport_socket(self.host, port)
        self.port = port
        self.memfd = os.memfd_create("brix-gateway-load", 0)
        size = SharedCounts.size(self.n)
        os.ftruncate(self.memfd, size)
        self.memory = mmap.mmap(self.memfd, size)
        self.counts = SharedCounts(self.memory, workers=self.n)
        self.metrics_dir = tempfile.mkdtemp(prefix="brix-gateway-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = self.metrics_dir  # the workers inherit it

    def close(self) -> None:
        self.counts.close()
        self.memory.close()
        os.close(self.memfd)
        self.reserved.close()
        shutil.rmtree(self.metrics_dir, ignore_errors=True)
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)


def _run_worker(target: str, spec: WorkerSpec) -> None:
    # By name: a function of a ``__main__`` module (``python -m gateway``) cannot be
    # found by name in a spawned process, which does not run that module.
    module, _, name = target.partition(":")
    getattr(importlib.import_module(module), name)(spec)


def supervise(settings: GatewaySettings, *, table: RoutingTable, watch: bool,
              target: str) -> int:
    """Run ``settings.workers`` workers under one supervisor, each calling ``target``
    (``"module:function"``) with its ``WorkerSpec`` in a process of its own."""
    supervisor = Supervisor(settings, table=table, watch=watch, target=target)
    try:
        supervisor.open()
    except OSError as exc:
        print(f"brix gateway: could not listen on {bind_host(settings.host)}:{settings.port} "
              f"({exc.strerror or exc}; is the port in use? pick another with --port)",
              file=sys.stderr)
        return 1
    try:
        return asyncio.run(supervisor.run())
    finally:
        supervisor.close()
