"""Fixtures the scaler's integration modules share, per module: a static
exporter of known brix_* values and a real Prometheus scraping it (their
processes in the root conftest's ``module_procs``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.procs import ProcessGroup
from tests.helpers.prometheus import start_prometheus
from tests.helpers.scaler import StaticExporter, scrape_config


@pytest.fixture(scope="module")
def exporter() -> Iterator[StaticExporter]:
    with StaticExporter() as e:
        yield e


@pytest.fixture(scope="module")
def prom(module_procs: ProcessGroup, exporter: StaticExporter,
         tmp_path_factory: pytest.TempPathFactory) -> str:
    _, url = start_prometheus(module_procs, tmp_path_factory.mktemp("prom"),
                              scrape_config(exporter.target))
    return url
