"""``lab validate --gateway-url``: the whole stack against the lab, one trace, the same settings.

The live side is a running brix stack: a model's Deployment of sim engines
(with the profile's timing) behind the real gateway, scraped by the real
Prometheus and scaled by the real scaler's fallback loop on the ``queue``
signal. The trace's requests go to the gateway at their arrival times (as
``lab.validate.replay`` sends them); meanwhile a watcher reads, every
``period`` seconds through the Kubernetes API, the Deployment's spec and
ready replicas and its pods (each pod from the moment it is listed until it
is gone, terminating included: what replica-seconds count). It keeps
watching ``settle`` seconds after the trace's end, so the scale-down after
the load is compared too. Each new pod's start time (listed to Ready) is
measured.

The lab then simulates the same trace with ``brix-loop`` configured as the
Deployment's annotations (target, min, max) and the loop's flags (interval,
stabilisation window, scale period, cooldown), the same scrape interval, the
pods' measured start time as its cold start, the Deployment's
``terminationGracePeriodSeconds`` as the drain's grace period, the ready
replicas at the start, and the gateway's hold timeout and routing. Compared:
spec and ready replicas and pods over time (time-aligned mean absolute
difference), replica-seconds over the same window, TTFT and e2e p50/p99, and
SLO attainment.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from brix.contract import AUTOSCALE_ANNOTATION
from lab.engine import Outcome, Result, SimSettings, simulate
from lab.fleet import integral, mean_abs_diff, time_mean
from lab.policies.brix import BrixLoop
from lab.profiles import Profile
from lab.summary import Slo
from lab.traces import Trace
from lab.validate import Replayed, measured_figures, replay_requests, simulated_figures
from scaler import targets
from scaler.settings import ScalerSettings
from scaler.targets import wants_autoscaling

__all__ = ["REQUEST_COLUMNS", "Fleet", "LiveRun", "LoopSettings", "Target", "check_scraped",
           "compare", "decisions_made", "pod_starts", "read_target", "request_rows", "run_live",
           "scrape_phase", "simulate_like", "validate_stack"]

_LOOP: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(ScalerSettings)}


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopSettings:
    """The scaler's fallback-loop flags the live stack runs with (``python -m scaler``);
    the defaults are the scaler's (``scaler.settings.ScalerSettings``)."""

    interval: float = _LOOP["loop_interval"]
    stabilization_window: float = _LOOP["stabilization_window"]
    scale_period: float = _LOOP["scale_period"]
    scale_to_zero_cooldown: float = _LOOP["scale_to_zero_cooldown"]
    panic_window: float = _LOOP["panic_window"]

    def __post_init__(self) -> None:
        # The scaler's own checks and words (``ValueError`` naming the flag), before the
        # live run rather than after it.
        ScalerSettings(loop_interval=self.interval, stabilization_window=self.stabilization_window,
                       scale_period=self.scale_period,
                       scale_to_zero_cooldown=self.scale_to_zero_cooldown,
                       panic_window=self.panic_window, identity="lab")


@dataclass(frozen=True, slots=True)
class Target:
    """What the live Deployment says about its scaling."""

    namespace: str
    name: str
    selector: dict[str, str]
    target: float
    min_replicas: int
    max_replicas: int
    grace_period: float


def read_target(apps: Any, namespace: str, name: str,
                default_max: int = _LOOP["default_max_replicas"]) -> Target:
    """The Deployment's autoscale annotations, read as the scaler's loop reads them
    (``scaler.targets``); ``ValueError`` (one line) if it is not one the lab can simulate
    (no autoscale annotation, a bad one, or a signal other than ``queue``)."""
    d = apps.read_namespaced_deployment(name, namespace)
    notes = d.metadata.annotations or {}
    if not wants_autoscaling(notes):
        raise ValueError(f"deployment {namespace}/{name} is not annotated {AUTOSCALE_ANNOTATION}")
    try:
        scale = targets.read_target(namespace=namespace, labels=d.metadata.labels or {},
                                    annotations=notes, default_max=default_max)
    except targets.AnnotationError as e:
        raise ValueError(f"deployment {namespace}/{name}: {e}") from None
    if scale.trigger.signal != "queue":
        raise ValueError(f"deployment {namespace}/{name}: signal {scale.trigger.signal!r}; "
                         "the lab's brix-loop simulates the queue signal only")
    grace = d.spec.template.spec.termination_grace_period_seconds
    return Target(namespace=namespace, name=name,
                  selector=dict(d.spec.selector.match_labels or {}), target=scale.trigger.target,
                  min_replicas=scale.min_replicas, max_replicas=scale.max_replicas,
                  grace_period=30.0 if grace is None else float(grace))


