"""Test-suite wiring shared by every folder.

Markers come from the folder: tests/unit -> ``unit``, tests/integration ->
``integration``, tests/e2e -> ``e2e``. ``vllm`` is set by the tests that need a
real engine. Helpers that start real processes live in ``tests/helpers``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tests.helpers.procs import ProcessGroup

# Hypothesis's per-example deadline (200 ms) is a timed assertion: on a loaded
# two-core CI machine a correct property can miss it. Speed is measured in
# bench/, never asserted in a test, so no example has a deadline.
settings.register_profile("brix", deadline=None)
settings.load_profile("brix")

_FOLDER_MARKERS = {"unit": pytest.mark.unit, "integration": pytest.mark.integration,
                   "e2e": pytest.mark.e2e}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(__file__).parent
    for item in items:
        try:
            top = Path(item.path).relative_to(root).parts[0]
        except ValueError:
            continue
        marker = _FOLDER_MARKERS.get(top)
        if marker is not None:
            item.add_marker(marker)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcessGroup]:
    """Start servers for one test; all of them are stopped (and checked gone) after it."""
    group = ProcessGroup(log_dir=tmp_path / "logs")
    try:
        yield group
    finally:
        group.stop_all()


@pytest.fixture(scope="module")
def module_procs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessGroup]:
    """Like ``procs``, for servers that every test of a module can share."""
    group = ProcessGroup(log_dir=tmp_path_factory.mktemp("logs"))
    try:
        yield group
    finally:
        group.stop_all()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Any:
    """Close the event loop looptime makes for a sync test.

    looptime asks the event-loop policy for its loop around every test that has
    pytest-asyncio's autouse ``event_loop_policy``, sync tests included; on
    Python 3.11 that creates a loop no one closes, whose socket then raises a
    ResourceWarning (an error here) in whichever later test collects it.
    """
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        return (yield)
    policy = asyncio.get_event_loop_policy()
    local = getattr(policy, "_local", None)
    before = getattr(local, "_loop", None)
    try:
        return (yield)
    finally:
        made = getattr(local, "_loop", None)
        if before is None and made is not None and not made.is_running():
            made.close()
            policy.set_event_loop(None)
