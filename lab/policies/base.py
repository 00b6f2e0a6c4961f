"""What an autoscaler in the lab sees and answers: the interface every policy implements.

The lab's simulator (``lab.engine``) runs the metrics pipeline as it is in a
cluster: engines expose gauges and counters, a Prometheus scrapes them every
``scrape_interval`` seconds, and a policy reads only what such a Prometheus
would answer at the moment it evaluates. ``MetricsView`` is that Prometheus,
frozen at one instant; a policy keeps whatever state it needs between calls.

Metric names are vLLM's (what the engines expose and what the baselines'
published configurations query) plus the gateway's:

- gauges per engine: ``vllm:num_requests_waiting``, ``vllm:num_requests_running``,
  ``vllm:kv_cache_usage_perc``;
- counters per engine: ``vllm:prompt_tokens_total``, ``vllm:generation_tokens_total``,
  ``vllm:request_success_total``;
- histograms per engine (``_bucket``/``_sum``/``_count``):
  ``vllm:time_to_first_token_seconds``, ``vllm:e2e_request_latency_seconds``,
  ``vllm:request_time_per_output_token_seconds``;
- the gateway: ``brix_gateway_requests_pending`` (gauge: requests held while
  the model has no ready pod), ``brix_gateway_requests_total`` (counter).

Nothing here does I/O or knows about simulated time beyond the ``now`` passed in.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Autoscaler", "MetricsView"]


class MetricsView(Protocol):
    """What Prometheus answers at one instant, over one model's series.

    Each method returns None where PromQL would return an empty result (no
    series yet, every series stale, or too few samples for a rate).
    """

    @property
    def now(self) -> float:
        """The evaluation time, seconds since the trace's start."""
        ...

    def sum(self, metric: str) -> float | None:
        """``sum(metric)``: the latest scraped sample of each live series, added up."""
        ...

    def avg(self, metric: str) -> float | None:
        """``avg(metric)`` over the live series."""
        ...

    def count(self, metric: str) -> int:
        """``count(metric)``: how many live series (0 when none)."""
        ...

    def sum_rate(self, metric: str, window: float) -> float | None:
        """``sum(rate(metric[window]))`` per second, with PromQL's extrapolation."""
        ...

    def avg_over_time(self, metric: str, window: float) -> float | None:
        """``sum(avg_over_time(metric[window]))``: each series' mean over the window, added up."""
        ...

    def histogram_quantile(self, q: float, metric: str, window: float) -> float | None:
        """``histogram_quantile(q, sum by (le) (rate(metric_bucket[window])))``."""
        ...


@runtime_checkable
class Autoscaler(Protocol):
    """One policy for one model's Deployment.

    The simulator calls ``decide`` every ``interval`` seconds of simulated time
    (first at ``interval``) with the Deployment's current ``replicas`` (its
    spec, starting pods included) and ``ready`` (pods that take requests), and
    sets the Deployment's replicas to the answer. A policy that would hold
    (e.g. its metrics are missing) answers ``replicas``.
    """

    interval: float
    """Seconds between decisions (the HPA's sync period, the loop's interval...)."""

    def decide(self, *, now: float, metrics: MetricsView, replicas: int, ready: int) -> int:
        """The desired replica count at ``now``."""
        ...
