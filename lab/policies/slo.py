"""``brix-slo``: brix's SLO policy (``scaler.slo``) observing what its scaler would query.

Every ``interval`` (the loop's 15 s) it reads, as Prometheus has them:

- the demand: ``sum(rate(brix_gateway_requests_total[1m]))``. The gateway counts a
  request when it answers it, so this trails arrivals by a request's latency;
  the queue term below covers what has arrived and not been answered. As the
  scaler does (``scaler.slo_signal``), an absent gateway series is not zero
  demand: the engines' count stands in (``vllm:request_success_total``), and
  with neither while pods serve the decision holds and says why;
- the queue (``vllm:num_requests_waiting`` + ``brix_gateway_requests_pending``)
  and ``vllm:num_requests_running``;
- the observed TTFT at the attainment quantile: ``histogram_quantile(attainment,
  sum by (le) (rate(vllm:time_to_first_token_seconds_bucket[1m])))``, and the
  observed TPOT likewise from ``vllm:request_time_per_output_token_seconds``
  (the requests that finished in the minute; the scaler reads the sidecar's
  ``brix_engine_time_per_output_token_seconds``, the same histogram);
- with a profile, the mean lengths: ``rate(vllm:prompt_tokens_total)`` and
  ``rate(vllm:generation_tokens_total)`` over ``rate(vllm:request_success_total)``.

Without a ``capacity`` or ``profile`` setting, a simulator may hand it the run's
timing profile through ``use_profile`` (the profile's JSON object) before the
first decision; the policy then starts from that profile as its prior.

A ``SloError`` while deciding (the capacity cannot be known yet) holds the
replicas, as the loop holds with a Warning Event; ``last_reason`` says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from lab.policies.base import MetricsView
from scaler.slo import Load, ProfileCapacity, SloError, SloPolicy, SloState, decide
from scaler.slo_signal import demand

__all__ = ["BrixSlo"]

REQUESTS = "brix_gateway_requests_total"
WAITING = "vllm:num_requests_waiting"
PENDING = "brix_gateway_requests_pending"
RUNNING = "vllm:num_requests_running"
TTFT = "vllm:time_to_first_token_seconds"
TPOT = "vllm:request_time_per_output_token_seconds"
PROMPT_TOKENS = "vllm:prompt_tokens_total"
OUTPUT_TOKENS = "vllm:generation_tokens_total"
SUCCESS = "vllm:request_success_total"


@dataclass
class BrixSlo:
    """``scaler.slo.decide`` over one model, every ``interval`` seconds."""

    policy: SloPolicy
    interval: float = 15.0
    rate_window: float = 60.0
    state: SloState = field(init=False, default_factory=SloState)
    last_reason: str = field(init=False, default="")
    """The last decision's one-line explanation (or the error that held it)."""

    def __post_init__(self) -> None:
        if not self.interval > 0:
            raise ValueError(f"interval must be > 0, got {self.interval}")
        if not self.rate_window > 0:
            raise ValueError(f"rate_window must be > 0, got {self.rate_window}")

    @property
    def min_replicas(self) -> int:
        """Its floor, where a simulator's run settles after the trace."""
        return self.policy.min_replicas

    def use_profile(self, profile: Mapping[str, object]) -> bool:
        """Take the run's timing profile as the capacity prior, unless the settings gave
        one; whether it was taken. ``SloError`` names a key the profile lacks."""
        if self.policy.capacity is not None or self.policy.profile is not None:
            return False
        self.policy = replace(self.policy, profile=ProfileCapacity.from_mapping(profile))
        return True

    def _mean(self, metrics: MetricsView, tokens: str) -> float | None:
        done = metrics.sum_rate(SUCCESS, self.rate_window)
        counted = metrics.sum_rate(tokens, self.rate_window)
        if not done or counted is None:
            return None
        return max(0.0, counted / done)

    def _rate(self, metrics: MetricsView, ready: int) -> float:
        rate = demand(metrics.sum_rate(REQUESTS, self.rate_window),
                      metrics.sum_rate(SUCCESS, self.rate_window), ready)
        if rate is None:
            raise SloError("rate", f"no series of {REQUESTS} nor {SUCCESS} although "
                           f"{ready} pod(s) serve: absent data is not zero demand")
        return rate

    def observe(self, metrics: MetricsView, replicas: int, ready: int) -> Load:
        """The load as the scaler's queries would measure it; ``SloError`` when no
        request rate is there to read."""
        return Load(
            prompt_tokens=self._mean(metrics, PROMPT_TOKENS),
            output_tokens=self._mean(metrics, OUTPUT_TOKENS),
            rate=self._rate(metrics, ready),
            queue=(metrics.sum(WAITING) or 0.0) + (metrics.sum(PENDING) or 0.0),
            running=metrics.sum(RUNNING) or 0.0,
            replicas=replicas, ready=ready,
            ttft=metrics.histogram_quantile(self.policy.slo.attainment, TTFT,
                                            self.rate_window),
            tpot=metrics.histogram_quantile(self.policy.slo.attainment, TPOT,
                                            self.rate_window))

    def decide(self, *, now: float, metrics: MetricsView, replicas: int, ready: int) -> int:
        try:
            load = self.observe(metrics, replicas, ready)
            decision, self.state = decide(self.policy, self.state, load, now)
        except SloError as exc:
            self.last_reason = f"holding {replicas}: {exc}"
            return replicas
        self.last_reason = decision.reason
        return decision.desired
