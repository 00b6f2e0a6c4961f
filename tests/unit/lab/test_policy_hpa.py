"""The HPA model on the Kubernetes documentation's own worked examples."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.policies.hpa import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    HpaController,
    ScalingPolicy,
    ScalingRules,
    replicas_for_ratio,
)

pytestmark = pytest.mark.unit

NO_WINDOW_DOWN = ScalingRules(0.0, DEFAULT_SCALE_DOWN.policies)


def run(hpa: HpaController, replicas: int,
        steps: Sequence[tuple[float, float | None]]) -> list[int]:
    """Sync at each (time, metric); the replicas after each sync."""
    out = []
    for now, value in steps:
        replicas = hpa.sync(now=now, value=value, replicas=replicas)
        out.append(replicas)
    return out


# --- the algorithm: desired = ceil(current * currentMetric / desiredMetric) ----------

def test_200m_against_100m_doubles_and_50m_halves() -> None:
    # "if the current metric value is 200m, and the desired value is 100m, the number
    # of replicas will be doubled ... If the current value is instead 50m, you'll halve".
    assert replicas_for_ratio(1, 200 / 100, 0.1) == 2
    assert replicas_for_ratio(4, 200 / 100, 0.1) == 8
    assert replicas_for_ratio(4, 50 / 100, 0.1) == 2
    # One replica at 50m: ceil(0.5) keeps one.
    assert replicas_for_ratio(1, 50 / 100, 0.1) == 1


def test_within_tolerance_of_one_keeps_the_count() -> None:
    assert replicas_for_ratio(10, 1.09, 0.1) == 10
    assert replicas_for_ratio(10, 0.91, 0.1) == 10
    assert replicas_for_ratio(10, 1.11, 0.1) == 12  # ceil(11.1)
    assert replicas_for_ratio(10, 0.89, 0.1) == 9  # ceil(8.9)
    assert replicas_for_ratio(10, 1.05, 0.0) == 11


def test_external_average_value_divides_the_total_by_the_target() -> None:
    # An External AverageValue target of 100m: a total of 200m at one pod wants 2.
    hpa = HpaController(target=0.1)
    assert hpa.sync(now=0.0, value=0.2, replicas=1) == 2
    # A total of 50m at one pod: ceil(0.5) = 1, no change.
    assert HpaController(target=0.1).sync(now=0.0, value=0.05, replicas=1) == 1


# --- behaviour: rate-limiting policies ---------------------------------------------

def test_default_scale_up_is_the_larger_of_double_and_four_pods_per_15s() -> None:
    hpa = HpaController(target=1.0, max_replicas=1000)
    got = run(hpa, 1, [(15.0 * i, 10_000.0) for i in range(1, 6)])
    # 1 -> max(2, 5) = 5 -> max(10, 9) = 10 -> 20 -> 40 -> 80
    assert got == [5, 10, 20, 40, 80]


def test_docs_scale_down_example_4_pods_or_10_percent_per_minute() -> None:
    # The docs' scaleDown with a Pods policy (4 per 60 s) and a Percent policy (10 %
    # per 60 s): from 80 replicas towards 10, the Percent policy removes 8, then
    # ceil(7.2) = 8 at 72; below 40 replicas the Pods policy (4) is the larger.
    rules = ScalingRules(0.0, (ScalingPolicy("Pods", 4, 60.0),
                               ScalingPolicy("Percent", 10, 60.0)))
    hpa = HpaController(target=1.0, max_replicas=100, scale_down=rules)
    minutes = 15
    got = run(hpa, 80, [(15.0 * i, 10.0) for i in range(4 * minutes)])
    per_minute = got[::4]
    assert per_minute == [72, 64, 57, 51, 45, 40, 36, 32, 28, 24, 20, 16, 12, 10, 10]
    # Within a minute of a change nothing more is removed.
    assert got[1:4] == [72, 72, 72]


def test_select_min_takes_the_policy_allowing_the_smallest_change() -> None:
    rules = ScalingRules(0.0, (ScalingPolicy("Pods", 4, 60.0),
                               ScalingPolicy("Percent", 10, 60.0)), select="min")
    hpa = HpaController(target=1.0, max_replicas=100, scale_down=rules)
    # At 80: Percent removes 8, Pods 4; min picks 4.
    assert hpa.sync(now=0.0, value=10.0, replicas=80) == 76


def test_disabled_scale_down_never_scales_down() -> None:
    rules = ScalingRules(0.0, (), select="disabled")
    hpa = HpaController(target=1.0, scale_down=rules)
    assert run(hpa, 5, [(15.0 * i, 0.0) for i in range(40)]) == [5] * 40


# --- behaviour: stabilisation -------------------------------------------------------

def test_scale_down_waits_for_the_highest_recommendation_of_300s() -> None:
    hpa = HpaController(target=1.0)
    steps = [(0.0, 5.0)] + [(15.0 * i, 0.0) for i in range(1, 25)]
    got = run(hpa, 5, steps)
    # The recommendation of 5 at t=0 holds the count until it leaves the window.
    assert got[:20] == [5] * 20  # t = 0 .. 285
    assert got[20] == 1  # t = 300: every recommendation in the window is 1 (the min)


def test_a_new_hpa_counts_its_current_replicas_as_recommended() -> None:
    # Restarted with no history: it does not scale down at once.
    hpa = HpaController(target=1.0)
    assert hpa.sync(now=0.0, value=0.0, replicas=6) == 6
    assert hpa.sync(now=300.0, value=0.0, replicas=6) == 1


def test_scale_up_window_takes_the_lowest_recommendation() -> None:
    up = ScalingRules(60.0, DEFAULT_SCALE_UP.policies)
    hpa = HpaController(target=1.0, scale_up=up, scale_down=NO_WINDOW_DOWN)
    got = run(hpa, 1, [(0.0, 1.0), (15.0, 3.0), (30.0, 3.0), (45.0, 3.0), (60.0, 3.0),
                       (75.0, 3.0)])
    # 1 is recommended at t=0; a window holds what came after its cut-off, so at
    # t=60 (cut-off 0) it is out and every recommendation left says 3.
    assert got == [1, 1, 1, 1, 3, 3]


# --- bounds, zero and missing metrics -----------------------------------------------

def test_bounds_apply_before_the_metric() -> None:
    hpa = HpaController(target=1.0, min_replicas=2, max_replicas=4)
    assert hpa.sync(now=0.0, value=None, replicas=9) == 4
    assert HpaController(target=1.0, min_replicas=2).sync(now=0.0, value=None,
                                                          replicas=1) == 2
    assert HpaController(target=1.0, max_replicas=4).sync(now=0.0, value=100.0,
                                                          replicas=2) == 4


def test_at_zero_replicas_the_hpa_is_disabled() -> None:
    assert HpaController(target=1.0).sync(now=0.0, value=50.0, replicas=0) == 0


def test_a_missing_metric_holds() -> None:
    hpa = HpaController(target=1.0, scale_down=NO_WINDOW_DOWN)
    assert run(hpa, 3, [(0.0, None), (15.0, None), (30.0, 6.0)]) == [3, 3, 6]


@pytest.mark.parametrize(("kwargs", "word"), [
    ({"target": 0.0}, "target"),
    ({"target": 1.0, "min_replicas": 0}, "min_replicas"),
    ({"target": 1.0, "min_replicas": 3, "max_replicas": 2}, "max_replicas"),
    ({"target": 1.0, "tolerance": -0.1}, "tolerance"),
])
def test_bad_settings_are_refused_by_name(kwargs: dict[str, float], word: str) -> None:
    with pytest.raises(ValueError, match=word):
        HpaController(**kwargs)  # type: ignore[arg-type]


def test_bad_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="value"):
        ScalingPolicy("Pods", 0, 15.0)
    with pytest.raises(ValueError, match="period"):
        ScalingPolicy("Percent", 10, 0.0)
    with pytest.raises(ValueError, match="policy"):
        ScalingRules(0.0, ())


# --- properties over generated histories -----------------------------------------------

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.none(), st.floats(0, 500)), min_size=1, max_size=40),
       st.integers(1, 5), st.integers(5, 60), st.integers(1, 30))
def test_every_sync_respects_bounds_and_the_default_rates(
        values: list[float | None], low: int, high: int, start: int) -> None:
    hpa = HpaController(target=2.0, min_replicas=low, max_replicas=high)
    replicas = start
    for i, value in enumerate(values):
        before = replicas
        replicas = hpa.sync(now=15.0 * i, value=value, replicas=replicas)
        if low <= before <= high:
            assert low <= replicas <= high
            # Each sync is a new 15 s period: up to max(2x, +4); down unlimited (100 %).
            assert replicas <= max(2 * before, before + 4)
        if value is None and low <= before <= high:
            assert replicas == before
