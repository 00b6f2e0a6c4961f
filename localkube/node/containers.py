"""One container of a pod: start its process, supervise it with its probes, restart it
as the restart policy says (with a doubling back-off), stop it when the pod goes.

A ``ContainerRunner`` belongs to a ``PodWorker`` (``podworker``), which prepares
its command, environment and working directory (``Prepared``) and writes the
pod's status whenever the runner changes its ``ContainerRecord``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from localkube.node import processes
from localkube.node.client import JsonObj
from localkube.node.config import log_path
from localkube.node.podstatus import (
    BACKOFF_RESET_SECONDS,
    ContainerRecord,
    now_rfc3339,
    restart_delay,
    should_restart,
)
from localkube.node.probes import ProbeKind, ProbeSpec, ProbeState, ProbeTarget, run_probe
from localkube.node.runtime import ImagePullError, PodRef

if TYPE_CHECKING:
    from localkube.node.podworker import PodWorker

PROBE_STOP_SECONDS: Final = 2.0


@dataclass
class Prepared:
    env: dict[str, str]
    argv: list[str]
    cwd: Path
    target: ProbeTarget
    container_env: dict[str, str] = field(default_factory=dict)
    """The container's own variables (``env`` without the node's process environment)."""
    volumes: dict[str, Path] = field(default_factory=dict)
    pod_spec: JsonObj = field(default_factory=dict)
    account_dir: Path | None = None
    """The pod's ServiceAccount files, for a runtime that mounts them itself (None: none)."""


