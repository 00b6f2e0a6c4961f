"""The engine entrypoint refuses to start with one clear line, before vLLM starts."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from inference.engine import main


def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    return d


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert captured.out == ""
    return lines[0]


def test_missing_model_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    assert main(["--backend", "vllm", "--model", str(missing), "--port", "0"]) == 2
    line = one_error_line(capsys)
    assert str(missing) in line
    assert "does not exist" in line
    assert "inference.tiny_model" in line  # says how to make one


def test_no_model_given(capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRIX_MODEL", raising=False)
    assert main(["--backend", "vllm", "--port", "0"]) == 2
    assert "--model" in one_error_line(capsys)


def test_a_directory_without_config_is_not_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--model", str(tmp_path), "--port", "0"]) == 2
    assert "config.json" in one_error_line(capsys)


def test_vllm_not_installed(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules is how Python marks a module as not importable.
    monkeypatch.setitem(sys.modules, "vllm", None)
    assert main(["--model", str(model_dir(tmp_path)), "--port", "0"]) == 2
    line = one_error_line(capsys)
    assert "vLLM is not installed" in line
    assert "pip install" in line


def test_port_busy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert main(["--model", str(model_dir(tmp_path)), "--host", "127.0.0.1",
                     "--port", str(port)]) == 2
    line = one_error_line(capsys)
    assert f"port {port}" in line
    assert "in use" in line


def test_unknown_backend_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--backend", "tgi", "--model", "m"])
    assert exc.value.code == 2
    assert "tgi" in capsys.readouterr().err


@pytest.mark.parametrize("nice", ["-1", "20"])
def test_a_niceness_outside_0_to_19_is_refused(
    nice: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--model", str(model_dir(tmp_path)), "--port", "0",
                 "--cpu-engine-nice", nice]) == 2
    line = one_error_line(capsys)
    assert "--cpu-engine-nice must be 0-19" in line
    assert f"got {nice}" in line
