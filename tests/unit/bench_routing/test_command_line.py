"""The routing benchmark's results name the command that gives them, every setting included."""

from __future__ import annotations

from argparse import Namespace

import pytest

from bench.routing.__main__ import command_line

pytestmark = pytest.mark.unit


def args(**changed: object) -> Namespace:
    settings: dict[str, object] = {"duration": 12.0, "utilisation": 0.75,
                                   "no_chunked_prefill": False,
                                   "max_num_batched_tokens": 256, "routing": None}
    settings.update(changed)
    return Namespace(**settings)


def test_the_defaults_are_left_out_and_every_change_is_said() -> None:
    assert command_line(args()) == (
        "python -m bench.routing --duration 12 --max-num-batched-tokens 256")
    assert command_line(args(duration=60.0, utilisation=0.9, no_chunked_prefill=True,
                             routing=["least-prefill", "fleet-prefill"])) == (
        "python -m bench.routing --duration 60 --utilisation 0.9 --no-chunked-prefill "
        "--max-num-batched-tokens 256 --routing least-prefill --routing fleet-prefill")
