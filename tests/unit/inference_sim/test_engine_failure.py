"""When the scheduler loop fails, the sim says so instead of hanging its clients."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from brix.config import load_settings
from inference.sim.app import SimEngine, create_app
from inference.sim.scheduler import Step, StepResult


class Boom(RuntimeError):
    pass


def _broken_commit(step: Step, now: float) -> StepResult:
    raise Boom("simulated failure")


async def test_a_dead_scheduler_fails_requests_and_health(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    from inference.sim.settings import SimSettings

    settings = load_settings(SimSettings, ["--decode-ms-per-token", "1"], prog="t", environ={})
    engine = SimEngine(settings)
    monkeypatch.setattr(engine.scheduler, "commit", _broken_commit)
    app = create_app(engine)
    engine.runner.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://sim") as client:
            assert (await client.get("/health")).status_code == 200
            first = await client.post("/v1/completions", json={"prompt": "x", "max_tokens": 3})
            assert first.status_code == 503
            assert first.json()["error"]["type"] == "ServiceUnavailableError"
            assert engine.runner.dead
            assert (await client.get("/health")).status_code == 503
            again = await client.post("/v1/completions", json={"prompt": "x", "max_tokens": 3})
            assert again.status_code == 503
    finally:
        await engine.runner.stop()
        await asyncio.sleep(0)
    assert "scheduler loop stopped" in caplog.text
