"""The operator's settings: one documented dataclass, loaded from flags and ``BRIX_*``.

Every field is a flag (``--resync-interval``) and an environment variable
(``BRIX_RESYNC_INTERVAL``); see :mod:`brix.config`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from brix.config import load_settings, setting


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Keep LoraAdapter objects loaded on the pods of their base model (Kopf operator)."""

    kubeconfig: str | None = setting(
        None, help="Kubeconfig file; else $KUBECONFIG, else the in-cluster service account.")
    namespaces: list[str] = setting(
        [], help="Namespaces to serve (comma-separated or repeated); empty: the whole cluster.")

    # --- the sidecars --------------------------------------------------------
    sidecar_token: str | None = setting(
        None, env="BRIX_SIDECAR_TOKEN", secret=True,
        help="Bearer token for the sidecars' management API; overrides the Secret.")
    sidecar_token_secret: str = setting(
        "brix-sidecar-token",
        help="Name of the Secret, in each adapter's namespace, holding the sidecar token; "
             "a missing Secret means no token.")
    sidecar_token_key: str = setting("token", help="Key of the token in that Secret.")
    sidecar_timeout: float = setting(
        30.0, help="Seconds a sidecar may take to list or unload adapters (a pod that takes "
                   "longer counts as unreachable).")
    load_timeout: float = setting(
        300.0, help="Seconds a sidecar may take to load an adapter: it may download an "
                    "archive and the engine reads the weights (the sidecar's own engine "
                    "timeout is 300 s too).")
    max_concurrent_calls: int = setting(
        64, help="Sidecar calls in flight at once, over all adapters (bounds sockets and the "
                 "load on the sidecars when many adapters converge together).")

    # --- the reconcile loop ----------------------------------------------------
    resync_interval: float = setting(
        30.0, help="Seconds between level-triggered re-syncs of an adapter that is converged; "
                   "pod and spec changes wake it at once, so this only catches drift "
                   "(e.g. an engine restarted without its adapters).")
    backoff_initial: float = setting(
        0.5, help="First retry delay in seconds after a sidecar could not be reached.")
    backoff_max: float = setting(
        30.0, help="Largest retry delay in seconds (the delay doubles per failed attempt).")
    refused_retry: float = setting(
        300.0, help="Seconds before a source a sidecar refused (a 4xx) is tried again, unless "
                    "the spec changes first: user errors are not retried in a tight loop.")
    delete_timeout: float = setting(
        120.0, help="Seconds a deletion keeps retrying pods that do not answer before the "
                    "finalizer is removed anyway (with a warning Event).")

    # --- serving -------------------------------------------------------------------
    port: int = setting(
        8082, help="Port of the operator's /metrics and /healthz (0: a free port). "
                   "Its pods name it `metrics`.")
    liveness_port: int = setting(
        8081, help="Port of Kopf's liveness endpoint /healthz (0: none).")

    # --- Kopf --------------------------------------------------------------------
    peering: str = setting(
        "brix-lora-operator",
        help="Kopf peering object name: replicas sharing it elect one active operator.")
    peering_mandatory: bool = setting(
        False, help="Refuse to run without the peering CRDs (else run standalone with a warning).")
    standalone: bool = setting(False, help="Run without peering at all (one replica only).")
    priority: int | None = setting(
        None, help="Peering priority: the running replica with the highest is active, the others "
                   "wait. Unset: a random one per process, because Kopf pauses every replica "
                   "when two share the highest priority.")
    log_level: str = setting("INFO", help="Log level.",
                             choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    def __post_init__(self) -> None:
        for name in ("sidecar_timeout", "load_timeout", "resync_interval", "backoff_initial",
                     "backoff_max"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name.replace('_', '-')} must be > 0")
        for name in ("refused_retry", "delete_timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name.replace('_', '-')} must be >= 0")
        for name in ("port", "liveness_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ValueError(f"{name.replace('_', '-')}: {getattr(self, name)} is not a port")
        if self.max_concurrent_calls < 1:
            raise ValueError("max-concurrent-calls must be >= 1")
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff-max must be >= backoff-initial")


def load(argv: Sequence[str] | None = None) -> Settings:
    """Settings from ``argv`` (default: the command line) and the environment."""
    return load_settings(Settings, argv, prog="python -m lora_operator")
