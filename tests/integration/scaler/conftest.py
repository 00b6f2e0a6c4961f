"""Fixtures the scaler's integration modules share, per module: a static
exporter of known brix_* values and a real Prometheus scraping it, and a
localkube without a node with a client to it (their processes in the root
conftest's ``module_procs``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.helpers.localkube import start_localkube
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


@pytest.fixture(scope="module")
def kubeconfig(module_procs: ProcessGroup, tmp_path_factory: pytest.TempPathFactory) -> Path:
    _, path = start_localkube(module_procs, tmp_path_factory.mktemp("localkube"), node=False,
                              extra_args=["--no-persist"])
    return path


@pytest.fixture(scope="module")
def api(kubeconfig: Path) -> Iterator[client.ApiClient]:
    a = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        yield a
    finally:
        a.close()
