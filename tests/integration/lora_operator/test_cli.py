"""``python -m lora_operator`` on the command line: help, bad flags, no cluster."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.procs import REPO


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("BRIX_")}
    full.pop("KUBECONFIG", None)
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "lora_operator", *args], cwd=REPO, env=full,
                          capture_output=True, text=True, timeout=60, check=False)


def test_help_lists_every_setting_with_its_environment_variable() -> None:
    out = run("--help")
    assert out.returncode == 0
    for flag, env in (("--resync-interval", "BRIX_RESYNC_INTERVAL"),
                      ("--delete-timeout", "BRIX_DELETE_TIMEOUT"),
                      ("--liveness-port", "BRIX_LIVENESS_PORT"),
                      ("--sidecar-token-secret", "BRIX_SIDECAR_TOKEN_SECRET")):
        assert flag in out.stdout
        assert env in out.stdout


def test_a_bad_value_is_one_clear_line() -> None:
    out = run("--backoff-max", "soon")
    assert out.returncode == 2
    assert "--backoff-max / BRIX_BACKOFF_MAX: expected a number, got 'soon'" in out.stderr
    out = run(env={"BRIX_RESYNC_INTERVAL": "0"})
    assert out.returncode == 2
    assert "resync-interval must be > 0" in out.stderr


def test_no_cluster_configuration_fails_at_once(tmp_path: Path) -> None:
    out = run("--kubeconfig", str(tmp_path / "missing"))
    assert out.returncode == 1
    assert "--kubeconfig" in out.stderr
    assert "no such file" in out.stderr
    garbled = tmp_path / "kubeconfig"
    garbled.write_text("apiVersion: v1\nclusters: 3\n")
    out = run("--kubeconfig", str(garbled))
    assert out.returncode == 1
    assert "no usable Kubernetes configuration" in out.stderr
    assert "Traceback" not in out.stderr
