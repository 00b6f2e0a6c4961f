from __future__ import annotations

import re

from brix.contract import METRIC_NAMES, METRICS, metric, series_names


def test_names_follow_prometheus_conventions() -> None:
    for m in METRICS:
        assert re.fullmatch(r"brix_[a-z0-9_]+", m.name), m.name
        if m.type == "counter":
            assert m.name.endswith("_total"), m.name
        else:
            assert not m.name.endswith("_total"), m.name
        if m.type == "histogram":
            assert m.name.endswith("_seconds"), m.name
    assert len(METRIC_NAMES) == len(METRICS)


def test_lookup_and_histogram_series() -> None:
    ttft = metric("brix_engine_time_to_first_token_seconds")
    assert series_names(ttft) == (
        "brix_engine_time_to_first_token_seconds_bucket",
        "brix_engine_time_to_first_token_seconds_sum",
        "brix_engine_time_to_first_token_seconds_count",
    )
    assert series_names(metric("brix_engine_up")) == ("brix_engine_up",)
