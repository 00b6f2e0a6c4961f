"""One pod's life on the node: address, environment, volumes, containers, status.

A ``PodWorker`` runs each container's command (``command`` + ``args``, with
``$(VAR)`` expanded) as a process in the project's virtual environment
(``containers.ContainerRunner``). The image is not used: localkube has no
container runtime, so a pod's command must be something the virtual
environment can run (``python -m ...``, a console script). Each container gets
the pod's own loopback address as ``BIND_HOST``/``POD_IP`` (127.0.0.1 with
``hostNetwork``), its own ``TMPDIR`` and ServiceAccount (``identity``), and its
``env``/``envFrom``; its working
directory is ``<state_dir>/pods/<ns>/<pod>-<uid>/containers/<container>`` unless
its ``workingDir`` exists. Probes drive the Ready condition and restarts; the
``restartPolicy`` decides restarts, with a doubling back-off. Init containers
run first, one after the other, each to completion. When the pod is deleted its
processes get SIGTERM, then SIGKILL after the grace period, and the worker
removes the pod object for good.

Not applied, for want of containers: the image, ``securityContext`` (processes
run as localkube's user), resource limits, and read-only mounts. With
``--runtime podman`` (``runtime.PodmanRuntime``) containers run from their
images instead, and those apply (but resource limits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import aiohttp

from localkube.node import processes
from localkube.node.addresses import AddressPool
from localkube.node.client import CONFIGMAPS, PODS, SECRETS, ApiClient, ApiError, JsonObj
from localkube.node.config import HOST_IP, NODE_NAME, NODE_STOP_GRACE_SECONDS, NodeConfig
from localkube.node.containers import ContainerRunner, Prepared
from localkube.node.envbuild import EnvError, PodFacts, build_env
from localkube.node.envbuild import referenced_names as env_references
from localkube.node.events import EventRecorder
from localkube.node.expansion import expand_all
from localkube.node.identity import prepare as pod_identity
from localkube.node.identity import release as release_tmp
from localkube.node.podstatus import ContainerRecord, now_rfc3339, pod_status
from localkube.node.probes import ProbeTarget
from localkube.node.runtime import PodRef, ProcessRuntime, Runtime, check_mounts
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
    live_groups: set[int] = field(default_factory=set)
    """Process groups of the containers running now (the last resort on shutdown)."""
    runtime: Runtime = field(default_factory=ProcessRuntime)
    """How containers start: local processes (the default) or podman (``runtime``)."""


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
            await self.ctx.runtime.pod_finished(PodRef(self.namespace, self.name, self.uid))
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
                async with asyncio.timeout(CONFIG_RETRY_SECONDS):
                    await self.terminate.wait()
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
        identity = await pod_identity(self.ctx.api, self.pod, self.pod_dir,
                                      api_url=config.api_url, ca_file=config.ca_file)
        node_vars = {"BIND_HOST": self.ip, "POD_IP": self.ip, "HOSTNAME": self.name,
                     **identity.env}
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
            if not command and not args and not self.ctx.runtime.uses_images:
                raise processes.StartError(
                    f"container {name!r} has no command or args: localkube does not use "
                    "images, so the command to run must be given")
            argv = expand_all(command + args, env)
            if self.ctx.runtime.uses_images:  # a container runtime mounts them itself
                check_mounts(c, volumes)
            else:
                link_mounts(c, volumes, config.state_dir, self.mounts)
            cwd = self.pod_dir / "containers" / name
            cwd.mkdir(parents=True, exist_ok=True)
            working_dir = Path(str(c.get("workingDir") or cwd))
            if working_dir.is_dir():  # noqa: ASYNC240 - a stat, once per container start
                cwd = working_dir
            ports = {str(p["name"]): int(p["containerPort"]) for p in c.get("ports") or []
                     if p.get("name") and p.get("containerPort")}
            full_env = {**base, **env}
            # A container runtime mounts the ServiceAccount itself; processes get a
            # mount namespace that shows it.
            uses_images = self.ctx.runtime.uses_images
            out[key] = Prepared(env=full_env,
                                argv=argv if uses_images else identity.wrap(argv, full_env, cwd),
                                cwd=cwd,
                                target=ProbeTarget(pod_ip=self.ip, ports=ports, env=full_env,
                                                   cwd=cwd),
                                container_env=env, volumes=dict(volumes), pod_spec=spec,
                                account_dir=identity.account_dir)
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
        release_tmp(self.uid)
        if not self.ctx.name_taken(self.namespace, self.name, self.uid):
            # The logs' path has no uid: a new pod of the same name writes there now.
            shutil.rmtree(self.ctx.config.state_dir / "logs" / self.namespace / self.name,
                          ignore_errors=True)


def _memory_bytes() -> str:
    try:
        return str(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError):
        return "0"
