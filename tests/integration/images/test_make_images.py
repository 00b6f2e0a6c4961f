"""``python -m brix.images`` (``make images``): bad input is one clear line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.procs import REPO

pytestmark = pytest.mark.images


def run_images(*args: str, path: str,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "brix.images", *args], cwd=REPO,
                          env={"PATH": path, **(env or {})}, capture_output=True, text=True,
                          timeout=120, check=False)


def test_without_podman_or_docker_it_says_what_to_install(tmp_path: Path) -> None:
    done = run_images(path=str(Path(sys.executable).parent))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "make images: no container engine: install podman (apt-get install podman) "
        "or start a Docker daemon"]


def test_a_base_that_cannot_be_built_is_one_line_naming_what_failed(tmp_path: Path) -> None:
    # A podman with an empty image store and docker.io blocked (the default base cannot
    # be pulled), on a PATH without debootstrap: the local base cannot be built.
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (make test installs it)")
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in ("podman", "git"):
        found = shutil.which(name)
        assert found is not None, name
        (tools / name).symlink_to(found)
    storage, registries = tmp_path / "storage.conf", tmp_path / "registries.conf"
    graph, run = tmp_path / "graph", tmp_path / "run"
    storage.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{graph}"\n'
                       f'runroot = "{run}"\n')
    registries.write_text('unqualified-search-registries = []\n'
                          '[[registry]]\nlocation = "docker.io"\nblocked = true\n')
    done = run_images("--only", "gateway", path=f"{Path(sys.executable).parent}:{tools}",
                      env={"CONTAINERS_STORAGE_CONF": str(storage),
                           "CONTAINERS_REGISTRIES_CONF": str(registries)})
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        "make images: cannot build localhost/brix-base-python:3.11: debootstrap is missing "
        "(apt-get install debootstrap)"]
    assert "cannot be pulled: building localhost/brix-base-python:3.11" in done.stdout


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