@dataclass(slots=True)
class Fleet:
    """What the watcher saw: ``(t, pods, spec, ready)`` samples and pods' start times."""

    samples: list[tuple[float, int, int, int]] = field(default_factory=list)
    listed: dict[str, float] = field(default_factory=dict)
    ready: dict[str, float] = field(default_factory=dict)
    passes: list[float] = field(default_factory=list)
    """Times of the scaler loop's passes over the Deployment (``watch_passes``)."""

    def record(self, t: float, pods: Sequence[tuple[str, bool]], spec: int, ready: int) -> None:
        """One sample at ``t``: the listed pods as ``(name, ready and not terminating)``,
        the Deployment's spec and ready replicas."""
        for name, is_ready in pods:
            self.listed.setdefault(name, t)
            if is_ready:
                self.ready.setdefault(name, t)
        self.samples.append((t, len(pods), spec, ready))

    def start_times(self) -> list[float]:
        """Listed-to-Ready seconds of the pods that started while watched."""
        return [round(self.ready[n] - t, 3) for n, t in self.listed.items()
                if n in self.ready and t > self.samples[0][0]]

    def ready_at_start(self) -> int:
        """The ready replicas at trace time 0 (the last sample before it, else the first)."""
        at_zero = [s for s in self.samples if s[0] <= 0] or self.samples[:1]
        return at_zero[-1][3]


def _pod_ready(pod: Any) -> bool:
    conditions = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _watch(apps: Any, core: Any, target: Target, fleet: Fleet, *, t0: float,
           stop: threading.Event, period: float) -> None:
    selector = ",".join(f"{k}={v}" for k, v in sorted(target.selector.items()))
    while not stop.is_set():
        now = time.perf_counter() - t0
        try:
            scale = apps.read_namespaced_deployment(target.name, target.namespace)
            pods = core.list_namespaced_pod(target.namespace, label_selector=selector).items
        except Exception:  # a missed sample (the API hiccuped); the next comes in `period`
            stop.wait(period)
            continue
        fleet.record(now, [(p.metadata.name, _pod_ready(p) and not p.metadata.deletion_timestamp)
                           for p in pods],
                     int(scale.spec.replicas or 0), int(scale.status.ready_replicas or 0))
        stop.wait(period)


DECISIONS = "brix_scaler_decisions_total"


