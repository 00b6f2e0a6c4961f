"""The prompts ``lab calibrate`` and ``lab validate`` send share no prefix, within a run
or across runs, so an engine's prefix cache cannot make their prefill look free."""

from __future__ import annotations

import pytest

from lab.calibrate import SERIALS, first_serial, unique_prompt

pytestmark = pytest.mark.unit


def test_prompts_have_the_asked_length_and_differ_from_the_first_id_on() -> None:
    prompts = [unique_prompt(100, s) for s in range(0, SERIALS, 997)]
    assert all(len(p) == 100 for p in prompts)
    assert len({tuple(p[:3]) for p in prompts}) == len(prompts)
    assert unique_prompt(2, 7) == unique_prompt(100, 7)[:2]
    assert unique_prompt(50, SERIALS + 5) == unique_prompt(50, 5)


def test_runs_start_their_serials_apart() -> None:
    starts = {first_serial() for _ in range(20)}
    assert all(0 <= s < SERIALS for s in starts)
    assert len(starts) > 15
