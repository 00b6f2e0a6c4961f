"""Fixtures for the sim engine's integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.helpers.procs import Proc, ProcessGroup
from tests.helpers.sim import FAST, start_sim

MODEL = "sim-base"


@pytest.fixture(scope="module")
def fast_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """One fast sim shared by a module's API tests."""
    group = ProcessGroup(log_dir=tmp_path_factory.mktemp("sim-logs"))
    try:
        yield start_sim(group, name=MODEL, extra_args=[*FAST, "--model", "/models/base"])
    finally:
        group.stop_all()


@pytest.fixture
def client(fast_sim: Proc) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=f"{fast_sim.url}/v1", api_key="unused", max_retries=0)
    try:
        yield c
    finally:
        c.close()