def decisions_made(text: str, target: Target) -> float:
    """The scaler's ``brix_scaler_decisions_total`` for ``target``'s Deployment, all
    directions together, from its /metrics text (0 before its first pass)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (sample.name == DECISIONS and sample.labels.get("namespace") == target.namespace
                    and sample.labels.get("deployment") == target.name):
                total += sample.value
    return total


def _watch_passes(url: str, target: Target, fleet: Fleet, *, t0: float,
                  stop: threading.Event, period: float) -> None:
    """Time each pass of the scaler's loop over ``target``: its decision counter rises
    once a pass (hold included)."""
    import httpx

    last: float | None = None
    with httpx.Client(timeout=2.0) as http:
        while not stop.is_set():
            try:
                made = decisions_made(http.get(url).text, target)
            except (httpx.HTTPError, ValueError):  # a missed poll; the next comes in `period`
                stop.wait(period)
                continue
            if last is not None and made > last:
                fleet.passes.append(round(time.perf_counter() - t0, 3))
            last = made
            stop.wait(period)


def scrape_phase(prometheus_url: str, model: str, *, start: float, end: float) -> float | None:
    """Seconds after ``start`` (a wall-clock time) of Prometheus' first scrape of the
    model's engines at or after it: the phase of its scrapes against the trace. The
    earliest-scraped engine's (the pod serving at the start); None if none was, or
    Prometheus did not answer."""
    import httpx

    window = max(1, math.ceil(end - start) + 1)
    try:
        r = httpx.get(f"{prometheus_url.rstrip('/')}/api/v1/query", timeout=10.0,
                      params={"query": f'brix_engine_up{{model="{model}"}}[{window}s]',
                              "time": f"{end:.3f}"})
        r.raise_for_status()
    except httpx.HTTPError:
        return None
    firsts = [min(float(ts) for ts, _ in series["values"] if float(ts) >= start)
              for series in r.json()["data"]["result"]
              if any(float(ts) >= start for ts, _ in series["values"])]
    return round(min(firsts) - start, 3) if firsts else None


@dataclass(slots=True)
class LiveRun:
    requests: list[Replayed | None]
    fleet: Fleet
    horizon: float
    wall_start: float = 0.0
    """The wall-clock time (``time.time()``) of trace time 0."""

    @property
    def measured(self) -> list[tuple[float, float] | None]:
        """(TTFT, e2e) per request, None where it failed."""
        return [(r.ttft, r.e2e) if r else None for r in self.requests]


def run_live(gateway_url: str, model: str, trace: Trace, *, apps: Any, core: Any,
             target: Target, settle: float, period: float = 0.5,
             scaler_metrics_url: str | None = None, pass_period: float = 0.1) -> LiveRun:
    """Replay ``trace`` through the gateway while watching the Deployment (and, with
    ``scaler_metrics_url``, timing the scaler loop's passes); keep watching ``settle``
    seconds after the later of the trace's end and the last answer."""
    fleet = Fleet()
    stop = threading.Event()
    t0 = time.perf_counter() + 2.0  # trace time 0: the watcher has samples before it
    wall_start = time.time() + (t0 - time.perf_counter())
    watchers = [threading.Thread(target=_watch, name="lab-fleet-watch", daemon=True,
                                 args=(apps, core, target, fleet),
                                 kwargs={"t0": t0, "stop": stop, "period": period})]
    if scaler_metrics_url:
        watchers.append(threading.Thread(
            target=_watch_passes, name="lab-pass-watch", daemon=True,
            args=(scaler_metrics_url, target, fleet),
            kwargs={"t0": t0, "stop": stop, "period": pass_period}))
    for w in watchers:
        w.start()
    try:
        requests = replay_requests(gateway_url, trace, model, start=t0)
        horizon = max(trace.duration, time.perf_counter() - t0) + settle
        while time.perf_counter() - t0 < horizon and watchers[0].is_alive():
            time.sleep(0.2)
    finally:
        stop.set()
        for w in watchers:
            w.join(timeout=30)
    if not fleet.samples:
        raise RuntimeError("the watcher saw nothing of the Deployment")
    return LiveRun(requests=requests, fleet=fleet, horizon=horizon, wall_start=wall_start)


def pod_starts(starts: float | Sequence[float]) -> Callable[[Any], float]:
    """The lab's cold start: a fixed one, or the live pods' measured ones in the order they
    started (the n-th pod the lab starts takes the n-th), then their mean."""
    if isinstance(starts, (int, float)):
        fixed = float(starts)
        return lambda _rng: fixed
    if not starts:
        raise ValueError("no pod start times to use")
    rest = iter(list(starts))
    mean = statistics.fmean(starts)
    return lambda _rng: next(rest, mean)


def simulate_like(trace: Trace, profile: Profile, target: Target, loop: LoopSettings, *,
                  cold_start: float | Sequence[float], initial_replicas: int,
                  scrape_interval: float,
                  hold_timeout: float, routing: str, settle: float, seed: int = 0,
                  decision_times: Sequence[float] = (), first_scrape: float = 0.0) -> Result:
    """The lab's run of ``trace`` with the live stack's settings; ``decision_times`` and
    ``first_scrape``: the live loop's passes and Prometheus' phase (``SimSettings``)."""
    policy = BrixLoop(target=target.target, min_replicas=target.min_replicas,
                      max_replicas=target.max_replicas, interval=loop.interval,
                      stabilization_window=loop.stabilization_window,
                      scale_to_zero_cooldown=loop.scale_to_zero_cooldown,
                      scale_period=loop.scale_period, panic_window=loop.panic_window)
    settings = SimSettings(cold_start=pod_starts(cold_start), routing=routing,
                           scrape_interval=scrape_interval, hold_timeout=hold_timeout,
                           initial_replicas=initial_replicas, seed=seed,
                           grace_period=target.grace_period, tail=settle,
                           decision_times=tuple(t for t in decision_times if t >= 0),
                           first_scrape=first_scrape)
    return simulate(trace, profile, policy, settings)


def _changes(series: Sequence[tuple[float, float]]) -> int:
    return sum(1 for a, b in itertools.pairwise(series) if a[1] != b[1])


REQUEST_COLUMNS = ("arrival_s", "prompt_tokens", "output_tokens", "real_ttft_s", "real_e2e_s",
                   "real_pod", "real_late_s", "sim_ttft_s", "sim_e2e_s", "sim_pod")
"""The columns of a report's ``requests`` rows, one row per trace request."""


def _r(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else round(float(x), 4)


def request_rows(live: LiveRun, result: Result, trace: Trace) -> list[list[Any]]:
    """Each request, real and simulated, as ``REQUEST_COLUMNS``: which pod served it
    (the gateway's ``x-brix-pod``; the lab's pod index) and its latencies."""
    rows = []
    for i, (req, real) in enumerate(zip(trace.requests, live.requests, strict=True)):
        sim_pod = int(result.pod[i]) if i < len(result.pod) else -1
        rows.append([round(req.arrival, 3), req.prompt_tokens, req.output_tokens,
                     _r(real.ttft) if real else None, _r(real.e2e) if real else None,
                     real.pod if real else None, _r(real.late) if real else None,
                     _r(result.ttft[i]), _r(result.e2e[i]), sim_pod if sim_pod >= 0 else None])
    return rows


def _sim_ready(result: Result) -> list[float]:
    """The times the lab's ready count rose (a pod became ready), one entry per pod."""
    out: list[float] = []
    for a, b in itertools.pairwise(result.timeline):
        out += [round(b[0], 3)] * max(0, b[3] - a[3])
    return out


def compare(live: LiveRun, result: Result, slo: Slo,
            trace: Trace | None = None) -> dict[str, Any]:
    """The live run against the lab's, over the same window [0, horizon]; with ``trace``
    (the one replayed), each request's row too (``request_rows``)."""
    end = max(live.horizon, result.end_time)
    samples = [s for s in live.fleet.samples if s[0] >= 0] or live.fleet.samples[-1:]
    first = [s for s in live.fleet.samples if s[0] < 0][-1:]
    rows = first + samples
    real = {key: [(max(0.0, r[0]), float(r[i])) for r in rows]
            for i, key in ((1, "pods"), (2, "spec"), (3, "ready"))}
    sim = {key: [(r[0], float(r[i])) for r in result.timeline]
           for i, key in ((1, "pods"), (2, "spec"), (3, "ready"))}

    def side(series: dict[str, list[tuple[float, float]]], lat: dict[str, float | None],
             failed: int) -> dict[str, Any]:
        return {**lat, "failed": failed,
                "replica_seconds": round(integral(series["pods"], 0.0, end), 1),
                "mean_pods": round(time_mean(series["pods"], 0.0, end), 3),
                "mean_ready": round(time_mean(series["ready"], 0.0, end), 3),
                "max_spec": int(max(v for _, v in series["spec"])),
                "scale_changes": _changes(series["spec"])}

    real_side = side(real, measured_figures(live.measured, slo),
                     sum(m is None for m in live.measured))
    sim_side = side(sim, simulated_figures(result, slo),
                    int((result.outcome != Outcome.COMPLETED).sum()))
    ratios = {k: (round(sim_side[k] / v, 4) if isinstance(v, (int, float)) and v
                  and isinstance(sim_side[k], (int, float)) else None)
              for k, v in real_side.items()}
    starts = live.fleet.start_times()
    per_request: dict[str, Any] = {"requests": {
        "columns": list(REQUEST_COLUMNS),
        "rows": request_rows(live, result, trace)}} if trace else {}
    return {
        **per_request,
        "pod_ready_s": {"real": {n: round(t, 3) for n, t in live.fleet.ready.items()},
                        "sim": _sim_ready(result)},
        "window_s": round(end, 1),
        "real": real_side, "sim": sim_side, "sim_over_real": ratios,
        "mean_abs_diff": {key: round(mean_abs_diff(real[key], sim[key], 0.0, end), 4)
                          for key in ("spec", "ready", "pods")},
        "pod_start_s": {"measured": starts,
                        "mean": round(statistics.fmean(starts), 3) if starts else None},
        "series": {"real": [list(r) for r in rows], "sim": [list(r) for r in result.timeline]},
    }


def check_scraped(prometheus_url: str, model: str, *, wait: float = 30.0) -> None:
    """``ValueError`` (one line) unless the Prometheus the scaler reads has the model's
    engine series within ``wait`` seconds: without them the loop is blind to the pods
    and the comparison would say nothing about the lab."""
    import httpx

    query = f'brix_engine_up{{model="{model}"}}'
    deadline = time.monotonic() + wait
    while True:
        try:
            r = httpx.get(f"{prometheus_url.rstrip('/')}/api/v1/query",
                          params={"query": query}, timeout=5.0)
            if r.status_code == 200 and r.json()["data"]["result"]:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise ValueError(f"{prometheus_url} has no {query} after {wait:g} s: the loop "
                             "cannot see the model's pods")
        time.sleep(1.0)


def validate_stack(gateway_url: str, model: str, trace: Trace, profile: Profile, slo: Slo, *,
                   kubeconfig: str | None, namespace: str, deployment: str, loop: LoopSettings,
                   scrape_interval: float, hold_timeout: float, routing: str, settle: float,
                   cold_start: float | None = None, seed: int = 0,
                   prometheus_url: str | None = None,
                   scaler_metrics_url: str | None = None) -> dict[str, Any]:
    """Replay ``trace`` on the live stack, simulate it with the same settings, compare.

    ``cold_start``: the lab's pod start in seconds; None: the start times of the pods
    that started during the live run, in order, then their mean (0 if none did).
    ``prometheus_url``: first check that it scrapes the model's engines
    (``check_scraped``), and after the run read the phase of its scrapes.
    ``scaler_metrics_url``: the scaler's /metrics, polled to time its loop's passes.
    The lab's scrapes and decisions keep those times where they are known
    (``simulate_like``), and its pods start as long as the live ones did, in order;
    the report's ``own_clock`` is the lab on its own clock (scrape at 0, decide every
    interval from one interval in) with the pods' mean start, for comparison."""
    from kubernetes import client, config

    if prometheus_url:
        check_scraped(prometheus_url, model)

    if kubeconfig:
        api = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    else:
        config.load_config()  # type: ignore[no-untyped-call]
        api = client.ApiClient()
    try:
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        target = read_target(apps, namespace, deployment)
        live = run_live(gateway_url.rstrip("/"), model, trace, apps=apps, core=core,
                        target=target, settle=settle, scaler_metrics_url=scaler_metrics_url)
    finally:
        api.close()
    phase = scrape_phase(prometheus_url, model, start=live.wall_start,
                         end=live.wall_start + live.horizon) if prometheus_url else None
    if phase is not None:
        phase %= scrape_interval
    initial = live.fleet.ready_at_start()
    starts = live.fleet.start_times()
    cold = cold_start if cold_start is not None else (
        statistics.fmean(starts) if starts else 0.0)
    lab_starts: float | list[float] = starts if cold_start is None and starts else cold

    def lab(aligned: bool) -> Result:
        return simulate_like(trace, profile, target, loop,
                             cold_start=lab_starts if aligned else cold,
                             initial_replicas=initial, scrape_interval=scrape_interval,
                             hold_timeout=hold_timeout, routing=routing, settle=settle, seed=seed,
                             decision_times=live.fleet.passes if aligned else (),
                             first_scrape=phase if aligned and phase is not None else 0.0)

    report = compare(live, lab(aligned=True), slo, trace)
    own = compare(live, lab(aligned=False), slo, trace)
    report["own_clock"] = {key: own[key] for key in
                           ("sim", "sim_over_real", "mean_abs_diff", "requests")}
    report["settings"] = {
        "model": model, "deployment": f"{namespace}/{deployment}", "target": target.target,
        "min_replicas": target.min_replicas, "max_replicas": target.max_replicas,
        "grace_period_s": target.grace_period, "initial_replicas": initial,
        "loop": {"interval_s": loop.interval, "stabilization_window_s": loop.stabilization_window,
                 "scale_period_s": loop.scale_period,
                 "scale_to_zero_cooldown_s": loop.scale_to_zero_cooldown,
                 "panic_window_s": loop.panic_window},
        "scrape_interval_s": scrape_interval, "hold_timeout_s": hold_timeout,
        "routing": routing, "settle_s": settle, "cold_start_s": round(cold, 3),
        "cold_starts_s": lab_starts,
        "slo_ttft_s": slo.ttft, "live_loop_passes_s": live.fleet.passes,
        "live_scrape_phase_s": phase}
    return report
