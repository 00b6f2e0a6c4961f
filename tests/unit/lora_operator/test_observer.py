"""Shared GET /v1/adapters calls: concurrent questions to one pod share one request."""

from __future__ import annotations

import asyncio

import httpx

from lora_operator.model import Loaded, PodInfo
from lora_operator.observer import Observer
from lora_operator.sidecar import Sidecars
from tests.unit.lora_operator._loop import in_new_loop

POD = PodInfo(namespace="ns", name="p", model="m", ip="10.0.0.9", ready=True)
OTHER = PodInfo(namespace="ns", name="q", model="m", ip="10.0.0.10", ready=True)


class SlowSidecar(httpx.AsyncBaseTransport):
    """Answers after a release, counting requests per host."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.release = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request.url.host)
        await self.release.wait()
        return httpx.Response(200, json={"object": "list", "data": [{"name": "sql"}]})


@in_new_loop
async def test_questions_in_flight_together_share_one_request() -> None:
    transport = SlowSidecar()
    sidecars = Sidecars(timeout=5, max_concurrent=8, transport=transport)
    observer = Observer(sidecars)
    try:
        calls = [asyncio.ensure_future(observer.list(POD, token=None)) for _ in range(5)]
        calls.append(asyncio.ensure_future(observer.list(OTHER, token=None)))
        await asyncio.sleep(0.05)
        transport.release.set()
        answers = await asyncio.gather(*calls)
    finally:
        await observer.aclose()
        await sidecars.aclose()
    assert answers == [(Loaded("sql"),)] * 6
    assert sorted(transport.requests) == ["10.0.0.10", "10.0.0.9"]


@in_new_loop
async def test_a_confirmation_waits_for_a_request_sent_after_it_asked() -> None:
    transport = SlowSidecar()
    sidecars = Sidecars(timeout=5, max_concurrent=8, transport=transport)
    observer = Observer(sidecars)
    try:
        first = asyncio.ensure_future(observer.list(POD, token=None))
        await asyncio.sleep(0.01)
        confirm = asyncio.ensure_future(
            observer.list(POD, token=None, not_before=observer.now()))
        joiner = asyncio.ensure_future(observer.list(POD, token=None))
        await asyncio.sleep(0.05)
        transport.release.set()
        await asyncio.gather(first, confirm, joiner)
    finally:
        await observer.aclose()
        await sidecars.aclose()
    assert transport.requests == ["10.0.0.9", "10.0.0.9"]  # the joiner rode along
