"""The images in docker/: linted, every COPY source there, every entrypoint
starting in an environment built by the image's own steps with only its extras.

No container engine runs here, so each Dockerfile is checked statically and
its Python build steps are replayed: the files it COPYs are staged in a
scratch folder, its RUN lines run there with /opt/brix pointing to a fresh
virtual environment, and each entrypoint (label dev.brix.entrypoints) must
answer ``--help``. Stages built on vLLM's own image or installing vllm are
checked statically only (their environment is this project's venv).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers.manifests import REPO
from tests.helpers.procs import tool

DOCKERFILES = sorted((REPO / "docker").glob("Dockerfile.*"))


@dataclass
class Stage:
    base: str
    name: str | None
    copies: list[tuple[list[str], str]] = field(
        default_factory=list
    )  # (sources, dest) from context
    runs: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        out.append((op.upper(), rest.strip()))
    return out


def parse(path: Path) -> list[Stage]:
    stages: list[Stage] = []
    for op, rest in _instructions(path.read_text()):
        if op == "FROM":
            parts = rest.split()
            stages.append(Stage(base=parts[0], name=parts[2] if len(parts) > 2 else None))
        elif not stages:
            continue
        elif op == "COPY" and "--from=" not in rest:
            args = shlex.split(rest)
            stages[-1].copies.append((args[:-1], args[-1]))
        elif op == "RUN":
            stages[-1].runs.append(rest)
        elif op == "LABEL":
            for key, value in re.findall(r'([\w.-]+)="([^"]*)"', rest):
                stages[-1].labels[key] = value
    return stages


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    result = subprocess.run(
        [tool("hadolint"), str(dockerfile)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_statically_sound(dockerfile: Path) -> None:
    stages = parse(dockerfile)
    assert stages
    for stage in stages:
        for sources, _ in stage.copies:
            for src in sources:
                assert (REPO / src).exists(), f"{dockerfile.name}: COPY {src}: no such path"
        base = stage.base
        if "${" not in base and not any(s.name == base for s in stages):
            assert re.search(r":[\w.-]+$", base), f"unpinned {base}"
            assert not base.endswith(":latest"), f"unpinned {base}"
    final = stages[-1]
    text = dockerfile.read_text()
    assert re.search(r"^USER 10001", text, re.M), f"{dockerfile.name}: final image runs as root"
    assert "dev.brix.entrypoints" in final.labels or any(
        "dev.brix.entrypoints" in s.labels for s in stages
    )
    for arg in re.findall(r"^ARG \w+_IMAGE=(\S+)", text, re.M):
        assert ":" in arg, f"{dockerfile.name}: unpinned {arg}"
        assert not arg.endswith(":latest"), f"{dockerfile.name}: unpinned {arg}"


def _replayable(dockerfile: Path) -> list[tuple[str, Stage, list[str]]]:
    """(id, build stage, entrypoints) for stages that build a venv without vllm."""
    stages = parse(dockerfile)
    out = []
    for i, stage in enumerate(stages):
        runs = " ".join(stage.runs)
        if "venv /opt/brix" not in runs or "vllm" in runs:
            continue
        # The entrypoints are declared on this stage or on the one that copies its venv.
        consumer = next((s for s in stages[i:] if "dev.brix.entrypoints" in s.labels), None)
        assert consumer, f"{dockerfile.name}: nothing uses the venv built in stage {i}"
        out.append((f"{dockerfile.name}", stage, consumer.labels["dev.brix.entrypoints"].split()))
    return out


REPLAYS = [r for d in DOCKERFILES for r in _replayable(d)]


@pytest.mark.parametrize(("name", "stage", "entrypoints"), REPLAYS, ids=[r[0] for r in REPLAYS])
def test_entrypoints_start_with_only_the_image_extras(
    name: str, stage: Stage, entrypoints: list[str], tmp_path: Path
) -> None:
    context = tmp_path / "src"
    context.mkdir()
    for sources, dest in stage.copies:
        for src in sources:
            target = context / dest if dest not in ("./", ".") else context / Path(src).name
            if (REPO / src).is_dir():
                shutil.copytree(
                    REPO / src,
                    target,
                    ignore=shutil.ignore_patterns("__pycache__", "*_pb2*.py", "*_pb2*.pyi"),
                )
            else:
                shutil.copy2(REPO / src, target)
    venv = tmp_path / "venv"
    for run in stage.runs:
        cmd = run.replace("/opt/brix", str(venv)).replace(
            "python -m venv", f"{sys.executable} -m venv"
        )
        # No byte-compiling: what is checked is what installs and starts (9 s an image here).
        cmd = re.sub(r"\bpip install\b", "pip install --quiet --no-compile", cmd)
        result = subprocess.run(
            ["bash", "-ec", cmd],
            cwd=context,
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )
        assert result.returncode == 0, (
            f"{name}: RUN {run}\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    python = venv / "bin" / "python"
    for module in entrypoints:
        result = subprocess.run(
            [str(python), "-m", module, "--help"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert result.returncode == 0, f"{name}: python -m {module} --help\n{result.stderr[-3000:]}"
        assert "usage" in result.stdout.lower(), result.stdout
