"""The sidecar of an inference pod (DESIGN.md: "Sidecar management API", "Metrics").

``python -m inference.sidecar --engine-url URL --port 8080`` (or ``brix-sidecar``)
serves, next to the engine of its pod:

- ``/metrics``: the engine's state under brix's names (``brix.contract``), read at
  scrape time, plus GPU metrics where NVML is present;
- ``/v1/adapters``: loading and unloading LoRA adapters on the engine;
- ``/healthz`` and ``/readyz``.

Modules, from the bottom up: ``settings``; ``engine_client`` (the engine's HTTP
API); ``engine_metrics`` and ``gpu`` (pure mappings to metric families, plus the
NVML reader); ``collector`` (one scrape); ``sources``, ``fetch``, ``extract``
(where an adapter comes from and how it lands in the cache); ``adapters`` (load
and unload, idempotent and serialised per name); ``readiness``; ``api`` (the
FastAPI app).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from brix.config import describe
from brix.serving import configure_logging, serve

from .api import create_app
from .settings import SidecarSettings, load

__all__ = ["SidecarSettings", "create_app", "main"]

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sidecar until SIGTERM/SIGINT; return the exit code."""
    settings = load(argv)
    configure_logging(settings.log_level)
    log.info("settings: %s", describe(settings))
    try:
        Path(settings.cache_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"brix-sidecar: cannot use the cache directory {settings.cache_dir} ({exc}); "
              "point --cache-dir (BRIX_CACHE_DIR) at a writable volume", file=sys.stderr)
        return 1
    serve(create_app(settings), name="brix-sidecar", port=settings.port,
          log_level=settings.log_level)
    return 0
