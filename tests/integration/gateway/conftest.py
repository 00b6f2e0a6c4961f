"""Fixtures of the gateway's integration tests: processes shared by one module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.procs import ProcessGroup


@pytest.fixture(scope="module")
def module_procs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessGroup]:
    """Like ``procs``, for servers that every test of a module can share."""
    group = ProcessGroup(log_dir=tmp_path_factory.mktemp("logs"))
    try:
        yield group
    finally:
        group.stop_all()
