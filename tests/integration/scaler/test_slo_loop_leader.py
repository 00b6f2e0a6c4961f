"""The fallback loop on signal slo across a loss of leadership: a later term starts afresh.

While a replica does not hold the Lease another may scale the Deployments on
what it saw, so what this one learnt before (the SLO policy's capacity, trend
and windows) is stale when it leads again. localkube (without its node) holds
the Deployment and the Lease; a real Prometheus scrapes this test's traffic
exporter (``test_slo_keda.Traffic``), whose first tokens meet the target, so
the policy learns its capacity upwards while it leads; the loop runs in this
process so that the test can take the Lease away and hand it back.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from scaler.kube import Kube
from scaler.loop import FallbackLoop
from scaler.metrics import ScalerMetrics
from scaler.prometheus import MetricsSource
from tests.helpers.procs import ProcessGroup
from tests.helpers.prometheus import start_prometheus
from tests.helpers.scaler import scrape_config
from tests.helpers.wait import wait_until
from tests.integration.scaler.test_fallback_loop_faults import settings
from tests.integration.scaler.test_slo_keda import Traffic, measured_rate
from tests.integration.scaler.test_slo_loop import slo_deployment

pytestmark = pytest.mark.integration

NAMESPACE = "slo-leader"
MODEL = "m-slo-loop"  # the model test_slo_loop.slo_deployment labels
CAPACITY = re.compile(r"capacity ([0-9.e+]+)/s")
DEMAND = re.compile(r"demand ([0-9.e+]+)/s")


@pytest.fixture(scope="module")
def traffic() -> Iterator[Traffic]:
    t = Traffic(ttft=1.0, model=MODEL, namespace=NAMESPACE)  # meets 2 s: learns upwards
    try:
        yield t
    finally:
        t.close()


@pytest.fixture(scope="module")
def prom(module_procs: ProcessGroup, traffic: Traffic,
         tmp_path_factory: pytest.TempPathFactory) -> str:
    _, url = start_prometheus(module_procs, tmp_path_factory.mktemp("prom"),
                              scrape_config(traffic.target))
    return url


def set_holder(api: client.ApiClient, holder: str, duration: int) -> None:
    """Write the scaler's Lease as another replica would (``""``: handed back)."""
    kube = Kube(api)
    record = kube.read_lease(NAMESPACE, "brix-scaler")
    assert record is not None
    kube.write_lease(NAMESPACE, "brix-scaler", holder=holder, duration=duration,
                     acquire_time="", transitions=record.transitions + 1,
                     resource_version=record.resource_version)


def decisions(records: list[logging.LogRecord]) -> list[tuple[str, float, float]]:
    """The loop's SLO decisions for the Deployment, in order: (reason, demand, capacity)."""
    found = []
    for r in records:
        message = r.getMessage()
        if message.startswith(f"{NAMESPACE}/llm: slo "):
            demand, capacity = DEMAND.search(message), CAPACITY.search(message)
            assert demand, message
            assert capacity, message
            found.append((message, float(demand.group(1)), float(capacity.group(1))))
    return found


def first_decisions_capacity(demand: float) -> float:
    """A first decision's capacity: the 1/s prior moved a gain of 0.2 (one period) of
    the way to the load per ready replica (one pod), as the targets were met."""
    return 1.0 + 0.2 * (demand - 1.0)


async def until(condition: Callable[[], Any], what: str, task: asyncio.Task[None],
                limit: float = 40.0) -> None:
    try:
        async with asyncio.timeout(limit):
            while not await asyncio.to_thread(condition):
                assert not task.done(), "the loop stopped"
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise TimeoutError(f"not within {limit}s: {what}") from None


async def test_a_regained_lease_decides_from_the_prior_not_the_learnt_capacity(
        api: client.ApiClient, prom: str, caplog: pytest.LogCaptureFixture) -> None:
    slo_deployment(api, NAMESPACE, "llm", {
        "brix.dev/autoscale-ttft": "2", "brix.dev/autoscale-initial-capacity": "1",
        "brix.dev/autoscale-utilization": "0.5", "brix.dev/autoscale-pod-start-seconds": "0"})
    await asyncio.to_thread(lambda: wait_until(lambda: measured_rate(prom, MODEL) > 8,
                                               "a request rate in Prometheus", timeout=60))
    loop = FallbackLoop(settings(NAMESPACE), api, source=MetricsSource(prom, cache_ttl=0.5),
                        metrics=ScalerMetrics())
    stop = asyncio.Event()
    caplog.set_level(logging.INFO, logger="scaler.loop")
    task = asyncio.create_task(loop.run(stop))
    try:
        # First term: the first decision starts from the prior (1/s, one period of
        # learning), and the targets met at ~10/s per replica raise it decision by decision.
        await until(lambda: len(decisions(caplog.records)) >= 1, "a first decision", task)
        first_reason, demand, first = decisions(caplog.records)[0]
        assert first_reason.startswith(f"{NAMESPACE}/llm: slo 1 -> "), first_reason
        assert first == pytest.approx(first_decisions_capacity(demand), rel=0.02), first_reason
        await until(lambda: decisions(caplog.records)[-1][2] > 1.3 * first,
                    "the capacity learnt upwards", task)
        learnt = decisions(caplog.records)[-1][2]

        # Another replica takes the Lease and scales the Deployment meanwhile.
        await asyncio.to_thread(set_holder, api, "other", 3600)
        await until(lambda: not loop.elector.is_leader(), "the Lease lost", task)
        client.AppsV1Api(api).patch_namespaced_deployment_scale(
            "llm", NAMESPACE, {"spec": {"replicas": 1}})
        term = loop.elector.term
        seen = len(caplog.records)

        # It hands the Lease back: the next term's first decision is a first decision.
        await asyncio.to_thread(set_holder, api, "", 3)
        await until(lambda: loop.elector.term > term and decisions(caplog.records[seen:]),
                    "a decision in the next term", task)
        reason, demand, regained = decisions(caplog.records[seen:])[0]
    finally:
        stop.set()
        await task
    # Met targets only raise the capacity: carried over, it would be above the learnt one.
    assert reason.startswith(f"{NAMESPACE}/llm: slo 1 -> "), reason
    assert regained == pytest.approx(first_decisions_capacity(demand), rel=0.02), reason
    assert regained < learnt, (reason, learnt)
