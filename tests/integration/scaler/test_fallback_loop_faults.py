"""The fallback loop's catch-alls: a defect met while measuring one Deployment, or
anywhere in a pass, is logged (and a Warning Event for the Deployment), and the
loop keeps going.

localkube (without its node) holds the Deployments and a real Prometheus
scrapes the shared ``StaticExporter``; the loop runs in this process so that a
fault can be put in one place: a ``MetricsSource`` that fails one model with an
error no part of brix expects (the others are measured in Prometheus), and
metrics that fail the first decision they record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from scaler.loop import FallbackLoop
from scaler.metrics import ScalerMetrics
from scaler.prometheus import MetricsSource
from scaler.settings import ScalerSettings
from scaler.signals import ModelSample, SourceKey
from tests.helpers.scaler import StaticExporter
from tests.integration.scaler.test_fallback_loop import (
    deployment,
    events,
    namespace,  # noqa: F401  (a fixture)
    replicas,
    scraped,
)

pytestmark = pytest.mark.integration


class FailingModel(MetricsSource):
    """Prometheus, except that measuring ``broken`` raises an unexpected error."""

    def __init__(self, url: str, broken: str) -> None:
        super().__init__(url, cache_ttl=0.5)
        self.broken = broken
        self.failures = 0

    async def model_sample(self, key: SourceKey, *, max_age: float | None = None) -> ModelSample:
        if key.model == self.broken:
            self.failures += 1
            raise RuntimeError("a defect while measuring")
        return await super().model_sample(key, max_age=max_age)


class FailsOnce(ScalerMetrics):
    """Metrics whose first recorded decision raises (a defect mid-pass)."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def decision(self, **kwargs: Any) -> None:
        if not self.failed:
            self.failed = True
            raise RuntimeError("a defect mid-pass")
        super().decision(**kwargs)


def settings(ns: str) -> ScalerSettings:
    return ScalerSettings(mode="loop", namespace=ns, lease_namespace=ns,
                          loop_interval=0.5, lease_duration=3, scale_period=1,
                          cache_ttl=0.5, identity="in-process")


async def run_until(loop: FallbackLoop, condition: Callable[[], bool], what: str) -> None:
    """Run the loop until ``condition`` holds (30 s at most), then stop it."""
    limit = 30.0
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        async with asyncio.timeout(limit):
            while not await asyncio.to_thread(condition):
                assert not task.done(), "the loop stopped"
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise TimeoutError(f"not within {limit}s: {what}") from None
    finally:
        stop.set()
        await task


async def test_a_defect_measuring_one_deployment_is_a_warning_and_the_others_scale(
        api: client.ApiClient, kubeconfig: Path, prom: str,
        exporter: StaticExporter, namespace: str) -> None:  # noqa: F811
    fine, broken = f"{namespace}-fine", f"{namespace}-broken"
    deployment(api, namespace, "fine", model=fine, replicas=1, target="2")
    deployment(api, namespace, "broken", model=broken, replicas=1, target="2")
    exporter.pod(fine, "p0", namespace=namespace, waiting=8)
    exporter.pod(broken, "p0", namespace=namespace, waiting=8)
    scraped(prom, f'sum(brix_engine_requests_waiting{{model="{fine}"}})', 8)
    source = FailingModel(prom, broken)
    loop = FallbackLoop(settings(namespace), api, source=source, metrics=ScalerMetrics())

    def warned() -> bool:
        return any(e.reason == "MetricsUnavailable" and e.type == "Warning"
                   for e in events(api, namespace, "broken"))
    await run_until(loop, lambda: replicas(api, namespace, "fine") == 4 and warned()
                    and source.failures >= 3,
                    "the other Deployment scaled, a Warning, and passes after it")
    (warning,) = [e for e in events(api, namespace, "broken") if e.reason == "MetricsUnavailable"]
    assert "RuntimeError: a defect while measuring" in warning.message
    assert "holding 1 replica(s)" in warning.message
    assert warning.count in (None, 1)  # once per problem, not once per pass
    assert replicas(api, namespace, "broken") == 1


async def test_a_defect_mid_pass_is_logged_and_the_next_pass_acts(
        api: client.ApiClient, kubeconfig: Path, prom: str,
        exporter: StaticExporter, namespace: str,  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    model = f"{namespace}-m"
    deployment(api, namespace, "engine", model=model, replicas=1, target="2")
    exporter.pod(model, "p0", namespace=namespace, waiting=6)
    scraped(prom, f'sum(brix_engine_requests_waiting{{model="{model}"}})', 6)
    metrics = FailsOnce()
    loop = FallbackLoop(settings(namespace), api, source=MetricsSource(prom, cache_ttl=0.5),
                        metrics=metrics)
    with caplog.at_level(logging.ERROR, logger="scaler.loop"):
        await run_until(loop, lambda: replicas(api, namespace, "engine") == 3,
                        "scaled to ceil(6/2) by a pass after the failed one")
    assert metrics.failed
    failed = [r for r in caplog.records if "the pass failed" in r.getMessage()]
    assert failed, "the failed pass is logged"
    assert failed[0].exc_info is not None
    assert "a defect mid-pass" in str(failed[0].exc_info[1])
    assert loop.healthy()[0]
