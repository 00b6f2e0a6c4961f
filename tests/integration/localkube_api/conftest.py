"""One localkube (API only) per test module, and clients for it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from tests.helpers.localkube import start_localkube
from tests.helpers.procs import Proc, ProcessGroup

WATCH_HISTORY = 50  # small, so that a test can outrun it and see 410 Expired


@dataclass
class Localkube:
    proc: Proc
    kubeconfig: Path
    url: str


@pytest.fixture(scope="module")
def localkube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Localkube]:
    state = tmp_path_factory.mktemp("localkube")
    group = ProcessGroup(log_dir=state / "test-logs")
    try:
        proc, kubeconfig = start_localkube(
            group, state / "state", node=False,
            extra_args=["--watch-history", str(WATCH_HISTORY), "--bookmark-interval", "0.5"])
        assert proc.url is not None
        yield Localkube(proc=proc, kubeconfig=kubeconfig, url=proc.url)
    finally:
        group.stop_all()


@pytest.fixture(scope="module")
def api_client(localkube: Localkube) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(localkube.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def apps(api_client: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api_client)


@pytest.fixture
def namespace(core: client.CoreV1Api) -> str:
    """A fresh namespace for one test."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    return name


def eventually(check: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns a truthy value (returned) or fail at ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")
