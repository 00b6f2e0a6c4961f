"""The simulated system in virtual time: gateway, pods with engines, Prometheus, one policy.

Everything advances by events (a heap of times); nothing sleeps, and idle
time costs nothing. What happens, and in which component's terms:

- **Engines**: one ``inference.sim.scheduler.Scheduler`` with the profile's
  ``TimingModel`` per pod, the code the sim engine serves with. A step is
  planned when the engine has work and committed when its duration has
  passed. While an engine only decodes and nothing can join its batch, its
  identical steps up to the next sequence's end are one event; a request that
  arrives in between cuts that run at the next step boundary, where it joins
  as it would have step by step. Prefix caching is on, as vLLM's default:
  a request's full prompt blocks are its trace block ids chained (blocks of
  the trace's ``block_tokens``; Mooncake's ``hash_ids``), so a request
  sharing leading blocks with one that ran on the same pod skips their
  prefill; requests without blocks (Azure, synthetic) share nothing, and
  KV is counted in vLLM's 16-token blocks. Each step computes at most the
  profile's ``max_num_batched_tokens`` (decode tokens first), and with
  ``enable_chunked_prefill`` (vLLM's default) a long prompt is prefilled in
  chunks over several steps while the running sequences go on decoding.
- **Pods**: a new pod starts (``cold_start``) before it takes requests. On
  scale-down, pods that are still starting go first, then the newest ready
  ones; a removed ready pod takes no new request and goes once its in-flight
  requests are done, or after ``grace_period`` (Kubernetes'
  ``terminationGracePeriodSeconds``, 30 s by default) when its engine is
  killed and the requests still in it fail (``KILLED``). A pod costs
  replica-seconds from its creation until it is gone.
- **Gateway**: a request goes to a ready pod chosen by ``lab.routing.Router``:
  ``gateway.picker.pick``'s strategies or the gateway's profiles (the
  gateway's default, ``fleet-prefill``, unless told otherwise). With no
  ready pod it is held up to ``hold_timeout`` and then fails (503); a request
  longer than the profile's ``max_model_len`` fails at once (400), counted
  apart. Time to first token and end-to-end latency are measured at the
  gateway (the hold included); the engines' histograms measure from the
  engine's arrival, as vLLM's do.
- **Prometheus**: every ``scrape_interval`` the ready and draining pods'
  gauges, counters and histograms and the gateway's are appended to a
  ``lab.prom.TSDB``; a removed pod's series go stale. The policy's
  ``decide`` runs every ``policy.interval`` and sees only ``TSDB.view(now)``.
  The first scrape and the first decisions may be placed (``first_scrape``,
  ``decision_times``): a live stack's Prometheus and loop tick at their own
  phase against a trace, and on a short trace that phase moves the TTFT tail.
  A policy with a ``use_profile(mapping)`` method is handed the run's timing
  profile (its JSON object) before the first decision, as a capacity prior.
- **After the trace**: once every request has ended, scrapes and decisions go
  on (the scale-down after the load is part of a policy's cost) until the
  fleet settles (at the policy's ``min_replicas``, when it has one, with no
  pod starting or draining) or ``tail`` seconds after the later of the
  trace's end and the last request's end, whichever comes first.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from gateway.picker import Candidate
from gateway.routing_config import RoutingConfig
from inference.sim import metrics as sim_metrics
from inference.sim.prefix_cache import DEFAULT_BLOCK_SIZE, chain_keys
from inference.sim.scheduler import Scheduler, Sequence, Step
from lab.policies.base import Autoscaler
from lab.profiles import Profile
from lab.prom import TSDB
from lab.routing import Router
from lab.traces import Request, Trace

__all__ = ["LATENCY_BUCKETS", "TPOT_BUCKETS", "TTFT_BUCKETS", "Outcome", "Result", "SimSettings",
           "max_request_tokens", "pod_scheduler", "prompt_hashes", "simulate",
           "trace_block_size"]

# vLLM's bucket bounds, as the sim engine exports them (checked against vLLM's own in
# tests/integration/inference_sim/test_vllm_shapes.py), with +Inf last.
TTFT_BUCKETS = (*sim_metrics.TTFT_BUCKETS, math.inf)
LATENCY_BUCKETS = (*sim_metrics.LATENCY_BUCKETS, math.inf)
TPOT_BUCKETS = (*sim_metrics.TPOT_BUCKETS, math.inf)

WAITING = "vllm:num_requests_waiting"
RUNNING = "vllm:num_requests_running"
KV_USAGE = "vllm:kv_cache_usage_perc"
PROMPT_TOKENS = "vllm:prompt_tokens_total"
GENERATION_TOKENS = "vllm:generation_tokens_total"
SUCCESS = "vllm:request_success_total"
PREFIX_QUERIES = "vllm:prefix_cache_queries_total"
PREFIX_HITS = "vllm:prefix_cache_hits_total"
TTFT = "vllm:time_to_first_token_seconds"
E2E = "vllm:e2e_request_latency_seconds"
TPOT = "vllm:request_time_per_output_token_seconds"
PENDING = "brix_gateway_requests_pending"
GATEWAY_REQUESTS = "brix_gateway_requests_total"


class Outcome(enum.IntEnum):
    """How a request ended."""

    PENDING = 0
    COMPLETED = 1
    TIMED_OUT = 2  # held at the gateway with no ready pod, then 503
    TOO_LONG = 3  # longer than the profile's context: 400
    KILLED = 4  # in a draining pod when its grace period ended


@dataclass(frozen=True, slots=True, kw_only=True)
class SimSettings:
    cold_start: Callable[[random.Random], float]
    routing: str = "least-request"
    routing_config: RoutingConfig | None = None
    """The gateway's routing config (profiles); None: its built-in one."""
    scrape_interval: float = 15.0
    hold_timeout: float = 60.0
    initial_replicas: int | None = None
    """Ready pods at the start; None: the policy's ``initial_replicas`` if it has one, else 1."""
    seed: int = 0
    grace_period: float = 30.0
    """Seconds a draining pod keeps its in-flight requests before it is killed."""
    tail: float = 900.0
    """Seconds the run may go on after the trace and its last request end, to settle."""
    decision_times: tuple[float, ...] = ()
    """Trace times of the policy's first decisions (a live loop's passes, which come at
    its own phase against the trace and every interval plus the pass's own time); after
    the last, one every ``interval``. Empty: the first one interval in."""
    first_scrape: float = 0.0
    """Trace time of the first scrape, then one every ``scrape_interval`` (a live
    Prometheus scrapes each target at its own offset in the interval). Negative, above
    ``-scrape_interval``: Prometheus scraped the initial fleet before the trace
    began, so its counters have a sample from before the first arrival (a fleet that
    was up, idle, as a live one is; at 0 the history starts with the trace)."""

    def __post_init__(self) -> None:
        if self.scrape_interval <= 0 or self.hold_timeout < 0 or (
                self.initial_replicas is not None and self.initial_replicas < 0):
            raise ValueError("need scrape_interval > 0, hold_timeout >= 0, initial_replicas >= 0")
        if not (self.grace_period >= 0 and self.tail >= 0):
            raise ValueError("need grace_period >= 0 and tail >= 0")
        times = self.decision_times
        if not self.first_scrape > -self.scrape_interval or any(not t >= 0 for t in times) or any(
                not b > a for a, b in itertools.pairwise(times)):
            raise ValueError("need first_scrape > -scrape_interval and decision_times >= 0, "
                             "increasing")


