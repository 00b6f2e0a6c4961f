"""Readiness: a real completion first and after every failed check, the model list between."""

from __future__ import annotations

import pytest

from inference.sidecar.engine_client import EngineUnavailable, ServedModel
from inference.sidecar.readiness import Readiness

pytestmark = pytest.mark.unit

BASE = ServedModel("m1", parent=None, root=None)


class Engine:
    """The two calls readiness makes, answered as set; each call is counted."""

    def __init__(self) -> None:
        self.models_served = [BASE]
        self.down = False
        self.calls: list[str] = []

    async def models(self, *, timeout_s: float | None = None) -> list[ServedModel]:
        self.calls.append("models")
        if self.down:
            raise EngineUnavailable("refused")
        return self.models_served

    async def complete_one_token(self, model: str) -> None:
        self.calls.append(f"complete {model}")
        if self.down:
            raise EngineUnavailable("refused")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def checks(readiness: Readiness, engine: Engine, clock: Clock) -> tuple[bool, list[str]]:
    """One check past the cache: (ready, the calls it made)."""
    clock.now += 10.0
    engine.calls.clear()
    return (await readiness.check()).ready, engine.calls


def readiness_of(engine: Engine, clock: Clock) -> Readiness:
    return Readiness(engine, ttl=5.0, timeout=1.0, clock=clock)  # type: ignore[arg-type]


async def test_a_completion_first_then_the_model_list() -> None:
    engine, clock = Engine(), Clock()
    r = readiness_of(engine, clock)
    assert await checks(r, engine, clock) == (True, ["models", "complete m1"])
    assert await checks(r, engine, clock) == (True, ["models"])
    assert await checks(r, engine, clock) == (True, ["models"])


async def test_a_failed_check_asks_for_a_completion_again() -> None:
    engine, clock = Engine(), Clock()
    r = readiness_of(engine, clock)
    assert (await checks(r, engine, clock))[0]
    engine.down = True
    assert await checks(r, engine, clock) == (False, ["models"])
    engine.down = False
    assert await checks(r, engine, clock) == (True, ["models", "complete m1"])


async def test_an_engine_without_a_base_model_is_not_ready_and_completes_again_after() -> None:
    engine, clock = Engine(), Clock()
    r = readiness_of(engine, clock)
    assert (await checks(r, engine, clock))[0]
    engine.models_served = [ServedModel("ad1", parent="m1", root="/a")]
    assert await checks(r, engine, clock) == (False, ["models"])
    engine.models_served = [BASE]
    assert await checks(r, engine, clock) == (True, ["models", "complete m1"])


async def test_a_failed_completion_is_not_ready() -> None:
    engine, clock = Engine(), Clock()
    r = readiness_of(engine, clock)

    async def refuse(model: str) -> None:
        raise EngineUnavailable("busy")

    engine.complete_one_token = refuse  # type: ignore[method-assign]
    assert await checks(r, engine, clock) == (False, ["models"])
    assert "busy" in (await r.check()).detail
    del engine.complete_one_token  # answers again: the next check completes again
    assert await checks(r, engine, clock) == (True, ["models", "complete m1"])

