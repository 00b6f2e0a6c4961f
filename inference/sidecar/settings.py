"""The sidecar's settings: one documented dataclass, loaded from flags and ``BRIX_*`` env.

See ``brix.config`` for how each field becomes a flag (``--engine-url``) and an
environment variable (``BRIX_ENGINE_URL``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from brix.config import load_settings, setting
from brix.contract import ENGINE_PORT, SIDECAR_PORT

PROG = "python -m inference.sidecar"


def default_engine_url(environ: Mapping[str, str] | None = None) -> str:
    """``http://$POD_IP:8000``: containers of a pod reach each other at the pod's address.

    Falls back to 127.0.0.1 when ``POD_IP`` is unset (a plain process on a laptop).
    """
    env = os.environ if environ is None else environ
    host = env.get("POD_IP") or "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 pod address
    return f"http://{host}:{ENGINE_PORT}"


def _default_cache_dir() -> str:
    # Not tempfile.gettempdir(): it probes the disk, and raises on a read-only root
    # filesystem (the pod's), where --cache-dir names a mounted volume anyway.
    return str(Path(os.environ.get("TMPDIR") or "/tmp") / "brix-adapters")  # noqa: S108


@dataclass(frozen=True, kw_only=True)
class SidecarSettings:
    """Sidecar of an inference pod: engine metrics under brix names, and the adapter API."""

    engine_url: str = setting(
        "", help="Base URL of the engine in this pod. Empty: http://$POD_IP:8000 "
        "(http://127.0.0.1:8000 when POD_IP is unset).",
    )
    port: int = setting(SIDECAR_PORT, help="Port to listen on (0: a free port).")
    token: str | None = setting(
        None, help="Bearer token required by the adapter API; none: the API is open. "
        "/metrics, /healthz and /readyz stay open.",
        env="BRIX_SIDECAR_TOKEN", secret=True,
    )
    model: str | None = setting(
        None, help="Value of the `model` label on exported metrics. None: the engine's "
        "served base model, read from its /v1/models.",
    )
    adapter_roots: list[str] = setting(
        [], help="Directories that file:// adapter sources must resolve into "
        "(comma-separated or repeated). None given: file:// sources are refused.",
    )
    cache_dir: str = setting(
        _default_cache_dir(), help="Where downloaded adapters are extracted. The engine "
        "reads them from here, so in a pod this is a volume both containers mount.",
    )
    max_download_bytes: int = setting(
        1 << 30, help="Largest adapter archive accepted, in bytes (1 GiB: a rank-64 "
        "adapter of a 70B model is about 0.5 GiB).",
    )
    max_extracted_bytes: int = setting(
        4 << 30, help="Largest total size of an archive's extracted files, in bytes "
        "(guards against archive bombs).",
    )
    max_body_bytes: int = setting(
        64 << 10, help="Largest request body the API accepts, in bytes (413 beyond).",
    )
    metrics_timeout: float = setting(
        2.0, help="Seconds to wait for the engine's /metrics and /v1/models at scrape "
        "time; an engine slower than this counts as down (brix_engine_up 0).",
    )
    engine_timeout: float = setting(
        300.0, help="Seconds to wait for the engine to load or unload an adapter "
        "(loading reads the weights and can take minutes for large adapters).",
    )
    download_timeout: float = setting(
        600.0, help="Seconds to allow for downloading one adapter archive.",
    )
    ready_timeout: float = setting(
        10.0, help="Seconds to wait for the readiness completion.",
    )
    ready_cache_seconds: float = setting(
        5.0, help="How long a /readyz answer is reused, so that frequent probes do not "
        "put load on the engine.",
    )
    log_level: str = setting(
        "info", help="Log level.", choices=("debug", "info", "warning", "error"),
    )

    def __post_init__(self) -> None:
        if not self.engine_url:
            object.__setattr__(self, "engine_url", default_engine_url())
        object.__setattr__(self, "engine_url", self.engine_url.rstrip("/"))
        if not self.engine_url.startswith(("http://", "https://")):
            raise ValueError(f"--engine-url: expected an http(s) URL, got {self.engine_url!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port: {self.port} is not a port number")
        if self.token == "":
            object.__setattr__(self, "token", None)
        for name in ("max_download_bytes", "max_extracted_bytes", "max_body_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')}: must be positive")
        for name in ("metrics_timeout", "engine_timeout", "download_timeout", "ready_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')}: must be positive")
        roots = [r for r in self.adapter_roots if r]
        for root in roots:
            if not Path(root).is_absolute():
                raise ValueError(f"--adapter-roots: {root!r} is not an absolute path")
        object.__setattr__(self, "adapter_roots", roots)

    def replace(self, **changes: object) -> SidecarSettings:
        """A copy with some fields changed (tests and tools)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def load(argv: Sequence[str] | None = None) -> SidecarSettings:
    """Settings from ``argv`` (default ``sys.argv[1:]``) and the environment."""
    return load_settings(SidecarSettings, argv, prog=PROG)