@dataclass(slots=True)
class Result:
    """What one run produced; per-request arrays are indexed like the trace's requests."""

    outcome: np.ndarray
    ttft: np.ndarray  # seconds; nan where no first token
    e2e: np.ndarray
    tpot: np.ndarray  # seconds per output token after the first; nan for one-token outputs
    end_time: float
    replica_seconds: float
    timeline: list[tuple[float, int, int, int]]
    """``(time, pods alive, spec replicas, ready)`` at every change."""
    decisions: list[tuple[float, int]]
    """``(time, desired)`` of every decision."""
    queue: list[tuple[float, int]]
    """``(time, waiting in engines + held at the gateway)`` at every scrape."""
    peak_queue: int
    scale_events: int
    oscillations: int
    prefix_queries: int = 0
    """Prompt tokens looked up in the engines' prefix caches, all pods together."""
    prefix_hits: int = 0
    """Of those, the tokens found cached (so not prefilled)."""
    pod: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    """The index (in creation order, from 0) of the pod each request went to; -1: none."""


class _State(enum.Enum):
    STARTING = 1
    READY = 2
    DRAINING = 3
    GONE = 4


@dataclass(eq=False, slots=True)
class _Pod:
    index: int
    name: str
    created: float
    scheduler: Scheduler
    state: _State = _State.STARTING
    in_flight: int = 0
    prefill: int = 0
    """Tokens the router estimates its requests not yet at their first token still prefill."""
    prefilling: dict[int, int] = field(default_factory=dict)
    """Request -> its share of ``prefill``, until its first token."""
    step: Step | None = None
    step_start: float = 0.0
    step_seconds: float = 0.0
    step_count: int = 1
    version: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    success: int = 0
    ttft_counts: list[int] = field(default_factory=lambda: [0] * len(TTFT_BUCKETS))
    ttft_sum: float = 0.0
    e2e_counts: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    e2e_sum: float = 0.0
    tpot_counts: list[int] = field(default_factory=lambda: [0] * len(TPOT_BUCKETS))
    tpot_sum: float = 0.0


