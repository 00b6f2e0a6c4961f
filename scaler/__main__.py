"""``python -m scaler`` (``brix-scaler``): see ``scaler.settings.ScalerSettings`` for the flags."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

from brix.config import describe, load_settings
from brix.serving import configure_logging, install_signal_exit
from scaler.metrics import ScalerMetrics
from scaler.prometheus import MetricsSource
from scaler.settings import ScalerSettings

log = logging.getLogger("scaler")


async def _main(settings: ScalerSettings) -> int:
    from scaler import app

    stop = asyncio.Event()
    install_signal_exit(asyncio.get_running_loop(), stop)
    make_loop = None
    if settings.runs_loop:
        from scaler.kube import KubeError, connect
        from scaler.loop import FallbackLoop

        try:
            api = connect(settings.kubeconfig)
        except KubeError as exc:
            hint = " (or run --mode keda, which needs Prometheus only)" if \
                settings.mode == "both" else ""
            print(f"scaler: --mode {settings.mode}: {exc}{hint}", file=sys.stderr)
            return 2

        def make_loop(source: MetricsSource, metrics: ScalerMetrics) -> FallbackLoop:
            return FallbackLoop(settings, api, source=source, metrics=metrics)

    try:
        await app.run(settings, stop, make_loop=make_loop)
    except OSError as exc:
        print(f"scaler: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    settings = load_settings(ScalerSettings, argv, prog="python -m scaler")
    configure_logging(settings.log_level)
    log.info("settings: %s", describe(settings))
    return asyncio.run(_main(settings))


if __name__ == "__main__":
    sys.exit(main())
