"""A vLLM-compatible simulator engine (the ``sim`` backend of ``inference.engine``).

``python -m inference.sim --served-model-name NAME --port 8000`` serves vLLM's
OpenAI API, LoRA routes and metrics with deterministic text and a timing
model (prefill speed, a decode step that grows with the batch,
``--max-num-seqs``, a KV cache in tokens), for scale and load tests where a
real engine per replica is too heavy.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from brix.config import describe, load_settings
from brix.serving import configure_logging, serve

__all__ = ["main"]

PROG = "python -m inference.sim"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sim until SIGTERM/SIGINT; argparse exits 2 on a bad or unknown flag."""
    from inference.sim.app import SimEngine, create_app
    from inference.sim.settings import SimSettings

    settings = load_settings(SimSettings, argv, prog=PROG)
    configure_logging(settings.log_level)
    logging.getLogger(__name__).info("sim settings: %s", describe(settings))
    engine = SimEngine(settings)
    serve(create_app(engine), name="brix sim engine", port=settings.port, host=settings.host,
          log_level="warning" if settings.log_level == "info" else settings.log_level)
    return 0
