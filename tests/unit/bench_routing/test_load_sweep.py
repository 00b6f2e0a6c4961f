"""The lab's routing sweep across loads: the figures read from summaries, the goals read
from them, and its settings refused before any run starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.routing.load_sweep import Point, cut, main, point, table

pytestmark = pytest.mark.unit


def summary(rate: float, prompt: float, p99: float) -> dict[str, Any]:
    run = {"ttft_p50_s": 0.1, "ttft_p90_s": 0.5, "ttft_p99_s": p99, "e2e_p99_s": 9.0,
           "slo_attainment": 0.95, "prefix_hit_ratio": 0.2, "completed": 10, "requests": 10}
    return {"trace": {"mean_rate_per_s": rate, "mean_prompt_tokens": prompt},
            "settings": {"profile": {"prefill_tokens_per_s": 1000.0}},
            "policies": {"fixed:replicas=4": run}}


def test_the_load_is_the_share_of_the_fleets_prefill_capacity_without_a_cache() -> None:
    p = point(0.5, "round-robin", summary(rate=3.0, prompt=1000.0, p99=2.0), replicas=4)
    assert p.load == pytest.approx(0.75)  # 3 req/s x 1000 tokens / (4 x 1000 tokens/s)
    assert (p.scale, p.routing, p.ttft_p99, p.completed) == (0.5, "round-robin", 2.0, 10)


def test_cut_is_how_much_lower_and_negative_when_higher() -> None:
    assert cut(2.0, 10.0) == pytest.approx(0.8)
    assert cut(12.0, 10.0) == pytest.approx(-0.2)


def pts(scale: float, **p99: float) -> list[Point]:
    return [point(scale, r.replace("_", "-"), summary(rate=scale * 4, prompt=1000.0, p99=v),
                  replicas=4) for r, v in p99.items()]


def test_each_load_reads_the_goals_against_both_baselines() -> None:
    points = [*pts(1.0, round_robin=10.0, least_request=5.0, least_prefill=2.0),
              *pts(0.5, round_robin=10.0, least_request=3.0, least_prefill=2.5)]
    text = table(points, winner="least-prefill", floor_p99=1.0)
    summary_rows = [line for line in text.splitlines()
                    if line.startswith("| 100%") and "lower" in line]
    assert summary_rows == ["| 100% | 2.000 | 80% lower: met | 60% lower: met | 90% |"]
    assert "| 50% | 2.500 | 75% lower: missed | 17% lower: missed | 90% |" in text
    assert "| 100% | 1 | 4.0 | **least-prefill** |" in text  # the winner in bold, first


def test_a_winner_slower_than_a_baseline_is_said_to_be_higher() -> None:
    text = table(pts(1.0, round_robin=1.0, least_request=2.0, least_prefill=1.5),
                 winner="least-prefill", floor_p99=0.5)
    assert "| 50% higher: missed | 25% lower: missed |" in text


@pytest.mark.parametrize(("args", "says"), [
    (["--scales", "0.2,x"], "--scales: expected numbers"),
    (["--scales", "0"], "--scales: each must be > 0"),
    (["--routings", "least-prefill,round-robin"], "--routings must include"),
    (["--profile", "no-such-profile"], "no-such-profile"),
    (["--replicas", "0"], "--replicas and --jobs must be >= 1"),
    (["--jobs", "0"], "--replicas and --jobs must be >= 1"),
])
def test_bad_settings_are_one_line_before_any_run(
    args: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "runs"), *args])
    assert exit_info.value.code == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_lab_run_that_fails_stops_the_sweep_with_one_line_after_the_labs_own(
    tmp_path: Path, capfd: pytest.CaptureFixture[str],
) -> None:
    # The default routings and --winner: they pass the checks, so the lab runs.
    code = main(["--out", str(tmp_path / "runs"), "--trace", "validate-5min", "--scales", "1",
                 "--jobs", "1", "--no-such-lab-flag"])
    assert code == 1
    err = capfd.readouterr().err
    assert "unrecognized arguments: --no-such-lab-flag" in err  # the lab's own
    assert "load_sweep: a lab run failed (exit 2), its own message above:" in err
    assert not list((tmp_path / "runs").glob("*/summary.json"))
