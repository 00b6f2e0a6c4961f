"""One reconcile of one LoraAdapter: gather, plan, apply, confirm, report.

The decisions are :func:`lora_operator.planning.plan`'s; this module only
does the I/O around it: ask each pod's sidecar what it holds, make the calls
the plan asks for, ask again (confirm), and write the status the second plan
computed from that second observation. It returns how long to wait before
the next reconcile (a pod or spec change wakes it earlier).

The deletion path (:func:`finalize`) unloads from every pod that holds the
adapter and reports ``Unloading`` while it does.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from lora_operator.metrics import Report
from lora_operator.model import AdapterSpec, InvalidSpec, Loaded, PodInfo, PodView
from lora_operator.observer import Observer
from lora_operator.planning import Failure, Plan, plan, unloading_status
from lora_operator.settings import Settings
from lora_operator.sidecar import SidecarError, Sidecars
from lora_operator.state import PodIndex, Wakers
from lora_operator.tokens import Tokens

logger = logging.getLogger(__name__)

Key = tuple[str, str]


class Events(Protocol):
    """Where Events about an adapter go (Kopf's event poster in the operator)."""

    def info(self, body: Mapping[str, Any], *, reason: str, message: str) -> None: ...

    def warn(self, body: Mapping[str, Any], *, reason: str, message: str) -> None: ...


class StatusWriter(Protocol):
    async def patch_status(
        self, namespace: str, name: str, status: Mapping[str, Any]) -> bool: ...


class RetryLater(Exception):
    """Finalizing is not done; try again after ``delay`` seconds."""

    def __init__(self, message: str, *, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


@dataclass(frozen=True, slots=True)
class _Refusal:
    source: str
    sha256: str | None
    message: str
    at: float


@dataclass
class Context:
    """Everything a reconcile needs, built once per operator run."""

    settings: Settings
    pods: PodIndex
    wakers: Wakers
    sidecars: Sidecars
    tokens: Tokens
    status: StatusWriter
    events: Events
    observer: Observer
    clock: Callable[[], float] = time.monotonic
    refusals: dict[Key, _Refusal] = field(default_factory=dict)
    # (namespace, pod, adapter) -> (source, sha256) this operator loaded: tells a spec change
    # apart when a sidecar's list does not say which source it holds.
    applied: dict[tuple[str, str, str], tuple[str, str | None]] = field(default_factory=dict)
    failed_attempts: dict[Key, int] = field(default_factory=dict)
    last_failure: dict[tuple[str, str, str], str] = field(default_factory=dict)
    written: dict[Key, dict[str, Any]] = field(default_factory=dict)
    locks: dict[Key, asyncio.Lock] = field(default_factory=dict)
    reports: dict[Key, Report] = field(default_factory=dict)  # read by /metrics
    # The generation each adapter's last reconcile started from: a create/update
    # handler only wakes the loop for a generation it has not seen.
    seen_generation: dict[Key, int] = field(default_factory=dict)

    def lock(self, namespace: str, name: str) -> asyncio.Lock:
        """Serialises the reconciles and the finalizer of one adapter."""
        return self.locks.setdefault((namespace, name), asyncio.Lock())

    def forget(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        for table in (self.refusals, self.failed_attempts, self.written, self.locks,
                      self.reports, self.seen_generation):
            table.pop(key, None)
        for k in [k for k in self.applied if k[0] == namespace and k[2] == name]:
            del self.applied[k]
        for k in [k for k in self.last_failure if k[0] == namespace and k[2] == name]:
            del self.last_failure[k]

    def refused(self, spec: AdapterSpec) -> str | None:
        r = self.refusals.get((spec.namespace, spec.name))
        if r is None or (r.source, r.sha256) != (spec.source, spec.sha256):
            return None
        if self.clock() - r.at >= self.settings.refused_retry:
            return None
        return r.message

    def backoff(self, attempts: int) -> float:
        s = self.settings
        return float(min(s.backoff_initial * 2 ** max(attempts - 1, 0), s.backoff_max))


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status_of(body: Mapping[str, Any]) -> dict[str, Any]:
    return dict(body.get("status") or {})


# --- gather -----------------------------------------------------------------------


def _pods_to_observe(ctx: Context, spec: AdapterSpec, previous: Mapping[str, Any]) -> list[PodInfo]:
    """The base model's pods, plus pods the last status said hold it (e.g. another model's)."""
    pods = ctx.pods.of_model(spec.namespace, spec.base_model)
    names = {p.name for p in pods}
    for item in previous.get("loadedPods") or []:
        pod = ctx.pods.get(spec.namespace, str(item.get("name")))
        if pod is not None and pod.name not in names:
            pods.append(pod)
            names.add(pod.name)
    return pods


async def _observe_one(ctx: Context, spec: AdapterSpec, pod: PodInfo, token: str | None,
                       not_before: float | None) -> PodView:
    if not (pod.ready and pod.ip):
        return PodView(pod)
    try:
        loaded = await ctx.observer.list(pod, token=token, not_before=not_before)
    except SidecarError as exc:
        if exc.kind == "unauthorized":
            ctx.tokens.invalidate(spec.namespace)
        return PodView(pod, None, exc.message, exc.kind)
    known = ctx.applied.get((spec.namespace, pod.name, spec.name))
    if known is not None:
        loaded = tuple(
            Loaded(item.name, item.source or known[0], item.sha256 or known[1], item.path)
            if item.name == spec.name else item
            for item in loaded
        )
    return PodView(pod, loaded)


async def observe(ctx: Context, spec: AdapterSpec, pods: Sequence[PodInfo], *,
                  confirm: bool = False) -> list[PodView]:
    """Ask every Ready pod's sidecar what it holds (concurrently).

    ``confirm``: only answers to requests sent from now on count (after calls
    this reconcile made); otherwise a request in flight may answer.
    """
    token = await ctx.tokens.get(spec.namespace)
    not_before = ctx.observer.now() if confirm else None
    return list(await asyncio.gather(
        *(_observe_one(ctx, spec, p, token, not_before) for p in pods)))


# --- apply ------------------------------------------------------------------------


def _report_failure(ctx: Context, body: Mapping[str, Any], spec: AdapterSpec, pod: PodInfo,
                    *, reason: str, message: str) -> None:
    """A warning Event, once per distinct failure of a pod (retries repeat it silently)."""
    key = (spec.namespace, pod.name, spec.name)
    if ctx.last_failure.get(key) != message:
        ctx.last_failure[key] = message
        ctx.events.warn(body, reason=reason, message=f"pod {pod.name}: {message}")


async def _apply_one(ctx: Context, body: Mapping[str, Any], spec: AdapterSpec, pod: PodInfo,
                     *, action: str, token: str | None) -> Failure | None:
    key = (spec.namespace, pod.name, spec.name)
    try:
        if action in ("unload", "reload"):
            await ctx.sidecars.unload(pod, name=spec.name, token=token)
            ctx.applied.pop(key, None)
        if action in ("load", "reload"):
            await ctx.sidecars.load(pod, name=spec.name, source=spec.source,
                                    sha256=spec.sha256, token=token)
            ctx.applied[key] = (spec.source, spec.sha256)
    except SidecarError as exc:
        if exc.kind == "refused" and action != "unload":
            ctx.refusals[(spec.namespace, spec.name)] = _Refusal(
                spec.source, spec.sha256, exc.message, ctx.clock())
        if exc.kind == "unauthorized":
            ctx.tokens.invalidate(spec.namespace)
        what = "UnloadFailed" if action == "unload" else "LoadFailed"
        _report_failure(ctx, body, spec, pod, reason=what, message=exc.message)
        return Failure(exc.kind, exc.message)
    ctx.last_failure.pop(key, None)
    return None


async def apply(ctx: Context, body: Mapping[str, Any], spec: AdapterSpec, p: Plan
                ) -> dict[str, Failure]:
    """Make the plan's calls concurrently; the failures by pod name."""
    token = await ctx.tokens.get(spec.namespace)
    work = ([(pod, "load") for pod in p.load] + [(pod, "reload") for pod in p.reload]
            + [(pod, "unload") for pod in p.unload])
    results = await asyncio.gather(
        *(_apply_one(ctx, body, spec, pod, action=action, token=token)
          for pod, action in work))
    done: dict[str, list[str]] = {}
    for (pod, action), failure in zip(work, results, strict=True):
        if failure is None:
            done.setdefault(action, []).append(pod.name)
    # One Event per kind of call and reconcile, naming every pod (not one per pod:
    # a hundred adapters on ten pods would post a thousand).
    for action, reason, text in (("load", "Loaded", f"loaded {spec.source} on"),
                                 ("reload", "Reloaded", f"reloaded {spec.source} on"),
                                 ("unload", "Unloaded", "unloaded from")):
        if action in done:
            message = f"{text} {_pods(done[action])}"
            ctx.events.info(body, reason=reason, message=message)
            logger.info("%s/%s: %s", spec.namespace, spec.name, message)
    return {pod.name: f for (pod, _), f in zip(work, results, strict=True) if f is not None}


def _pods(names: Sequence[str], shown: int = 20) -> str:
    names = sorted(names)
    head = ", ".join(names[:shown])
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"{len(names)} pod{'s' if len(names) != 1 else ''}: {head}{more}"


# --- report -----------------------------------------------------------------------


async def _write_status(ctx: Context, spec: AdapterSpec, previous: Mapping[str, Any],
                        status: dict[str, Any]) -> None:
    key = (spec.namespace, spec.name)
    ctx.reports[key] = Report(spec.base_model, str(status.get("phase")),
                              int(status.get("readyReplicas") or 0))
    if all(previous.get(k) == v for k, v in status.items()):
        return
    if previous.get("phase") != status.get("phase"):
        logger.info("%s/%s: %s (%s)", spec.namespace, spec.name, status.get("phase"),
                    status.get("message"))
    if await ctx.status.patch_status(spec.namespace, spec.name, status):
        ctx.written[key] = status


def _previous(ctx: Context, body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    key = (str(meta.get("namespace") or "default"), str(meta.get("name") or ""))
    return ctx.written.get(key) or _status_of(body)


# --- the cycle ----------------------------------------------------------------------


async def reconcile(ctx: Context, body: Mapping[str, Any]) -> float:
    """Converge one adapter once; return the seconds to wait before the next time."""
    previous = _previous(ctx, body)
    try:
        spec = AdapterSpec.from_body(body)
    except InvalidSpec as exc:
        meta = body.get("metadata") or {}
        ns, name = str(meta.get("namespace") or "default"), str(meta.get("name") or "")
        status = {"phase": "Failed", "reason": "InvalidSpec", "message": str(exc),
                  "observedGeneration": int(meta.get("generation") or 0)}
        base = str((body.get("spec") or {}).get("baseModel") or "")
        ctx.reports[(ns, name)] = Report(base, "Failed", 0)
        if any(previous.get(k) != v for k, v in status.items()):
            ctx.events.warn(body, reason="InvalidSpec", message=str(exc))
            await ctx.status.patch_status(ns, name, status)
            ctx.written[(ns, name)] = {**previous, **status}
        return ctx.settings.resync_interval

    key = (spec.namespace, spec.name)
    ctx.seen_generation[key] = spec.generation
    ctx.wakers.register(spec.namespace, spec.name, spec.base_model)
    pods = _pods_to_observe(ctx, spec, previous)
    views = await observe(ctx, spec, pods)
    first = plan(spec, views, refused=ctx.refused(spec), previous=previous, now=_now())
    final, failures = first, {}
    if not first.converged:
        if first.phase == "Loading" and previous.get("phase") != "Loading":
            await _write_status(ctx, spec, previous, first.status)
            previous = _previous(ctx, body)
        failures = await apply(ctx, body, spec, first)
        touched = {p.name for p in (*first.load, *first.reload, *first.unload)}
        again = await observe(ctx, spec, [v.pod for v in views if v.name in touched],
                              confirm=True)
        fresh = {v.name: v for v in again}
        views = [fresh.get(v.name, v) for v in views]
        final = plan(spec, views, failures=failures, refused=ctx.refused(spec),
                     previous=previous, now=_now())
    await _write_status(ctx, spec, previous, final.status)

    transient = any(f.kind != "refused" for f in failures.values()) or any(
        v.loaded is None and v.error for v in views if v.name in final.desired)
    if transient:
        attempts = ctx.failed_attempts[key] = ctx.failed_attempts.get(key, 0) + 1
        return ctx.backoff(attempts)
    ctx.failed_attempts.pop(key, None)
    if final.phase == "Loading":
        return ctx.settings.backoff_initial  # confirmation lags the calls: look again soon
    return ctx.settings.resync_interval


async def finalize(ctx: Context, body: Mapping[str, Any], *, runtime: float, retry: int) -> None:
    """Unload from every pod that holds the adapter, or give up after ``delete_timeout``.

    Raises :class:`RetryLater` while some pod did not answer and time is left.
    """
    meta = body.get("metadata") or {}
    ns, name = str(meta.get("namespace") or "default"), str(meta.get("name") or "")
    previous = _previous(ctx, body)
    try:
        spec = AdapterSpec.from_body(body)
    except InvalidSpec:
        # Never loaded under an invalid spec; unload wherever the last status placed it.
        spec = AdapterSpec(namespace=ns, name=name, base_model="", source="",
                           generation=int(meta.get("generation") or 0))
    ctx.wakers.unregister(ns, name)
    views = await observe(ctx, spec, _pods_to_observe(ctx, spec, previous))
    holding = [v for v in views if v.holding(name) is not None]
    problems = {v.name: v.error for v in views if v.loaded is None and v.error}
    await _write_status(ctx, spec, previous, unloading_status(
        spec, holding=holding, problems=problems, previous=previous, now=_now()))
    if holding:
        unload_plan = Plan(frozenset(), (), (), tuple(v.pod for v in holding), {})
        failures = await apply(ctx, body, spec, unload_plan)
        again = await observe(ctx, spec, [v.pod for v in holding], confirm=True)
        for v in again:
            if v.name in failures:
                problems[v.name] = failures[v.name].message
            elif v.loaded is None and v.error:
                problems[v.name] = v.error
            elif v.holding(name) is not None:
                problems[v.name] = "still loaded after the unload call"
    if problems:
        text = "; ".join(f"{p}: {m}" for p, m in sorted(problems.items()))
        if runtime < ctx.settings.delete_timeout:
            raise RetryLater(f"not unloaded everywhere yet: {text}", delay=ctx.backoff(retry + 1))
        ctx.events.warn(body, reason="UnloadAbandoned", message=(
            f"gave up after {runtime:.0f}s; the adapter may still be loaded on: {text}"))
        logger.warning("%s/%s: finalizer removed without unloading from: %s", ns, name, text)
    ctx.forget(ns, name)