_EV_STEP, _EV_READY, _EV_TIMEOUT, _EV_SCRAPE, _EV_DECIDE, _EV_KILL = range(6)


def pod_scheduler(profile: Profile, block_size: int) -> Scheduler:
    """A new pod's engine: the profile's scheduler, prefix caching on in ``block_size`` blocks."""
    return Scheduler(max_num_seqs=profile.max_num_seqs, kv_cache_tokens=profile.kv_cache_tokens,
                     max_loras=1, timing=profile.timing, enable_prefix_caching=True,
                     block_size=block_size, max_num_batched_tokens=profile.batched_tokens,
                     enable_chunked_prefill=profile.enable_chunked_prefill,
                     long_prefill_token_threshold=profile.long_prefill_token_threshold)


def trace_block_size(trace: Trace) -> int:
    """The engines' KV block: the trace's block (its ``blocks``' size), else vLLM's default."""
    return trace.block_tokens or DEFAULT_BLOCK_SIZE


def prompt_hashes(req: Request, block_size: int) -> tuple[int, ...]:
    """The chained hashes of a request's full prompt blocks (none when it names no blocks)."""
    full = req.prompt_tokens // block_size if req.blocks else 0
    return chain_keys(req.blocks[:full]) if full else ()


def max_request_tokens(profile: Profile, block_size: int) -> int:
    """The longest request (prompt and output tokens) a pod takes; a longer one fails (400)."""
    return min(profile.max_model_len, profile.kv_cache_tokens // block_size * block_size)


def _observe(counts: list[int], bounds: tuple[float, ...], value: float) -> None:
    for i, bound in enumerate(bounds):
        if value <= bound:
            counts[i] += 1
            return


class _Sim:
    def __init__(self, trace: Trace, profile: Profile, policy: Autoscaler,
                 settings: SimSettings) -> None:
        self.trace = trace
        self.profile = profile
        self.policy = policy
        self.s = settings
        self.rng = random.Random(settings.seed)  # noqa: S311 - seeded simulation
        self.timing = profile.timing
        n = len(trace.requests)
        self.outcome = np.zeros(n, dtype=np.int8)
        self.ttft = np.full(n, np.nan)
        self.e2e = np.full(n, np.nan)
        self.tpot = np.full(n, np.nan)
        self.pod_of = np.full(n, -1, dtype=np.int32)
        self.ended = 0
        self.now = 0.0
        self.heap: list[tuple[float, int, int, object, int]] = []
        self.order = 0
        self.pods: list[_Pod] = []
        self.live: list[_Pod] = []  # not GONE, in creation order
        self.held: deque[int] = deque()
        self.gateway_total = 0
        self.db = TSDB()
        self.timeline: list[tuple[float, int, int, int]] = []
        self.decisions: list[tuple[float, int]] = []
        self.queue: list[tuple[float, int]] = []
        self.peak_queue = 0
        self.changes: list[int] = []  # signs of spec changes
        self.alive_since = 0.0
        self.replica_seconds = 0.0
        # Prefix caching (see lab.routing): blocks of the trace's size, else vLLM's default.
        self.router = Router(settings.routing, block_tokens=trace.block_tokens, rng=self.rng,
                             config=settings.routing_config)
        self.block_size = trace_block_size(trace)
        self.max_len = max_request_tokens(profile, self.block_size)

    # --- events -----------------------------------------------------------

    def push(self, t: float, kind: int, payload: object = None, version: int = 0) -> None:
        self.order += 1
        heapq.heappush(self.heap, (t, self.order, kind, payload, version))

    def spec(self) -> int:
        return sum(1 for p in self.live if p.state in (_State.STARTING, _State.READY))

    def ready(self) -> list[_Pod]:
        return [p for p in self.live if p.state is _State.READY]

    def record(self) -> None:
        alive = len(self.live)
        if self.timeline:
            last_t, last_alive, _, _ = self.timeline[-1]
            self.replica_seconds += last_alive * (self.now - last_t)
        self.timeline.append((self.now, alive, self.spec(), len(self.ready())))

    # --- pods -------------------------------------------------------------

    def new_pod(self, *, ready_now: bool) -> None:
        index = len(self.pods)
        sched = pod_scheduler(self.profile, self.block_size)
        pod = _Pod(index=index, name=f"pod-{index:04d}", created=self.now, scheduler=sched)
        self.pods.append(pod)
        self.live.append(pod)
        if ready_now:
            pod.state = _State.READY
        else:
            self.push(self.now + max(0.0, self.s.cold_start(self.rng)), _EV_READY, pod)

    def on_ready(self, pod: _Pod) -> None:
        if pod.state is not _State.STARTING:
            return  # removed while it started
        pod.state = _State.READY
        self.record()
        while self.held:
            self.route(self.held.popleft())

    def gone(self, pod: _Pod) -> None:
        pod.state = _State.GONE
        self.live.remove(pod)
        self.router.forget(pod.name)
        self.db.end(pod.name, self.now)

    def scale(self, desired: int) -> None:
        current = self.spec()
        self.decisions.append((self.now, desired))
        if desired == current:
            return
        self.changes.append(1 if desired > current else -1)
        if desired > current:
            for _ in range(desired - current):
                self.new_pod(ready_now=False)
        else:
            starting = [p for p in self.live if p.state is _State.STARTING]
            ready = [p for p in self.live if p.state is _State.READY]
            victims = (starting[::-1] + ready[::-1])[: current - desired]
            for pod in victims:
                if pod.state is _State.STARTING or pod.in_flight == 0:
                    self.gone(pod)
                else:
                    pod.state = _State.DRAINING
                    self.push(self.now + self.s.grace_period, _EV_KILL, pod)
        self.record()

    # --- requests ---------------------------------------------------------

    def finish(self, idx: int, outcome: Outcome) -> None:
        self.outcome[idx] = outcome
        self.ended += 1
        self.gateway_total += 1

    def arrive(self, idx: int) -> None:
        req = self.trace.requests[idx]
        if req.prompt_tokens + req.output_tokens > self.max_len:
            self.finish(idx, Outcome.TOO_LONG)
            return
        if self.route(idx):
            waiting = sum(p.scheduler.num_waiting for p in self.live)
            self.peak_queue = max(self.peak_queue, waiting + len(self.held))

    def route(self, idx: int) -> bool:
        """Send request ``idx`` to a ready pod (True), or hold it at the gateway (False)."""
        ready = self.ready()
        req = self.trace.requests[idx]
        if not ready:
            self.held.append(idx)
            self.push(req.arrival + self.s.hold_timeout, _EV_TIMEOUT, idx)
            self.peak_queue = max(self.peak_queue, len(self.held)
                                  + sum(p.scheduler.num_waiting for p in self.live))
            return False
        candidates = [Candidate(key=p.name, in_flight=p.in_flight,
                                waiting=p.scheduler.num_waiting, running=p.scheduler.num_running,
                                prefill=p.prefill)
                      for p in ready]
        hashes = prompt_hashes(req, self.block_size)
        i, prefill = self.router.choose(
            candidates, prefix=req.prefix, hashes=hashes,
            kv_cache=[p.scheduler.kv_usage for p in ready] if self.router.profile else (),
            prompt_tokens=req.prompt_tokens)
        pod = ready[i]
        pod.in_flight += 1
        pod.prefilling[idx] = prefill
        pod.prefill += prefill
        self.pod_of[idx] = pod.index
        pod.scheduler.add(Sequence(id=idx, prompt_tokens=req.prompt_tokens,
                                   output_len=req.output_tokens, arrival=self.now,
                                   block_hashes=hashes))
        if pod.step is None:
            self.plan(pod)
        elif pod.step_count > 1:
            self.cut(pod)
        return True

    def on_kill(self, pod: _Pod) -> None:
        """A draining pod's grace period is over: its engine stops, its requests fail."""
        if pod.state is not _State.DRAINING:
            return
        sched = pod.scheduler
        for seq in [*sched.waiting, *sched.running]:
            sched.abort(seq)
            self.finish(seq.id, Outcome.KILLED)
        pod.in_flight = 0
        pod.prefill = 0
        pod.prefilling.clear()
        pod.step = None
        pod.version += 1
        self.gone(pod)
        self.record()

    def on_timeout(self, idx: int) -> None:
        if self.outcome[idx] != Outcome.PENDING or idx not in self.held:
            return
        self.held.remove(idx)
        self.finish(idx, Outcome.TIMED_OUT)

    # --- engine steps -----------------------------------------------------

    def plan(self, pod: _Pod) -> None:
        step = pod.scheduler.plan()
        pod.step = step
        if step is None:
            return
        count = 1
        if not step.prefill:
            count = min(s.output_len - s.generated for s in step.decode)
        pod.step_start = self.now
        pod.step_seconds = step.seconds
        pod.step_count = count
        pod.version += 1
        self.push(self.now + step.seconds * count, _EV_STEP, pod, pod.version)

    def cut(self, pod: _Pod) -> None:
        """A request joined a run of decode steps: end the run at the next step boundary."""
        done = math.ceil((self.now - pod.step_start) / pod.step_seconds - 1e-9)
        done = min(max(done, 1), pod.step_count)
        if done < pod.step_count:
            pod.step_count = done
            pod.version += 1
            self.push(pod.step_start + done * pod.step_seconds, _EV_STEP, pod, pod.version)

    def on_step(self, pod: _Pod, version: int) -> None:
        if version != pod.version or pod.step is None:
            return
        step = pod.step
        extra = pod.step_count - 1
        if extra:
            for seq in step.decode:
                seq.generated += extra
        result = pod.scheduler.commit(step, self.now)
        pod.prompt_tokens += result.prompt_tokens
        pod.generation_tokens += result.generation_tokens + extra * len(result.advanced)
        requests = self.trace.requests
        for seq in result.first_tokens:
            engine_ttft = self.now - seq.arrival
            _observe(pod.ttft_counts, TTFT_BUCKETS, engine_ttft)
            pod.ttft_sum += engine_ttft
            self.ttft[seq.id] = self.now - requests[seq.id].arrival
            pod.prefill -= pod.prefilling.pop(seq.id, 0)
        for seq in result.finished:
            engine_e2e = self.now - seq.arrival
            _observe(pod.e2e_counts, LATENCY_BUCKETS, engine_e2e)
            pod.e2e_sum += engine_e2e
            pod.success += 1
            pod.in_flight -= 1
            idx = seq.id
            self.e2e[idx] = self.now - requests[idx].arrival
            tpot = seq.time_per_output_token
            assert tpot is not None
            _observe(pod.tpot_counts, TPOT_BUCKETS, tpot)
            pod.tpot_sum += tpot
            if seq.generated > 1:
                self.tpot[idx] = tpot
            self.finish(idx, Outcome.COMPLETED)
        pod.step_count = 1
        self.plan(pod)
        if pod.step is None and pod.state is _State.DRAINING:
            self.gone(pod)
            self.record()

    # --- metrics and decisions -------------------------------------------

    def scrape(self) -> None:
        t = self.now
        db = self.db
        waiting_total = len(self.held)
        for pod in self.live:
            if pod.state not in (_State.READY, _State.DRAINING):
                continue
            sched = pod.scheduler
            name = pod.name
            waiting_total += sched.num_waiting
            generated = pod.generation_tokens
            if pod.step is not None and pod.step_count > 1:
                steps = int((t - pod.step_start) / pod.step_seconds)
                generated += min(steps, pod.step_count - 1) * len(pod.step.decode)
            db.append(WAITING, t, sched.num_waiting, pod=name)
            db.append(RUNNING, t, sched.num_running, pod=name)
            db.append(KV_USAGE, t, sched.kv_usage, pod=name)
            db.append(PROMPT_TOKENS, t, pod.prompt_tokens, pod=name)
            db.append(GENERATION_TOKENS, t, generated, pod=name)
            db.append(SUCCESS, t, pod.success, pod=name)
            if sched.prefix_cache is not None:
                db.append(PREFIX_QUERIES, t, sched.prefix_cache.queries, pod=name)
                db.append(PREFIX_HITS, t, sched.prefix_cache.hits, pod=name)
            for metric, bounds, counts, total in (
                (TTFT, TTFT_BUCKETS, pod.ttft_counts, pod.ttft_sum),
                (E2E, LATENCY_BUCKETS, pod.e2e_counts, pod.e2e_sum),
                (TPOT, TPOT_BUCKETS, pod.tpot_counts, pod.tpot_sum),
            ):
                cumulative = 0
                for bound, c in zip(bounds, counts, strict=True):
                    cumulative += c
                    db.append(f"{metric}_bucket", t, cumulative, pod=name,
                              le="+Inf" if math.isinf(bound) else repr(bound))
                db.append(f"{metric}_count", t, cumulative, pod=name)
                db.append(f"{metric}_sum", t, total, pod=name)
        db.append(PENDING, t, len(self.held))
        db.append(GATEWAY_REQUESTS, t, self.gateway_total)
        self.queue.append((t, waiting_total))

    def decide(self) -> None:
        ready = len(self.ready())
        desired = self.policy.decide(now=self.now, metrics=self.db.view(self.now),
                                     replicas=self.spec(), ready=ready)
        if isinstance(desired, bool) or not isinstance(desired, int) or desired < 0:
            raise ValueError(f"policy answered {desired!r}, not a replica count >= 0")
        self.scale(desired)

    # --- the loop ---------------------------------------------------------

    def settled(self, floor: object) -> bool:
        """At the policy's floor with no pod starting or draining (no floor: never)."""
        if isinstance(floor, bool) or not isinstance(floor, int):
            return False
        return self.spec() == floor and all(p.state is _State.READY for p in self.live)

    def run(self, progress: Callable[[float], None] | None = None) -> Result:
        initial = self.s.initial_replicas
        if initial is None:
            initial = getattr(self.policy, "initial_replicas", 1)
        if isinstance(initial, bool) or not isinstance(initial, int) or initial < 0:
            raise ValueError(f"initial replicas must be an integer >= 0, got {initial!r}")
        for _ in range(initial):
            self.new_pod(ready_now=True)
        self.record()
        self.push(self.s.first_scrape, _EV_SCRAPE)
        # A policy that can start from the run's timing profile (brix-slo) gets it now.
        use_profile = getattr(self.policy, "use_profile", None)
        if callable(use_profile):
            use_profile(self.profile.to_json())
        interval = float(self.policy.interval)
        if not interval > 0:
            raise ValueError(f"policy interval must be > 0, got {interval!r}")
        planned = deque(self.s.decision_times)
        self.push(planned.popleft() if planned else interval, _EV_DECIDE)
        requests = self.trace.requests
        n = len(requests)
        nxt = 0
        heap = self.heap
        last_report = 0.0
        horizon = math.inf
        floor = getattr(self.policy, "min_replicas", None)
        while True:
            if self.ended == n:
                if horizon == math.inf:
                    horizon = max(self.now, self.trace.duration) + self.s.tail
                if self.settled(floor) or not heap or heap[0][0] > horizon:
                    break
            if nxt < n and (not heap or requests[nxt].arrival <= heap[0][0]):
                self.now = requests[nxt].arrival
                self.arrive(nxt)
                nxt += 1
                continue
            t, _, kind, payload, version = heapq.heappop(heap)
            self.now = t
            if kind == _EV_STEP:
                assert isinstance(payload, _Pod)
                self.on_step(payload, version)
            elif kind == _EV_READY:
                assert isinstance(payload, _Pod)
                self.on_ready(payload)
            elif kind == _EV_TIMEOUT:
                assert isinstance(payload, int)
                self.on_timeout(payload)
            elif kind == _EV_KILL:
                assert isinstance(payload, _Pod)
                self.on_kill(payload)
            elif kind == _EV_SCRAPE:
                self.scrape()
                self.push(t + self.s.scrape_interval, _EV_SCRAPE)
                if progress is not None and t - last_report >= 60:
                    progress(t)
                    last_report = t
            else:
                self.decide()
                while planned and planned[0] <= t:
                    planned.popleft()
                self.push(planned.popleft() if planned else t + interval, _EV_DECIDE)
        end = max(self.now, self.trace.duration)
        if self.ended == n and horizon < math.inf and not self.settled(floor):
            end = max(end, horizon)
        self.now = end
        self.record()
        signs = self.changes
        oscillations = sum(1 for a, b in itertools.pairwise(signs) if a != b)
        return Result(
            outcome=self.outcome, ttft=self.ttft, e2e=self.e2e, tpot=self.tpot, end_time=end,
            replica_seconds=self.replica_seconds, timeline=self.timeline,
            decisions=self.decisions, queue=self.queue, peak_queue=self.peak_queue,
            scale_events=len(signs), oscillations=oscillations,
            prefix_queries=sum(p.scheduler.prefix_cache.queries for p in self.pods
                               if p.scheduler.prefix_cache is not None),
            prefix_hits=sum(p.scheduler.prefix_cache.hits for p in self.pods
                            if p.scheduler.prefix_cache is not None),
            pod=self.pod_of,
        )


def simulate(trace: Trace, profile: Profile, policy: Autoscaler, settings: SimSettings,
             progress: Callable[[float], None] | None = None) -> Result:
    """Run ``trace`` through the simulated system under ``policy``; deterministic per seed."""
    return _Sim(trace, profile, policy, settings).run(progress)
