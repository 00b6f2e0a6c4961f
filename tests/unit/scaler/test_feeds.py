"""Shared evaluations behind StreamIsActive: one fetch per interval for all listeners."""

from __future__ import annotations

import asyncio

import looptime  # noqa: F401 - registers the fake-time marker
import pytest

from scaler.feeds import Feeds
from scaler.signals import PrometheusError


@pytest.mark.looptime
async def test_listeners_of_one_key_share_one_fetch_per_interval() -> None:
    calls = 0

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        return calls

    feeds: Feeds[int] = Feeds(interval=2.0)
    seen: dict[int, list[int]] = {}

    async def listen(i: int) -> None:
        async with feeds.listen("model", fetch) as feed:
            seen[i] = []
            async for outcome in feed.updates():
                assert outcome.value is not None
                seen[i].append(outcome.value)
                if len(seen[i]) == 3:
                    return

    await asyncio.gather(*(listen(i) for i in range(10)))
    assert calls == 3
    assert all(values == [1, 2, 3] for values in seen.values())
    assert len(feeds) == 0  # the last listener gone, the feed stopped
    await feeds.close()


@pytest.mark.looptime
async def test_keys_are_separate_and_errors_are_delivered() -> None:
    async def failing() -> int:
        raise PrometheusError("Prometheus at http://p is unreachable")

    async def fine() -> int:
        return 1

    feeds: Feeds[int] = Feeds(interval=1.0)
    async with feeds.listen("a", failing) as a, feeds.listen("b", fine) as b:
        assert len(feeds) == 2
        outcome_a = await anext(aiter(a.updates()))
        outcome_b = await anext(aiter(b.updates()))
    assert outcome_a.error is not None
    assert "unreachable" in str(outcome_a.error)
    assert outcome_b.value == 1
    assert len(feeds) == 0
