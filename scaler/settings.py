"""The scaler's settings: flags of ``python -m scaler``, each also a ``BRIX_*`` variable."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from brix.config import setting
from brix.contract import SCALER_GRPC_PORT, SCALER_HTTP_PORT


def _default_identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, kw_only=True)
class ScalerSettings:
    """brix scaler: a KEDA external scaler answered from PromQL, and a fallback scaling loop."""

    # --- serving -------------------------------------------------------------
    grpc_port: int = setting(SCALER_GRPC_PORT, help="gRPC port of the KEDA external scaler "
                             "(0: any free port).")
    http_port: int = setting(SCALER_HTTP_PORT, help="HTTP port of /metrics and /healthz "
                             "(0: any free port).")
    mode: str = setting("both", choices=["keda", "loop", "both"],
                        help="keda: the gRPC scaler only (needs no Kubernetes access); loop: "
                        "the fallback loop only; both.")
    tls_cert: str | None = setting(None, help="PEM certificate of the gRPC server (with "
                                   "--tls-key turns TLS on; KEDA's enableTLS/caCert).")
    tls_key: str | None = setting(None, help="PEM private key of the gRPC server.")
    tls_client_ca: str | None = setting(None, help="PEM CA that client certificates must chain "
                                        "to: requires them (mTLS; KEDA's tlsClientCert).")
    stream_interval: float = setting(1.5, help="Seconds between evaluations behind "
                                     "StreamIsActive (activation from zero is this quick).")
    keda_forget_after: float = setting(600.0, help="Seconds after KEDA's last call about a "
                                       "ScaledObject that the scaler forgets it (KEDA has no "
                                       "delete call): its SLO state and brix_scaler_* series.")
    log_level: str = setting("INFO", help="Log level.")

    # --- Prometheus ----------------------------------------------------------
    prometheus_url: str = setting("http://127.0.0.1:9090", help="Prometheus base URL (a "
                                  "trigger's prometheusAddress overrides it).")
    prometheus_timeout: float = setting(3.0, help="Seconds a Prometheus query may take.")
    cache_ttl: float = setting(5.0, help="Seconds an answer is reused: about one scrape "
                               "interval, so each model costs one query per interval.")

    # --- fallback loop -------------------------------------------------------
    kubeconfig: str | None = setting(None, help="Kubeconfig (else $KUBECONFIG, else in-cluster).",
                                     env="BRIX_KUBECONFIG")
    namespace: str = setting("", help="Only scale Deployments of this namespace ('' = all).")
    loop_interval: float = setting(15.0, help="Seconds between two passes of the fallback loop "
                                   "(the HPA's sync period).")
    lease_name: str = setting("brix-scaler", help="Lease that elects the one acting loop.")
    lease_namespace: str = setting("default", help="Namespace of that Lease (in a pod: its own "
                                   "namespace, from the downward API).")
    lease_duration: float = setting(15.0, help="Seconds a leader holds the Lease without renewing.")
    identity: str = setting("", help="This replica's name in the Lease ('' = $POD_NAME, else "
                            "host-pid).")
    stabilization_window: float = setting(300.0, help="Scale-down stabilisation window, "
                                          "seconds (HPA default).")
    scale_to_zero_cooldown: float = setting(300.0, help="Seconds inactive before a min-0 "
                                            "Deployment goes to zero (KEDA's default).")
    scale_period: float = setting(15.0, help="Seconds each rate limit counts over (HPA default).")
    panic_window: float = setting(0.0, help="Panic mode's window in seconds (0: off).")
    default_max_replicas: int = setting(10, help="Max replicas when the annotation is absent.")

    def __post_init__(self) -> None:
        for name in ("grpc_port", "http_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ValueError(f"--{name.replace('_', '-')}: not a port: {getattr(self, name)}")
        for name in ("stream_interval", "prometheus_timeout", "loop_interval", "lease_duration",
                     "scale_period", "keda_forget_after"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')}: must be > 0")
        for name in ("cache_ttl", "stabilization_window", "scale_to_zero_cooldown",
                     "panic_window"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')}: must be >= 0")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("--tls-cert and --tls-key go together")
        if self.tls_client_ca and not self.tls_cert:
            raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
        if not self.identity:
            object.__setattr__(self, "identity", _default_identity())

    @property
    def serves_grpc(self) -> bool:
        return self.mode in ("keda", "both")

    @property
    def runs_loop(self) -> bool:
        return self.mode in ("loop", "both")
