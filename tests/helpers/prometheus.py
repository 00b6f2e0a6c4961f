"""A real Prometheus (Debian's package) on a free loopback port, for tests."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.helpers.procs import Proc, ProcessGroup, free_port


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        raise RuntimeError("prometheus is not installed: `make test` installs Debian's package")
    return path


def start_prometheus(
    procs: ProcessGroup, workdir: Path, config: dict[str, Any], *, timeout: float = 30.0,
    port: int | None = None,
) -> tuple[Proc, str]:
    """Start Prometheus with ``config`` (a dict, written as YAML); return (proc, base URL).

    ``port``: a given port (to restart one where it was), else a free one.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "prometheus.yml"
    cfg.write_text(yaml.safe_dump(config))
    port = port or free_port()
    proc = procs.start(
        [
            prometheus_binary(),
            f"--config.file={cfg}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ],
        name="prometheus",
        ready=None,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.popen.poll() is not None:
            raise RuntimeError(f"prometheus exited: {proc.output()[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"prometheus not ready in {timeout}s: {proc.output()[-3000:]}")
        time.sleep(0.1)


def query(url: str, promql: str) -> list[dict[str, Any]]:
    """Run an instant query; return the result vector."""
    r = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5.0)
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result
