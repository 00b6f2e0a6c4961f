"""The lab's Prometheus answers as PromQL does: lookback, staleness, rate, histogram_quantile."""

from __future__ import annotations

import math

import pytest

from lab.prom import TSDB, bucket_quantile, extrapolated_rate

pytestmark = pytest.mark.unit


def test_rate_over_aligned_samples_is_the_slope() -> None:
    times = [0.0, 15.0, 30.0, 45.0, 60.0]
    values = [100 + 1.5 * t for t in times]
    assert extrapolated_rate(times, values, 0.0, 60.0) == pytest.approx(1.5)


def test_rate_extrapolates_to_the_window_but_not_below_zero() -> None:
    times = [10.0, 25.0, 40.0, 55.0]
    # Started at zero at t=0: extrapolation stops where the counter would be 0.
    values = [1.5 * t for t in times]
    assert extrapolated_rate(times, values, 0.0, 60.0) == pytest.approx(1.5)
    # A counter that was already high, whose first sample is more than 1.1 intervals
    # after the window's start, extrapolates by half an interval there.
    late = [20.0, 35.0, 50.0]
    high = [1000 + 1.5 * t for t in late]
    expected = 45 * (30 + 7.5 + 10) / 30 / 60
    assert extrapolated_rate(late, high, 0.0, 60.0) == pytest.approx(expected)


def test_rate_counts_through_a_counter_reset_and_needs_two_samples() -> None:
    assert extrapolated_rate([0.0, 15.0, 30.0], [10.0, 40.0, 5.0], 0.0, 30.0) == \
        pytest.approx((30 + 5) / 30)
    assert extrapolated_rate([5.0], [1.0], 0.0, 30.0) is None


def test_instant_queries_honour_lookback_and_staleness() -> None:
    db = TSDB()
    db.append("g", 0.0, 3.0, pod="a")
    db.append("g", 0.0, 4.0, pod="b")
    db.append("g", 15.0, 5.0, pod="a")
    view = db.view(20.0)
    assert view.sum("g") == 9.0  # a's latest (5) + b's latest (4)
    assert view.avg("g") == 4.5
    assert view.count("g") == 2
    assert db.view(14.0).sum("g") == 7.0  # not yet the sample at 15
    assert db.view(301.0).sum("g") == 5.0  # b's only sample is past the 5-minute lookback
    db.end("a", 100.0)
    assert db.view(120.0).sum("g") == 4.0
    assert db.view(400.0).sum("g") is None
    assert db.view(400.0).count("g") == 0


def test_sum_rate_and_avg_over_time_add_up_the_series() -> None:
    db = TSDB()
    for t in range(0, 61, 15):
        db.append("c", float(t), 2.0 * t, pod="a")
        db.append("c", float(t), 1.0 * t, pod="b")
        db.append("q", float(t), float(t), pod="a")
    view = db.view(60.0)
    assert view.sum_rate("c", 60.0) == pytest.approx(3.0)
    assert view.avg_over_time("q", 60.0) == pytest.approx(30.0)
    assert view.sum_rate("missing", 60.0) is None


def test_bucket_quantile_interpolates_as_promql() -> None:
    buckets = [(1.0, 10.0), (2.0, 20.0), (math.inf, 20.0)]
    assert bucket_quantile(0.5, buckets) == pytest.approx(1.0)
    assert bucket_quantile(0.75, buckets) == pytest.approx(1.5)
    tail = [(1.0, 10.0), (2.0, 20.0), (math.inf, 40.0)]
    assert bucket_quantile(0.99, tail) == 2.0  # in +Inf: the last finite bound
    assert bucket_quantile(0.5, [(1.0, 0.0), (math.inf, 0.0)]) is None


def test_histogram_quantile_over_rates_of_buckets() -> None:
    db = TSDB()
    for t in (0.0, 15.0, 30.0):
        k = t / 15  # per pod, per 15 s: 2 fast requests (<= 0.5 s) and 2 slow (<= 2.5 s)
        for pod in ("a", "b"):
            db.append("h_bucket", t, 2 * k, pod=pod, le="0.5")
            db.append("h_bucket", t, 4 * k, pod=pod, le="2.5")
            db.append("h_bucket", t, 4 * k, pod=pod, le="+Inf")
    view = db.view(30.0)
    assert view.histogram_quantile(0.5, "h", 30.0) == pytest.approx(0.5)
    assert view.histogram_quantile(0.75, "h", 30.0) == pytest.approx(0.5 + 2.0 * 0.5)
    assert view.histogram_quantile(0.5, "nothing", 30.0) is None
