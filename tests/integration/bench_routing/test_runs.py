"""The routing benchmark end to end in its shortest form: real sims and a real gateway,
a fleet of their own for every run."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers.procs import REPO

pytestmark = pytest.mark.integration

CHAT = "A: multi-turn chat"


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_repeated_runs_each_start_on_a_fresh_fleet_and_report_their_spread() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.routing", "--duration", "2", "--workload", "chat",
         "--routing", "round-robin", "--routing", "prefix-cache", "--repeat", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    runs = {}
    for line in out.splitlines():
        cells = _cells(line)
        if line.startswith(f"| {CHAT} |") and "#" in cells[1]:
            runs[cells[1]] = cells
    assert sorted(runs) == ["prefix-cache #1", "prefix-cache #2",
                            "round-robin #1", "round-robin #2"]
    assert all(cells[-1] == "0" for cells in runs.values()), runs  # no errors
    # Within a repeat both routings send the same words, round-robin first in the first
    # repeat and second in the next. On a shared fleet the second would find the
    # first's prompts cached; on fresh ones round-robin hits alike in both.
    rr = [float(runs[f"round-robin #{i}"][10]) for i in (1, 2)]
    assert abs(rr[0] - rr[1]) < 0.1, rr
    spread = [_cells(line) for line in out.splitlines()
              if line.startswith(f"| {CHAT} |") and len(_cells(line)) == 6]
    assert [(c[1], c[2]) for c in spread] == [("round-robin", "2"), ("prefix-cache", "2")]
