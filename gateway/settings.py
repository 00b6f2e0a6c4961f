"""The gateway's settings: one dataclass, loaded from flags and ``BRIX_*`` variables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from brix.config import setting

STRATEGIES: tuple[str, ...] = (
    "random", "round-robin", "least-request", "least-queue", "prefix-affinity", "prefix-cache",
    "least-prefill", "fleet-prefill",
)
"""The picker's strategies and the built-in profiles; --routing-config may add profiles."""

DEFAULT_ROUTING: Final[str] = "fleet-prefill"
"""``--routing``'s default, which the lab's ``--routing`` and the benchmarks follow."""


@dataclass(frozen=True, kw_only=True)
class GatewaySettings:
    """brix gateway: one OpenAI-compatible URL in front of the model pods."""

    # --- serving ---------------------------------------------------------------
    port: int = setting(8000, help="Port to listen on (0: the OS picks one).")
    host: str | None = setting(
        None, help="Address to bind (default: $BIND_HOST, else 0.0.0.0).", env="BRIX_GATEWAY_HOST",
    )
    log_level: str = setting("info", help="Log level.",
                             choices=["debug", "info", "warning", "error"])
    workers: int = setting(
        1, help="Processes serving the port (SO_REUSEPORT; one core each). With more than one, "
        "a supervising process runs discovery and the sidecar polls once and publishes them "
        "to the workers, whose in-flight counts per pod are shared (gateway/workers.py), so "
        "the load-aware strategies see the whole gateway's load; a worker that dies is "
        "restarted. 1 serves in this process, as a single gateway always has.",
    )

    # --- where models are -------------------------------------------------------
    discovery: str = setting(
        "auto",
        help="Where endpoints come from: 'kubernetes' watches Pods, Deployments and "
        "LoraAdapters; 'none' uses only --static-routes/--services; 'auto' watches when a "
        "Kubernetes configuration can be found (flag, $KUBECONFIG, ~/.kube/config, in-cluster).",
        choices=["auto", "kubernetes", "none"],
    )
    kubeconfig: str | None = setting(
        None, help="kubeconfig file (default: $KUBECONFIG, else in-cluster).",
    )
    namespaces: list[str] = setting(
        [], help="Namespaces to watch (comma-separated; default: all namespaces).",
    )
    static_routes: list[str] = setting(
        [], help="Fixed endpoints as MODEL=URL (repeat a model for several endpoints); "
        "these models need no discovery.",
    )
    services: list[str] = setting(
        [], help="Service mode, MODEL=SERVICE[.NAMESPACE][:PORT] (port 8000 by default): send "
        "the model to a Kubernetes Service instead of watching its pods.",
    )
    hold_models: list[str] = setting(
        [], help="Models that exist even with no ready pod and no Deployment in sight: their "
        "requests are held (scale from zero) instead of answered 404.",
    )

    # --- routing ----------------------------------------------------------------
    routing: str = setting(
        DEFAULT_ROUTING, help="Default strategy or profile (header x-brix-routing overrides it "
        f"per request): {', '.join(STRATEGIES)}, or a profile of --routing-config. "
        "fleet-prefill by default (the fleet-prefill scorer, gateway/scoring.py: the pod with "
        "the least prompt to prefill before this request's first token, what its prefix cache "
        "holds counted, and once every pod has a backlog a charge for a cache hit given up): "
        "best or tied for best at 4 and at 16 replicas on every workload of "
        "bench/routing/RESULTS.md, and least-request itself while no prompt is in prefill.",
    )
    routing_config: str | None = setting(
        None, help="Routing config file (YAML): profiles of weighted scorers and filters, and "
        "the prefix index's bounds (see gateway/routing.example.yaml).",
    )
    prefix_chars: int = setting(
        256, help="How many characters of the prompt prefix-affinity hashes: enough to cover "
        "a shared system prompt, short enough to be cheap.",
    )
    prefix_load_factor: float = setting(
        1.25, help="prefix-affinity's load bound: a pod takes a request while its in-flight "
        "count stays within this factor of the mean (1.25 as in consistent hashing with "
        "bounded loads; lower spreads more, higher sticks more).",
    )
    seed: int | None = setting(None, help="Seed of the random strategy (tests, benchmarks).")
    sidecar_poll_interval: float = setting(
        1.0, help="Seconds between polls of each pod's sidecar /metrics for least-queue "
        "(Prometheus scrapes no faster than this either).",
    )
    sidecar_poll_idle: float = setting(
        60.0, help="Seconds without a least-queue request after which the sidecar polls "
        "pause (the next least-queue request resumes them); 0 polls always.",
    )

    # --- proxying ---------------------------------------------------------------
    connect_timeout: float = setting(
        2.0, help="Seconds to open a connection to a pod; a pod on the same network answers "
        "in milliseconds, so past this it is taken as down and another is tried.",
    )
    first_byte_timeout: float = setting(
        300.0, help="Seconds to wait for the first byte of an answer, and at most between two "
        "bytes of a stream (a non-streamed completion sends nothing until it is done).",
    )
    total_timeout: float = setting(
        900.0, help="Seconds an answer may take in all, checked as bytes arrive.",
    )
    retries: int = setting(
        2, help="Other pods to try when a connection fails before any byte came back.",
    )
    max_body_bytes: int = setting(
        8 * 1024 * 1024, help="Largest request body accepted (413 above it).",
    )
    max_connections: int = setting(
        2048, help="Open connections to pods, all together (a pool per gateway process).",
    )
    hold_timeout: float = setting(
        60.0, help="Seconds to hold a request for a model that exists with no ready pod "
        "(scale from zero) before answering 503.",
    )
    retry_after: int = setting(
        10, help="Retry-After seconds sent with a 503 after a hold.",
    )
    reconnect_hold: float = setting(
        60.0, help="Seconds to hold a request whose every pod refused the connection (an "
        "engine restarting) before answering 502: it is retried as pods come and go, on "
        "another pod or on the restarted one; 0 answers 502 at once. Set it above the "
        "engine's restart time: a vLLM restart took 34-49 s with the tiny model on 2 CPU "
        "cores, up to 67 s beside a second busy engine; a large model on a GPU takes longer.",
    )

    # --- overload and abuse ------------------------------------------------------
    max_in_flight: int = setting(
        4096, help="Completion requests taken on at once, in any state (reading the body, "
        "held, proxied, streaming); beyond it 429 with Retry-After. Per worker process "
        "(--workers).",
    )
    max_pending: int = setting(
        1024, help="Requests held at once (no ready pod yet); beyond it 503 with Retry-After. "
        "Per worker process (--workers).",
    )
    overload_retry_after: int = setting(
        1, help="Retry-After seconds sent with a 429 or a 503 for overload.",
    )
    body_timeout: float = setting(
        30.0, help="Seconds for a request body to arrive in full once its headers have; "
        "beyond it 408 (a client sending its body slowly holds nothing longer).",
    )
    header_timeout: float = setting(
        10.0, help="Seconds for a request's line and headers to arrive; beyond it 408 and "
        "the connection is closed (slowloris).",
    )
    keep_alive_timeout: float = setting(
        75.0, help="Seconds an idle kept-alive client connection stays open. Keep it above "
        "the idle timeout of what sits in front (ingress-nginx's upstream keep-alive 60 s, "
        "AWS ALB 60 s): below it, that proxy can send a request on a connection the gateway "
        "is closing, and answer its client 502.",
    )
    max_header_bytes: int = setting(
        64 * 1024, help="Largest request line and headers accepted; beyond it 431 and the "
        "connection is closed.",
    )

    # --- access -----------------------------------------------------------------
    api_keys_file: str | None = setting(
        None, help="File with accepted API keys, one per line (a mounted Secret); when this "
        "or --api-keys is set, /v1/* needs 'Authorization: Bearer KEY'.",
    )
    api_keys: list[str] = setting(
        [], help="Accepted API keys (comma-separated).", env="BRIX_GATEWAY_API_KEYS", secret=True,
    )

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "first_byte_timeout", "total_timeout",
                     "sidecar_poll_interval", "body_timeout", "header_timeout",
                     "keep_alive_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1 (got {self.workers})")
        if self.hold_timeout < 0:
            raise ValueError("hold_timeout must be >= 0")
        if self.sidecar_poll_idle < 0:
            raise ValueError("sidecar_poll_idle must be >= 0")
        for name in ("max_in_flight", "max_pending", "max_header_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.reconnect_hold < 0:
            raise ValueError("reconnect_hold must be >= 0")
        if self.overload_retry_after < 0:
            raise ValueError("overload_retry_after must be >= 0")
        if self.retries < 0:
            raise ValueError("retries must be >= 0")
        if self.max_body_bytes <= 0:
            raise ValueError("max_body_bytes must be > 0")
        if self.prefix_load_factor < 1.0:
            raise ValueError("prefix_load_factor must be >= 1")
        if self.prefix_chars <= 0:
            raise ValueError("prefix_chars must be > 0")
