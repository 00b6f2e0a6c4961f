"""One pod's life on the node: address, environment, volumes, processes, probes, status.

A ``PodWorker`` runs each container's command (``command`` + ``args``, with
``$(VAR)`` expanded) as a process in the project's virtual environment. The
image is not used: localkube has no container runtime, so a pod's command
must be something the virtual environment can run (``python -m ...``, a
console script). Each container gets the pod's own loopback address as
``BIND_HOST``/``POD_IP`` (127.0.0.1 with ``hostNetwork``), ``KUBECONFIG``, and its
``env``/``envFrom``; its working
directory is ``<state_dir>/pods/<ns>/<pod>-<uid>/containers/<container>`` unless its
``workingDir`` exists. Probes drive the Ready condition and restarts; the
``restartPolicy`` decides restarts, with a doubling back-off. Init containers
run first, one after the other, each to completion. When the pod is
deleted its processes get SIGTERM, then SIGKILL after the grace period, and the
worker removes the pod object for good.

Not applied, for want of containers: the image, ``securityContext`` (processes
run as localkube's user), resource limits, and read-only mounts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiohttp

from localkube.node import processes
from localkube.node.addresses import AddressPool
from localkube.node.client import CONFIGMAPS, PODS, SECRETS, ApiClient, ApiError, JsonObj
from localkube.node.config import HOST_IP, NODE_NAME, NODE_STOP_GRACE_SECONDS, NodeConfig, log_path
from localkube.node.envbuild import EnvError, PodFacts, build_env
from localkube.node.envbuild import referenced_names as env_references
from localkube.node.events import EventRecorder
from localkube.node.expansion import expand_all
from localkube.node.podstatus import (
    BACKOFF_RESET_SECONDS,
    ContainerRecord,
    now_rfc3339,
    pod_status,
    restart_delay,
    should_restart,
)
from localkube.node.probes import ProbeKind, ProbeSpec, ProbeState, ProbeTarget, run_probe
from localkube.node.volumes import (
    Mounts,
    VolumeError,
    link_mounts,
    make_volumes,
    remove_links,
)
from localkube.node.volumes import referenced_names as volume_references

log = logging.getLogger(__name__)

CONFIG_RETRY_SECONDS: Final = 2.0
PASSED_ENV: Final = ("HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME", "TERM")


@dataclass
class NodeContext:
    """What every pod worker shares."""

    api: ApiClient
    config: NodeConfig
    pool: AddressPool
    http: aiohttp.ClientSession
    events: EventRecorder
    stopping: asyncio.Event
    name_taken: Callable[[str, str, str], bool] = lambda _ns, _name, _uid: False
    """Whether another pod object (another uid) of this namespace and name is on the node."""


def base_environment(config: NodeConfig) -> dict[str, str]:
    """The process environment under a container's own variables."""
    bindir = os.path.dirname(os.path.abspath(config.python))
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    env["PATH"] = os.pathsep.join([bindir, os.environ.get("PATH", os.defpath)])
    venv = os.path.dirname(bindir)
    if os.path.exists(os.path.join(venv, "pyvenv.cfg")):
        env["VIRTUAL_ENV"] = venv
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Prepared:
    env: dict[str, str]
    argv: list[str]
    cwd: Path
    target: ProbeTarget


