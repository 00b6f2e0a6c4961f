"""Fixtures the scaler's integration modules share: one process group, one
static exporter of known brix_* values, and a real Prometheus scraping it, per
module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.procs import ProcessGroup
from tests.helpers.prometheus import start_prometheus
from tests.helpers.scaler import StaticExporter, scrape_config


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessGroup]:
    g = ProcessGroup(log_dir=tmp_path_factory.mktemp("logs"))
    try:
        yield g
    finally:
        g.stop_all()


@pytest.fixture(scope="module")
def exporter() -> Iterator[StaticExporter]:
    e = StaticExporter()
    try:
        yield e
    finally:
        e.close()


@pytest.fixture(scope="module")
def prom(group: ProcessGroup, exporter: StaticExporter,
         tmp_path_factory: pytest.TempPathFactory) -> str:
    _, url = start_prometheus(group, tmp_path_factory.mktemp("prom"),
                              scrape_config(exporter.target))
    return url
