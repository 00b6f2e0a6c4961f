"""What ``GET /metrics`` answers: the engine's state read at scrape time, plus NVML.

Each scrape reads the engine's /metrics and /v1/models concurrently, maps them
(``engine_metrics``), adds the GPU readings (``gpu``), and renders one registry
of custom collectors with client_python's exposition (text or OpenMetrics, as
the scraper asks). Nothing is cached between scrapes, so an engine that stops
answering shows as ``brix_engine_up 0`` with no stale engine values.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .engine_client import EngineClient, EngineError, ServedModel
from .engine_metrics import engine_down_families, engine_families, parse_exposition
from .gpu import Nvml, gpu_families

log = logging.getLogger(__name__)


class _Families(Collector):
    """A collector yielding families read for this one scrape."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


class ModelLabel:
    """The ``model`` label: the configured one, else the engine's base model once seen."""

    def __init__(self, configured: str | None) -> None:
        self._configured = configured
        self._seen: str | None = None

    def observe(self, models: Sequence[ServedModel]) -> None:
        base = next((m.id for m in models if not m.is_adapter), None)
        if base is not None:
            self._seen = base

    @property
    def value(self) -> str:
        return self._configured or self._seen or ""


class MetricsCollector:
    """Reads the engine and NVML at scrape time. ``nvml`` None: no GPU series."""

    def __init__(self, engine: EngineClient, *, model: ModelLabel, nvml: Nvml | None) -> None:
        self._engine = engine
        self._model = model
        self._nvml = nvml

    async def families(self) -> list[Metric]:
        text, models = await asyncio.gather(
            self._engine.metrics_text(), self._engine.models(), return_exceptions=True,
        )
        adapters: int | None = None
        if isinstance(models, BaseException):
            if not isinstance(models, EngineError):
                raise models
        else:
            self._model.observe(models)
            adapters = sum(1 for m in models if m.is_adapter)
        model = self._model.value
        out: list[Metric]
        if isinstance(text, BaseException):
            if not isinstance(text, EngineError):
                raise text
            log.debug("engine /metrics: %s", text)
            out = engine_down_families(model=model)
        else:
            try:
                out = engine_families(parse_exposition(text), model=model,
                                      adapters_loaded=adapters)
            except ValueError as exc:
                log.warning("%s", exc)
                out = engine_down_families(model=model)
        if self._nvml is not None:
            out.extend(gpu_families(self._nvml.read(), model=model))
        return out

    async def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition body and its content type, for a scraper's Accept header."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(await self.families()))
        encoder, content_type = choose_encoder(accept or "")
        return encoder(registry), content_type