class ContainerRunner:
    """One container: start, supervise (probes), restart per policy, stop on deletion."""

    def __init__(self, worker: PodWorker, container: JsonObj, record: ContainerRecord,
                 prepared: Prepared, *, policy: str | None = None, init: bool = False) -> None:
        self.worker = worker
        self._policy = policy
        self.container = container
        self.rec = record
        self.prep = prepared
        self.startup = ProbeSpec.parse(container.get("startupProbe"), "startup")
        self.readiness = ProbeSpec.parse(container.get("readinessProbe"), "readiness")
        self.liveness = ProbeSpec.parse(container.get("livenessProbe"), "liveness")
        kind = "initContainers" if init else "containers"
        self.field_path = f"spec.{kind}{{{record.name}}}"
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def policy(self) -> str:
        if self._policy is not None:
            return self._policy
        return str((self.worker.pod.get("spec") or {}).get("restartPolicy") or "Always")

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            proc = self.proc
            if proc is not None:
                if proc.returncode is None:
                    await processes.stop_group(proc, 0.0)
                self.worker.ctx.live_groups.discard(proc.pid)

    async def _run(self) -> None:
        w = self.worker
        quick_restarts = 0
        log_file = log_path(w.ctx.config.state_dir, w.namespace, w.name, self.rec.name)
        while not w.terminate.is_set():
            started = time.monotonic()
            try:
                proc = await w.ctx.runtime.start(PodRef(w.namespace, w.name, w.uid),
                                                 self.container, self.prep, log_file)
            except ImagePullError as exc:
                quick_restarts += 1
                await self._image_back_off(exc, restart_delay(quick_restarts))
                continue
            except processes.StartError as exc:
                code: int | None = 128
                self._terminated(128, None, "StartError", str(exc))
                w.ctx.events.pod(w.pod, "Failed", f"Error: {exc}", warning=True,
                                 field_path=self.field_path)
            else:
                self.proc = proc
                w.ctx.live_groups.add(proc.pid)
                self.rec.state, self.rec.pid = "running", proc.pid
                self.rec.started_at = now_rfc3339()
                self.rec.started = self.startup is None
                self.rec.ready = self.rec.started and self.readiness is None
                w.mark()
                w.ctx.events.pod(w.pod, "Started", f"Started container {self.rec.name}",
                                 field_path=self.field_path)
                code = await self._supervise(proc)
                w.ctx.live_groups.discard(proc.pid)
            if code is None or w.terminate.is_set():
                return
            if not should_restart(self.policy, code):
                w.mark()
                return
            if time.monotonic() - started > BACKOFF_RESET_SECONDS:
                quick_restarts = 0
            quick_restarts += 1
            delay = restart_delay(quick_restarts)
            self.rec.last_terminated = self.rec.terminated_state()
            self.rec.state, self.rec.waiting_reason = "waiting", "CrashLoopBackOff"
            self.rec.waiting_message = (f"back-off {delay:g}s restarting failed "
                                        f"container={self.rec.name} pod={w.name}")
            w.mark()
            w.ctx.events.pod(w.pod, "BackOff", "Back-off restarting failed container "
                             f"{self.rec.name} in pod {w.name}", warning=True,
                             field_path=self.field_path)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await w.terminate.wait()
            if w.terminate.is_set():
                return
            self.rec.restart_count += 1

    async def _image_back_off(self, exc: ImagePullError, delay: float) -> None:
        """ErrImagePull, then ImagePullBackOff for ``delay`` seconds (as a kubelet shows them)."""
        w = self.worker
        self.rec.state, self.rec.waiting_reason = "waiting", "ErrImagePull"
        self.rec.waiting_message = str(exc)
        w.mark()
        w.ctx.events.pod(w.pod, "Failed", f"Failed to pull image \"{exc.image}\": {exc}",
                         warning=True, field_path=self.field_path)
        await asyncio.sleep(0.5)  # long enough for the status to show ErrImagePull
        self.rec.waiting_reason = "ImagePullBackOff"
        self.rec.waiting_message = f'Back-off pulling image "{exc.image}"'
        w.mark()
        w.ctx.events.pod(w.pod, "BackOff", f'Back-off pulling image "{exc.image}"',
                         warning=True, field_path=self.field_path)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await w.terminate.wait()

    def _terminated(self, code: int, sig: int | None, reason: str, message: str = "") -> None:
        rec = self.rec
        rec.state, rec.exit_code, rec.signal = "terminated", code, sig
        rec.terminated_reason = reason or ("Completed" if code == 0 else "Error")
        rec.finished_at = now_rfc3339()
        rec.started_at = rec.started_at or rec.finished_at
        rec.ready = rec.started = False
        rec.terminated_message = message
        self.worker.mark()

    async def _supervise(self, proc: asyncio.subprocess.Process) -> int | None:
        """Wait for the process to end, a probe to fail or the pod to go; the exit code,
        or None when the pod is being deleted (the process has been stopped)."""
        w = self.worker
        failed = asyncio.Event()
        started = asyncio.Event()
        if self.startup is None:
            started.set()
        kinds: tuple[tuple[ProbeKind, ProbeSpec | None], ...] = (
            ("startup", self.startup), ("readiness", self.readiness),
            ("liveness", self.liveness))
        probes = [asyncio.create_task(self._probe_loop(kind, spec, failed, started))
                  for kind, spec in kinds if spec is not None]
        exited = asyncio.create_task(proc.wait())
        failing = asyncio.create_task(failed.wait())
        deleting = asyncio.create_task(w.terminate.wait())
        try:
            await asyncio.wait({exited, failing, deleting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (*probes, failing, deleting):
                task.cancel()
            # Bounded: a helper task slow to take its cancellation must never keep the
            # container's process alive.
            await asyncio.wait({*probes, failing, deleting}, timeout=PROBE_STOP_SECONDS)
        if w.terminate.is_set() and proc.returncode is None:
            w.ctx.events.pod(w.pod, "Killing", f"Stopping container {self.rec.name}",
                             field_path=self.field_path)
            returncode = await processes.stop_group(proc, w.grace())
            code, sig = processes.exit_code(returncode)
            self._terminated(code, sig, "")
            return None
        if proc.returncode is None:  # a liveness or startup probe failed
            w.ctx.events.pod(w.pod, "Killing", f"Container {self.rec.name} failed its "
                             "probe, will be restarted", field_path=self.field_path)
            grace = float((w.pod.get("spec") or {}).get("terminationGracePeriodSeconds") or 30)
            returncode = await processes.stop_group(proc, min(grace, w.grace()))
        else:
            await processes.reap_group(proc)
            returncode = proc.returncode if proc.returncode is not None else -9
        exited.cancel()
        code, sig = processes.exit_code(returncode)
        self._terminated(code, sig, "")
        return code

    async def _probe_loop(self, kind: ProbeKind, spec: ProbeSpec, failed: asyncio.Event,
                          started: asyncio.Event) -> None:
        w = self.worker
        state = ProbeState.initial(spec, kind)
        if kind != "startup":
            await started.wait()
        await asyncio.sleep(spec.initial_delay)
        while True:
            ok, message = await run_probe(spec, self.prep.target, w.ctx.http)
            changed = state.record(ok)
            if not ok:
                w.ctx.events.pod(w.pod, "Unhealthy",
                                 f"{kind.capitalize()} probe failed: {message}", warning=True,
                                 field_path=self.field_path)
            if kind == "startup":
                if not state.passing:
                    failed.set()
                    return
                if ok and state.successes >= spec.success_threshold:
                    self.rec.started = True
                    self.rec.ready = self.readiness is None
                    w.mark()
                    started.set()
                    return
            elif kind == "liveness":
                if not state.passing:
                    failed.set()
                    return
            elif changed or self.rec.ready != state.passing:
                self.rec.ready = state.passing and self.rec.started
                w.mark()
            await asyncio.sleep(spec.period)

