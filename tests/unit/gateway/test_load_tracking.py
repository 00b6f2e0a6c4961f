"""Load tracking: in-flight counts and the sidecar's queue numbers."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import Gauge

from gateway.hold import wait_for_route
from gateway.load import LoadTracker, SidecarPoller, parse_queue
from gateway.metrics import GatewayMetrics
from gateway.table import Endpoint, PodState, RoutingTable
from tests.helpers.aio_server import serve

T = TypeVar("T")

SIDECAR_TEXT = """\
# HELP brix_engine_requests_waiting Requests queued in the engine, not yet scheduled.
# TYPE brix_engine_requests_waiting gauge
brix_engine_requests_waiting{model="m1"} 3.0
# TYPE brix_engine_requests_running gauge
brix_engine_requests_running{model="m1"} 7.0
brix_engine_requests_running_other 100
brix_engine_up{model="m1"} 1.0
"""


def test_parse_queue_reads_waiting_and_running() -> None:
    assert parse_queue(SIDECAR_TEXT) == (3, 7)
    assert parse_queue("brix_engine_requests_waiting 2\n") == (2, 0)
    assert parse_queue("brix_engine_up 1\n") is None
    assert parse_queue("brix_engine_requests_waiting{model=\"m\"} not-a-number\n") is None


def test_in_flight_counts_go_up_and_down() -> None:
    tracker = LoadTracker()
    a, b = Endpoint("a", "http://a:1"), Endpoint("b", "http://b:1")
    tracker.started(a)
    tracker.started(a)
    tracker.started(b)
    tracker.finished(b)
    tracker.queues[a.url] = (1, 2)
    cands = tracker.candidates([a, b])
    assert [(c.in_flight, c.waiting, c.running) for c in cands] == [(2, 1, 2), (0, None, None)]
    tracker.finished(a)
    tracker.finished(a)
    assert tracker.in_flight == {}


def _run(coro: Coroutine[Any, Any, T]) -> T:
    # A private loop, closed after: asyncio.run would also reset the thread's
    # current loop, orphaning the one the looptime plugin made for sync tests.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def _ready(table: RoutingTable) -> None:
    table.upsert("pods", ("default", "p1"),
                 PodState("default", "p1", "cold", Endpoint("p1", "http://10.0.0.1:8000")))


def _pending(gauge: Gauge, model: str) -> float:
    return float(gauge.labels(model)._value.get())


def test_a_held_request_is_pending_until_a_pod_is_ready() -> None:
    _run(_held_until_ready())


async def _wait_pending(gauge: Gauge, model: str, value: float) -> None:
    for _ in range(1000):
        if _pending(gauge, model) == value:
            return
        await asyncio.sleep(0)  # let the waiter run
    raise AssertionError(f"pending never became {value}")


async def _held_until_ready() -> None:
    table = RoutingTable(hold_models=["cold"])
    metrics = GatewayMetrics()
    waiter = asyncio.create_task(
        wait_for_route(table, "cold", hold_seconds=30, pending=metrics.pending))
    await _wait_pending(metrics.pending, "cold", 1)
    # Other changes wake it, but it keeps waiting until "cold" has an endpoint.
    table.upsert("pods", ("default", "x"), PodState("default", "x", "other", None))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    _ready(table)
    route = await asyncio.wait_for(waiter, 5)
    assert route is not None
    assert route.endpoints[0].name == "p1"
    assert _pending(metrics.pending, "cold") == 0


def test_a_hold_ends_empty_after_its_time() -> None:
    table = RoutingTable(hold_models=["cold"])
    metrics = GatewayMetrics()
    held = wait_for_route(table, "cold", hold_seconds=0.05, pending=metrics.pending)
    assert _run(held) is None
    assert _pending(metrics.pending, "cold") == 0


def test_a_cancelled_hold_is_no_longer_pending() -> None:
    _run(_cancelled_hold())


async def _cancelled_hold() -> None:
    table = RoutingTable(hold_models=["cold"])
    metrics = GatewayMetrics()
    waiter = asyncio.create_task(
        wait_for_route(table, "cold", hold_seconds=30, pending=metrics.pending))
    await _wait_pending(metrics.pending, "cold", 1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert _pending(metrics.pending, "cold") == 0


def test_sidecar_polls_run_only_while_least_queue_is_wanted() -> None:
    _run(_polls_on_demand())


async def _polls_on_demand() -> None:
    hits = 0

    async def metrics(_: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        return web.Response(text=SIDECAR_TEXT)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    tracker = LoadTracker()
    async with serve(app) as url, aiohttp.ClientSession() as client:
        endpoint = Endpoint("p1", "http://127.0.0.1:1", sidecar_url=url)
        # A poll times out after its interval: 0.05 s leaves a loaded machine room to
        # answer, and the wait below keeps wanting the queues, as a stream of least-queue
        # requests would, so a poll that timed out is simply retried.
        poller = SidecarPoller(tracker, lambda: [endpoint], interval=0.05, client=client,
                               idle_after=0.3)

        def seen() -> tuple[int | None, int | None]:
            (cand,) = tracker.candidates([endpoint])
            return cand.waiting, cand.running

        task = asyncio.create_task(poller.run())
        await asyncio.sleep(0.5)
        assert hits == 0, "polled although no request wanted the queues"
        assert seen() == (None, None)
        for _ in range(200):
            tracker.want_queues()
            if seen() != (None, None):
                break
            await asyncio.sleep(0.05)
        assert seen() == (3, 7)
        # No more requests want them: after idle_after the polls stop and the stale
        # numbers go (1.5 s is five times idle_after plus a poll).
        await asyncio.sleep(1.5)
        assert seen() == (None, None)
        paused_at = hits
        await asyncio.sleep(0.5)
        assert hits == paused_at
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_kv_cache_usage_is_read_from_the_sidecars_text() -> None:
    from gateway.load import parse_kv_cache

    text = ("# HELP brix_engine_kv_cache_usage_ratio KV\n"
            'brix_engine_kv_cache_usage_ratio{model="m"} 0.25\n'
            'brix_engine_kv_cache_usage_ratio{model="m-lora"} 0.5\n'
            "brix_engine_requests_waiting 3\n")
    assert parse_kv_cache(text) == 0.5
    assert parse_kv_cache("brix_engine_requests_waiting 3\n") is None
    assert parse_kv_cache("brix_engine_kv_cache_usage_ratio oops\n") is None
    assert parse_kv_cache("brix_engine_kv_cache_usage_ratio NaN\n") is None
    assert parse_kv_cache('brix_engine_kv_cache_usage_ratio{model="a"} NaN\n'
                          'brix_engine_kv_cache_usage_ratio{model="b"} 0.3\n') == 0.3


def test_prefill_counts_from_the_send_to_the_first_byte_or_the_end() -> None:
    tracker = LoadTracker()
    a, b = Endpoint("a", "http://a:1"), Endpoint("b", "http://b:1")
    tracker.started(a, 1000)
    tracker.started(a, 300)
    tracker.started(b)  # nothing to prefill (or not known): counts in flight only
    assert [(c.in_flight, c.prefill) for c in tracker.candidates([a, b])] == [(2, 1300), (1, 0)]
    tracker.prefilled(a, 1000)  # the long one's first byte came
    assert [c.prefill for c in tracker.candidates([a, b])] == [300, 0]
    tracker.finished(a)  # its stream ended, nothing of it still counted
    tracker.finished(a, 300)  # the short one failed before its first byte
    tracker.finished(b)
    assert tracker.prefill == {}
    assert tracker.in_flight == {}
