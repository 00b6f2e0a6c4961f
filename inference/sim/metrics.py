"""The sim's /metrics: vLLM's names, labels and buckets, on the sim's own registry.

Series carry vLLM's labels ``model_name`` (the served name) and ``engine``
("0"). Scheduler gauges are read from the scheduler at scrape time; counters
and histograms are fed by the runner after each step. ``vllm:lora_requests_info``
works as in vLLM: after each step the series labelled with the current
``running_lora_adapters``/``waiting_lora_adapters`` is set to the current time,
so readers take the series with the largest value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from inference.sim.scheduler import Scheduler, Sequence, StepResult

# vLLM 0.32's bucket bounds (vllm/v1/metrics/buckets.py).
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
                   60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
# vLLM's INTER_TOKEN_LATENCY_BUCKETS, which its per-request TPOT histogram uses.
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0)
LABELS = ("model_name", "engine")
MAX_LORA_INFO_SERIES = 32
ENGINE = "0"


class _SchedulerCollector(Collector):
    """Gauges read from the scheduler when scraped."""

    def __init__(self, scheduler: Scheduler, model_name: str) -> None:
        self._scheduler = scheduler
        self._labels = [model_name, ENGINE]

    def collect(self) -> Iterable[Metric]:
        s = self._scheduler
        for name, doc, value in (
            ("vllm:num_requests_running", "Number of requests in model execution batches.",
             s.num_running),
            ("vllm:num_requests_waiting", "Number of requests waiting to be processed.",
             s.num_waiting),
            ("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
             s.kv_usage),
        ):
            family = GaugeMetricFamily(name, doc, labels=LABELS)
            family.add_metric(self._labels, float(value))
            yield family


class SimMetrics:
    def __init__(
        self, *, scheduler: Scheduler, model_name: str, max_loras: int,
        clock: Callable[[], float],
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._scheduler = scheduler
        self._clock = clock
        self._max_loras = str(max_loras)
        self.registry.register(_SchedulerCollector(scheduler, model_name))
        labels = (model_name, ENGINE)
        self.prompt_tokens = Counter(
            "vllm:prompt_tokens", "Number of prefill tokens processed.", LABELS,
            registry=self.registry).labels(*labels)
        self.generation_tokens = Counter(
            "vllm:generation_tokens", "Number of generation tokens processed.", LABELS,
            registry=self.registry).labels(*labels)
        success = Counter(
            "vllm:request_success", "Count of successfully processed requests.",
            (*LABELS, "finished_reason"), registry=self.registry)
        self.success = {reason: success.labels(*labels, reason)
                        for reason in ("stop", "length", "abort")}
        self.ttft = Histogram(
            "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
            LABELS, buckets=TTFT_BUCKETS, registry=self.registry).labels(*labels)
        self.e2e = Histogram(
            "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
            LABELS, buckets=LATENCY_BUCKETS, registry=self.registry).labels(*labels)
        self.tpot = Histogram(
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
            LABELS, buckets=TPOT_BUCKETS, registry=self.registry).labels(*labels)
        self.queue_time = Histogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            LABELS, buckets=LATENCY_BUCKETS, registry=self.registry).labels(*labels)
        # vLLM counts these at admission, in tokens, whether or not prefix caching is
        # on (off: they stay 0, as vLLM's do).
        self.prefix_cache_queries = Counter(
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.", LABELS,
            registry=self.registry).labels(*labels)
        self.prefix_cache_hits = Counter(
            "vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.",
            LABELS, registry=self.registry).labels(*labels)
        self.lora_info = Gauge(
            "vllm:lora_requests_info", "Running stats on lora requests.",
            ("max_lora", "waiting_lora_adapters", "running_lora_adapters"),
            registry=self.registry)
        self._lora_label_sets: dict[tuple[str, str, str], None] = {}  # oldest first

    def observe_step(self, result: StepResult, *, reasons: dict[int, str]) -> None:
        """Count a committed step's tokens and latencies (``reasons``: id -> finish reason)."""
        if result.prompt_tokens:
            self.prompt_tokens.inc(result.prompt_tokens)
        if result.generation_tokens:
            self.generation_tokens.inc(result.generation_tokens)
        for seq in result.first_tokens:
            assert seq.first_token_at is not None
            self.ttft.observe(seq.first_token_at - seq.arrival)
        for seq in result.finished:
            assert seq.finished_at is not None
            self.e2e.observe(seq.finished_at - seq.arrival)
            tpot = seq.time_per_output_token
            assert tpot is not None
            self.tpot.observe(tpot)
            self.success[reasons.get(seq.id, "length")].inc()
        self.update_lora_info()

    def observe_admitted(self, seqs: Iterable[Sequence], now: float) -> None:
        caching = self._scheduler.prefix_cache is not None
        for seq in seqs:
            self.queue_time.observe(now - seq.arrival)
            if caching:
                self.prefix_cache_queries.inc(seq.prompt_tokens)
                self.prefix_cache_hits.inc(seq.cached_tokens)

    def observe_abort(self) -> None:
        self.success["abort"].inc()

    def update_lora_info(self) -> None:
        s = self._scheduler
        labels = (self._max_loras, ",".join(s.waiting_adapters()),
                  ",".join(s.running_adapters()))
        self.lora_info.labels(*labels).set(self._clock())
        # vLLM keeps every label set it ever used; the sim keeps the latest few,
        # which readers (who take the largest value) cannot tell apart.
        self._lora_label_sets.pop(labels, None)
        self._lora_label_sets[labels] = None
        while len(self._lora_label_sets) > MAX_LORA_INFO_SERIES:
            old = next(iter(self._lora_label_sets))
            del self._lora_label_sets[old]
            self.lora_info.remove(*old)

    def render(self) -> bytes:
        return generate_latest(self.registry)
