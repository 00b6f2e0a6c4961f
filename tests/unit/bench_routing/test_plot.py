"""Reading RESULTS.md-style tables for the plots: the columns by name, bold ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.routing.plot import main, read

pytestmark = pytest.mark.unit

TEXT = """\
| workload | routing | TTFT p99 ms | hit ratio |
|---|---|---|---|
| A: chat | round-robin | 1026 | 0.51 |
| A: chat | **prefix-cache** | 475 | 0.82 |
| A: chat | prefix-cache | 481 | 0.82 |

| trace | time scale | routing | p99 s |
|---|---|---|---|
| mooncake-conv | 0.2 | round-robin | 10.089 |
"""


def test_rows_are_read_by_column_name_per_group_and_routing() -> None:
    table = read(TEXT, group=["workload"], value="TTFT p99 ms")
    assert table == {"A: chat": {"round-robin": [1026.0], "prefix-cache": [475.0, 481.0]}}
    lab = read(TEXT, group=["trace", "time scale"], value="p99 s")
    assert lab == {"mooncake-conv, time scale 0.2": {"round-robin": [10.089]}}


def test_a_table_without_the_columns_is_refused_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "t.md"
    path.write_text(TEXT)
    with pytest.raises(SystemExit):
        main(["--table", f"x={path}", "--value", "e2e p50", "--out", str(tmp_path / "p.png")])
    assert "no table with columns workload, routing, e2e p50" in capsys.readouterr().err


def test_the_plot_is_written_with_a_highlighted_routing(tmp_path: Path) -> None:
    path = tmp_path / "t.md"
    path.write_text(TEXT)
    out = tmp_path / "p.png"
    assert main(["--table", f"run={path}", "--value", "TTFT p99 ms",
                 "--highlight", "prefix-cache", "--out", str(out)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")
