"""Repeated routing runs: each routing at every position, and the spread over its runs."""

from __future__ import annotations

import pytest

from bench.routing.__main__ import Measured, schedule, spread

pytestmark = pytest.mark.unit


def test_one_repeat_is_the_order_given() -> None:
    assert schedule(["a", "b", "c"], 1) == [(0, "a"), (0, "b"), (0, "c")]


def test_each_repeat_rotates_so_every_routing_runs_at_every_position() -> None:
    runs = schedule(["a", "b", "c"], 3)
    assert runs == [(0, "a"), (0, "b"), (0, "c"), (1, "b"), (1, "c"), (1, "a"),
                    (2, "c"), (2, "a"), (2, "b")]
    positions = {name: {i % 3 for i, (_, r) in enumerate(runs) if r == name}
                 for name in "abc"}
    assert positions == {"a": {0, 1, 2}, "b": {0, 1, 2}, "c": {0, 1, 2}}


def test_no_repeat_is_refused() -> None:
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        schedule(["a"], 0)


def test_the_spread_is_each_routings_median_and_range_in_the_order_first_run() -> None:
    runs = [Measured("chat", "b", 100, 600, 0.8), Measured("chat", "a", 90, 500, 0.9),
            Measured("chat", "a", 80, 480, None), Measured("chat", "b", 120, 400, 0.7),
            Measured("chat", "a", 70, 610, 0.5), Measured("azure", "a", 10, 20, None)]
    rows = spread(runs)[2:]
    assert rows == [
        "| chat | b | 2 | 500 [400-600] | 110 | 0.75 |",
        "| chat | a | 3 | 500 [480-610] | 80 | 0.70 |",
        "| azure | a | 1 | 20 [20-20] | 10 | n/a |",
    ]

