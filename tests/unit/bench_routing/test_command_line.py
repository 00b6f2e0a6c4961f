"""The routing benchmark's results name the command that gives them, every setting included."""

from __future__ import annotations

from argparse import Namespace

import pytest

from bench.routing.__main__ import command_line, main

pytestmark = pytest.mark.unit


def args(**changed: object) -> Namespace:
    settings: dict[str, object] = {"duration": 12.0, "utilisation": 0.75,
                                   "no_chunked_prefill": False,
                                   "max_num_batched_tokens": 256, "routing": None,
                                   "workload": None, "repeat": 1}
    settings.update(changed)
    return Namespace(**settings)


def test_the_defaults_are_left_out_and_every_change_is_said() -> None:
    assert command_line(args()) == (
        "python -m bench.routing --duration 12 --max-num-batched-tokens 256")
    assert command_line(args(duration=60.0, utilisation=0.9, no_chunked_prefill=True,
                             routing=["least-prefill", "fleet-prefill"],
                             workload=["chat"], repeat=3)) == (
        "python -m bench.routing --duration 60 --utilisation 0.9 --no-chunked-prefill "
        "--max-num-batched-tokens 256 --routing least-prefill --routing fleet-prefill "
        "--workload chat --repeat 3")


def test_workload_picks_which_workloads_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--floor-only", "--duration", "5", "--workload", "chat"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| A")]
    assert [row.split(" | ")[0] for row in rows] == ["| A: multi-turn chat"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--workload", "sharegpt"], "choose from 'azure', 'chat', 'mooncake'"),
    (["--repeat", "0"], "--repeat must be >= 1"),
])
def test_bad_settings_are_refused_in_one_line_before_anything_starts(
        argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--floor-only", *argv])
    assert e.value.code == 2
    assert message in capsys.readouterr().err
