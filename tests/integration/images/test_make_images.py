"""``python -m brix.images`` (``make images``): bad input is one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.procs import REPO

pytestmark = pytest.mark.images


def run_images(*args: str, path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "brix.images", *args], cwd=REPO,
                          env={"PATH": path}, capture_output=True, text=True, timeout=120,
                          check=False)


def test_without_podman_or_docker_it_says_what_to_install(tmp_path: Path) -> None:
    done = run_images(path=str(Path(sys.executable).parent))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "make images: no container engine: install podman (apt-get install podman) "
        "or start a Docker daemon"]


def test_an_unknown_component_is_refused_naming_the_choices() -> None:
    done = run_images("--only", "gateway,gatway", path=str(Path(sys.executable).parent))
    assert done.returncode == 1
    assert "unknown component(s) gatway: choose from controller, engine, gateway, sidecar" \
        in done.stderr


def test_a_second_run_with_nothing_changed_hands_nothing_to_the_builder(
        built_images: list[str]) -> None:
    # Each image carries the key of its inputs: one whose key matches is not rebuilt.
    done = subprocess.run([sys.executable, "-m", "brix.images", "--only",
                           "gateway,sidecar,controller"], cwd=REPO, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "building" not in done.stdout, done.stdout
    for tag in built_images:
        assert f"make images: {tag} is up to date (built from these inputs)" in done.stdout
    assert len(built_images) == 3
