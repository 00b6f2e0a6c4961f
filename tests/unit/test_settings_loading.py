from __future__ import annotations

from dataclasses import dataclass

import pytest

from brix.config import describe, load_settings, setting


@dataclass(frozen=True, kw_only=True)
class _Settings:
    """Example settings."""

    port: int = setting(8080, help="Port.")
    engine_url: str = setting("http://x:8000", help="Engine URL.")
    token: str | None = setting(None, help="Token.", env="BRIX_SIDECAR_TOKEN", secret=True)
    verbose: bool = setting(False, help="Verbose.")
    roots: list[str] = setting([], help="Roots.")
    ratio: float = setting(0.5, help="Ratio.")
    mode: str = setting("both", help="Mode.", choices=["keda", "loop", "both"])


def test_defaults_when_nothing_given() -> None:
    s = load_settings(_Settings, [], prog="t", environ={})
    assert s == _Settings()
    assert s.roots == []


def test_environment_then_flag_precedence() -> None:
    env = {"BRIX_PORT": "9000", "BRIX_SIDECAR_TOKEN": "sekrit", "BRIX_ROOTS": "/a, /b",
           "BRIX_VERBOSE": "true", "BRIX_RATIO": "0.25"}
    s = load_settings(_Settings, [], prog="t", environ=env)
    assert (s.port, s.token, s.roots, s.verbose, s.ratio) == (
        9000, "sekrit", ["/a", "/b"], True, 0.25,
    )
    s = load_settings(_Settings, ["--port", "7000", "--roots", "/c", "--roots", "/d,/e",
                                  "--no-verbose"], prog="t", environ=env)
    assert (s.port, s.roots, s.verbose) == (7000, ["/c", "/d", "/e"], False)


@pytest.mark.parametrize(
    ("argv", "env", "needle"),
    [
        (["--port", "eighty"], {}, "--port / BRIX_PORT: expected an integer"),
        ([], {"BRIX_VERBOSE": "maybe"}, "expected a boolean"),
        ([], {"BRIX_MODE": "sideways"}, "not one of keda, loop, both"),
        (["--mode", "sideways"], {}, "invalid choice"),
    ],
)
def test_bad_values_exit_with_one_clear_line(
    argv: list[str], env: dict[str, str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        load_settings(_Settings, argv, prog="t", environ=env)
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err


def test_describe_masks_secrets() -> None:
    s = load_settings(_Settings, ["--token", "abc"], prog="t", environ={})
    assert describe(s)["token"] == "***"
    assert describe(s)["port"] == 8080
