"""The sidecar's settings: flags, BRIX_* env, defaults, refusals."""

from __future__ import annotations

import pytest

from brix.config import describe, load_settings
from inference.sidecar.settings import PROG, SidecarSettings, default_engine_url


def _load(argv: list[str], env: dict[str, str] | None = None) -> SidecarSettings:
    return load_settings(SidecarSettings, argv, prog=PROG, environ=env or {})


def test_engine_url_defaults_to_the_pod_address(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_engine_url({"POD_IP": "10.1.2.3"}) == "http://10.1.2.3:8000"
    assert default_engine_url({"POD_IP": "fd00::7"}) == "http://[fd00::7]:8000"
    assert default_engine_url({}) == "http://127.0.0.1:8000"
    monkeypatch.setenv("POD_IP", "127.0.0.9")
    assert _load([]).engine_url == "http://127.0.0.9:8000"
    monkeypatch.delenv("POD_IP")
    assert _load([]).engine_url == "http://127.0.0.1:8000"


def test_defaults() -> None:
    s = _load(["--engine-url", "http://e:8000/"])
    assert s.engine_url == "http://e:8000"  # no trailing slash
    assert s.port == 8080
    assert s.token is None
    assert s.model is None
    assert s.adapter_roots == []


def test_flags_and_env() -> None:
    s = _load(
        ["--port", "0", "--adapter-roots", "/a,/b", "--adapter-roots", "/c",
         "--model", "llama"],
        {"BRIX_SIDECAR_TOKEN": "s3cret", "BRIX_ENGINE_URL": "http://10.0.0.1:8000",
         "BRIX_MAX_DOWNLOAD_BYTES": "1000", "BRIX_CACHE_DIR": "/cache"},
    )
    assert (s.port, s.token, s.model) == (0, "s3cret", "llama")
    assert s.adapter_roots == ["/a", "/b", "/c"]
    assert s.engine_url == "http://10.0.0.1:8000"
    assert (s.max_download_bytes, s.cache_dir) == (1000, "/cache")
    assert describe(s)["token"] == "***"
    assert "s3cret" not in repr(describe(s))


def test_an_empty_token_means_no_token() -> None:
    assert _load([], {"BRIX_SIDECAR_TOKEN": ""}).token is None


@pytest.mark.parametrize("argv", [
    ["--engine-url", "10.0.0.1:8000"],
    ["--port", "70000"],
    ["--port", "http"],
    ["--adapter-roots", "relative/dir"],
    ["--max-download-bytes", "0"],
    ["--metrics-timeout", "-1"],
    ["--log-level", "loud"],
])
def test_bad_values_exit_with_one_line_naming_the_flag(
    argv: list[str], capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        _load(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert argv[0] in err.splitlines()[-1]