class PodWorker:
    def __init__(self, ctx: NodeContext, pod: JsonObj) -> None:
        meta = pod.get("metadata") or {}
        self.ctx = ctx
        self.pod = pod
        self.uid = str(meta.get("uid", ""))
        self.namespace = str(meta.get("namespace") or "default")
        self.name = str(meta.get("name", ""))
        self.terminate = asyncio.Event()
        self.gone = False
        self._dirty = asyncio.Event()
        spec = pod.get("spec") or {}
        previous = {c.get("name"): c for c in
                    (pod.get("status") or {}).get("containerStatuses") or []}
        initializing = bool(spec.get("initContainers"))
        self.records = [
            ContainerRecord(name=str(c.get("name", "")), image=str(c.get("image", "")),
                            restart_count=int((previous.get(c.get("name")) or {})
                                              .get("restartCount") or 0),
                            waiting_reason="PodInitializing" if initializing
                            else "ContainerCreating")
            for c in spec.get("containers") or []
        ]
        self.init_records = [ContainerRecord(name=str(c.get("name", "")),
                                             image=str(c.get("image", "")))
                             for c in spec.get("initContainers") or []]
        self.ip = ""
        self.start_time = str((pod.get("status") or {}).get("startTime") or now_rfc3339())
        self._last_status: JsonObj = dict(pod.get("status") or {})
        self.pod_dir = (ctx.config.state_dir / "pods" / self.namespace
                        / f"{self.name}-{self.uid[:8]}")
        self.mounts = Mounts()
        if meta.get("deletionTimestamp"):
            self.terminate.set()

    # --- events from the kubelet ---------------------------------------------

    def update(self, pod: JsonObj) -> None:
        self.pod = pod
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            self.terminate.set()

    def vanish(self) -> None:
        """The pod object is gone from the API (deleted without a grace period)."""
        self.gone = True
        self.terminate.set()

    def grace(self) -> float:
        meta = self.pod.get("metadata") or {}
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = (self.pod.get("spec") or {}).get("terminationGracePeriodSeconds")
        seconds = 30.0 if grace is None else float(grace)
        if self.ctx.stopping.is_set():
            seconds = min(seconds, NODE_STOP_GRACE_SECONDS)
        return seconds

    def mark(self) -> None:
        """The status changed: write it soon."""
        self._dirty.set()

    # --- the life of the pod -------------------------------------------------

    async def run(self) -> None:
        writer = asyncio.create_task(self._status_writer())
        try:
            await self._run()
        finally:
            await self._flush_status(writer)
            remove_links(self.mounts, self.pod_dir)
            self.ctx.pool.release(self.uid)
        if self.ctx.stopping.is_set():
            return
        await self._remove()

    async def _run(self) -> None:
        phase = (self.pod.get("status") or {}).get("phase")
        if self.terminate.is_set():
            return
        if phase in ("Succeeded", "Failed"):
            await self.terminate.wait()
            return
        if (self.pod.get("spec") or {}).get("hostNetwork"):
            self.ip = HOST_IP  # the node's own address, as in a cluster
        else:
            self.ip = self.ctx.pool.acquire(self.uid,
                                            (self.pod.get("status") or {}).get("podIP"))
        await self._bind_node()
        if not (self.pod.get("status") or {}).get("podIP"):
            self.ctx.events.pod(self.pod, "Scheduled", f"Successfully assigned "
                                f"{self.namespace}/{self.name} to {NODE_NAME}",
                                component="default-scheduler")
        self.mark()
        prepared = await self._prepare_until_ready()
        if prepared is None:
            return
        if not await self._run_init_containers(prepared):
            self.mark()
            await self.terminate.wait()
            return
        runners = [ContainerRunner(self, c, rec, prepared[rec.name])
                   for c, rec in zip((self.pod.get("spec") or {}).get("containers") or [],
                                     self.records, strict=True)]
        results = await asyncio.gather(*(r.run() for r in runners), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.error("pod %s/%s: container runner failed: %r", self.namespace, self.name,
                          result)
        self.mark()
        await self.terminate.wait()

    async def _run_init_containers(self, prepared: dict[str, Prepared]) -> bool:
        """Run each init container to completion, in order; False if the pod cannot go on.

        A failed init container is retried (with back-off) unless the pod's
        restartPolicy is Never, which fails the pod.
        """
        pod_policy = str((self.pod.get("spec") or {}).get("restartPolicy") or "Always")
        policy = "Never" if pod_policy == "Never" else "OnFailure"
        for c, rec in zip((self.pod.get("spec") or {}).get("initContainers") or [],
                          self.init_records, strict=True):
            runner = ContainerRunner(self, c, rec, prepared[f"init:{rec.name}"],
                                     policy=policy, init=True)
            await runner.run()
            if self.terminate.is_set() or rec.exit_code != 0:
                return False
        return True

    async def _bind_node(self) -> None:
        """Give the pod its node name if it has none (best effort: a single-node cluster)."""
        if (self.pod.get("spec") or {}).get("nodeName"):
            return
        try:
            await self.ctx.api.patch(PODS, self.namespace, self.name,
                                     {"spec": {"nodeName": NODE_NAME}})
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            log.debug("pod %s/%s: nodeName not set: %s", self.namespace, self.name, exc)

    async def _prepare_until_ready(self) -> dict[str, Prepared] | None:
        last_error = ""
        while not self.terminate.is_set():
            try:
                return await self._prepare()
            except (EnvError, VolumeError, processes.StartError, ApiError,
                    aiohttp.ClientError, TimeoutError, OSError) as exc:
                message = str(exc) or type(exc).__name__
                for rec in [*self.init_records, *self.records]:
                    rec.state, rec.waiting_reason = "waiting", "CreateContainerConfigError"
                    rec.waiting_message = message
                self.mark()
                if message != last_error:
                    self.ctx.events.pod(self.pod, "Failed", f"Error: {message}", warning=True)
                    last_error = message
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.terminate.wait(), CONFIG_RETRY_SECONDS)
        return None

    async def _fetch(self, names: set[str], secret: bool) -> dict[str, JsonObj]:
        out: dict[str, JsonObj] = {}
        for name in sorted(names):
            try:
                out[name] = await self.ctx.api.get(SECRETS if secret else CONFIGMAPS,
                                                   self.namespace, name)
            except ApiError as exc:
                if exc.status != 404:
                    raise
        return out

    async def _prepare(self) -> dict[str, Prepared]:
        env_cms, env_secrets = env_references(self.pod)
        vol_cms, vol_secrets = volume_references(self.pod)
        configmaps = await self._fetch(env_cms | vol_cms, secret=False)
        secrets = await self._fetch(env_secrets | vol_secrets, secret=True)
        config = self.ctx.config
        facts = PodFacts.of(self.pod, pod_ip=self.ip, host_ip=HOST_IP, node_name=NODE_NAME)
        node_vars = {"BIND_HOST": self.ip, "POD_IP": self.ip,
                     "KUBECONFIG": str(config.kubeconfig), "HOSTNAME": self.name}
        allocatable = {"cpu": str(os.cpu_count() or 1), "memory": _memory_bytes()}
        volumes = make_volumes(self.pod, self.pod_dir, configmaps=configmaps, secrets=secrets)
        base = base_environment(config)
        out: dict[str, Prepared] = {}
        spec = self.pod.get("spec") or {}
        tagged = [(f"init:{c.get('name', '')}", c) for c in spec.get("initContainers") or []]
        tagged += [(str(c.get("name", "")), c) for c in spec.get("containers") or []]
        for key, c in tagged:
            name = str(c.get("name", ""))
            env = build_env(c, facts, node_vars=node_vars, configmaps=configmaps,
                            secrets=secrets, node_allocatable=allocatable)
            command = [str(x) for x in c.get("command") or []]
            args = [str(x) for x in c.get("args") or []]
            if not command and not args:
                raise processes.StartError(
                    f"container {name!r} has no command or args: localkube does not use "
                    "images, so the command to run must be given")
            argv = expand_all(command + args, env)
            link_mounts(c, volumes, config.state_dir, self.mounts)
            cwd = self.pod_dir / "containers" / name
            cwd.mkdir(parents=True, exist_ok=True)
            working_dir = Path(str(c.get("workingDir") or cwd))
            if working_dir.is_dir():  # noqa: ASYNC240 - a stat, once per container start
                cwd = working_dir
            ports = {str(p["name"]): int(p["containerPort"]) for p in c.get("ports") or []
                     if p.get("name") and p.get("containerPort")}
            full_env = {**base, **env}
            out[key] = Prepared(env=full_env, argv=argv, cwd=cwd,
                                 target=ProbeTarget(pod_ip=self.ip, ports=ports, env=full_env,
                                                    cwd=cwd))
        if self.mounts.not_linked:
            log.info("pod %s/%s: mount paths not linked (exist or not writable): %s",
                     self.namespace, self.name, ", ".join(self.mounts.not_linked))
        return out

    # --- status ----------------------------------------------------------------

    def status(self) -> JsonObj:
        policy = str((self.pod.get("spec") or {}).get("restartPolicy") or "Always")
        return pod_status(self.records, restart_policy=policy, pod_ip=self.ip, host_ip=HOST_IP,
                          start_time=self.start_time, previous=self._last_status,
                          init_records=self.init_records)

    async def _status_writer(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(0.02)  # one write for a burst of changes
            self._dirty.clear()
            await self._write_status()

    async def _write_status(self) -> None:
        if self.gone or self.ctx.stopping.is_set() or not self.ip:
            return
        if (self.pod.get("metadata") or {}).get("deletionTimestamp"):
            # While the grace period runs, the pod's status is left as it was: localkube's
            # API server removes an object being deleted on any write to it (Kubernetes
            # keeps a pod with a grace period), so a write here would cut the grace short.
            return
        status = self.status()
        if status == self._last_status:
            return
        try:
            await self.ctx.api.patch(PODS, self.namespace, self.name, {"status": status},
                                     subresource="status")
            self._last_status = status
        except ApiError as exc:
            if exc.status == 404:
                self.gone = True
                return
            log.warning("pod %s/%s: status not written: %s", self.namespace, self.name, exc)
            self._retry_status()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("pod %s/%s: status not written: %s", self.namespace, self.name, exc)
            self._retry_status()

    def _retry_status(self) -> None:
        asyncio.get_running_loop().call_later(1.0, self._dirty.set)

    async def _flush_status(self, writer: asyncio.Task[None]) -> None:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        if self._dirty.is_set():
            await self._write_status()

    async def _remove(self) -> None:
        """Delete the pod object for good, and what the node kept for it."""
        if not self.gone:
            try:
                await self.ctx.api.delete(PODS, self.namespace, self.name,
                                          grace_period_seconds=0, uid=self.uid)
            except ApiError as exc:
                if exc.status not in (404, 409):
                    log.warning("pod %s/%s not deleted: %s", self.namespace, self.name, exc)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("pod %s/%s not deleted: %s", self.namespace, self.name, exc)
        self.ctx.events.forget(self.uid)
        shutil.rmtree(self.pod_dir, ignore_errors=True)
        if not self.ctx.name_taken(self.namespace, self.name, self.uid):
            # The logs' path has no uid: a new pod of the same name writes there now.
            shutil.rmtree(self.ctx.config.state_dir / "logs" / self.namespace / self.name,
                          ignore_errors=True)


def _memory_bytes() -> str:
    try:
        return str(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError):
        return "0"


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
            if proc is not None and proc.returncode is None:
                await processes.stop_group(proc, 0.0)

    async def _run(self) -> None:
        w = self.worker
        quick_restarts = 0
        log_file = log_path(w.ctx.config.state_dir, w.namespace, w.name, self.rec.name)
        while not w.terminate.is_set():
            started = time.monotonic()
            try:
                proc = await processes.start(self.prep.argv, env=self.prep.env,
                                             cwd=self.prep.cwd, log_path=log_file)
            except processes.StartError as exc:
                code: int | None = 128
                self._terminated(128, None, "StartError", str(exc))
                w.ctx.events.pod(w.pod, "Failed", f"Error: {exc}", warning=True,
                                 field_path=self.field_path)
            else:
                self.proc = proc
                self.rec.state, self.rec.pid = "running", proc.pid
                self.rec.started_at = now_rfc3339()
                self.rec.started = self.startup is None
                self.rec.ready = self.rec.started and self.readiness is None
                w.mark()
                w.ctx.events.pod(w.pod, "Started", f"Started container {self.rec.name}",
                                 field_path=self.field_path)
                code = await self._supervise(proc)
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
                await asyncio.wait_for(w.terminate.wait(), delay)
            if w.terminate.is_set():
                return
            self.rec.restart_count += 1

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
            await asyncio.gather(*probes, failing, deleting, return_exceptions=True)
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

