"""The builder's look at its inputs: the context files it keys, the engine it asks."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass, field

from brix.images import plan as p
from brix.images.builder import ROOT, Builder, Tool, context_files


@dataclass
class _EmptyEngine(Tool):
    """An engine with no images at all, pulling nothing; it records every command."""

    calls: list[tuple[str, ...]] = field(default_factory=list)

    def run(self, *args: str, check: bool = True, quiet: bool = True,
            stdin: int | None = None) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        return subprocess.CompletedProcess(list(args), 1, stdout="")


def test_no_image_is_current_where_no_base_is_here_and_none_is_pulled_or_built() -> None:
    tool = _EmptyEngine("podman")
    builds = p.plan(["brix/gateway:0.1.0", "brix/engine:0.1.0", "brix/engine:0.1.0-cpu"])
    assert Builder(tool, say=lambda _line: None).current(builds) == []
    assert [c for c in tool.calls if c[0] != "image"] == [], tool.calls
    assert {c[1] for c in tool.calls} == {"exists"}, tool.calls


def test_the_context_files_are_those_under_the_copied_paths_with_their_digests() -> None:
    files = context_files(["pyproject.toml", "brix"])
    assert files is not None
    assert "brix/images/plan.py" in files
    assert all(f == "pyproject.toml" or f.startswith("brix/") for f in files), sorted(files)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    assert files["pyproject.toml"] == f"-{digest}"
