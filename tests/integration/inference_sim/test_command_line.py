"""``python -m inference.sim`` as a process: ready line, bad flags, busy port."""

from __future__ import annotations

import socket
import subprocess
import sys

import httpx

from tests.helpers.procs import REPO, ProcessGroup
from tests.helpers.sim import start_sim


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "inference.sim", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env=env, check=False)


def test_ready_line_names_the_url_and_env_vars_configure_it(procs: ProcessGroup) -> None:
    engine = start_sim(procs, name="from-env", env={"BRIX_MAX_MODEL_LEN": "128"})
    assert engine.url is not None
    assert engine.url.startswith("http://127.0.0.1:")
    card = httpx.get(f"{engine.url}/v1/models").json()["data"][0]
    assert (card["id"], card["max_model_len"]) == ("from-env", 128)


def test_an_unknown_flag_exits_2_naming_it() -> None:
    result = _run("--port", "0", "--tensor-parallel-size", "2")
    assert result.returncode == 2
    assert "unrecognized arguments: --tensor-parallel-size" in result.stderr


def test_a_busy_port_exits_1_with_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run("--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 1
    assert "is the port in use?" in result.stderr
