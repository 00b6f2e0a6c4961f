"""Trigger metadata, annotations, PromQL text and the reading of Prometheus' answers."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brix.contract import (
    AUTOSCALE_MAX_ANNOTATION,
    AUTOSCALE_MIN_ANNOTATION,
    AUTOSCALE_SIGNAL_ANNOTATION,
    AUTOSCALE_TARGET_ANNOTATION,
    MODEL_LABEL,
)
from scaler.kube import LeaseRecord
from scaler.leader import plan
from scaler.signals import (
    DataError,
    MetadataError,
    ModelSample,
    model_query,
    parse_trigger,
    quote,
    read_model_sample,
    read_query_value,
    signal_value,
)
from scaler.targets import AnnotationError, read_target, wants_autoscaling


def test_trigger_defaults() -> None:
    t = parse_trigger({"model": "m", "target": "4", "scalerAddress": "x:9100"}, "ns")
    assert (t.model, t.signal, t.target, t.activation_target) == ("m", "queue", 4.0, 0.0)
    assert t.namespace == "ns"
    assert t.prometheus_address is None
    assert parse_trigger({"model": "m", "target": "1"}, "").namespace == "default"


def test_prometheus_address_is_normalised() -> None:
    t = parse_trigger({"model": "m", "target": "1", "prometheusAddress": "http://p:9090/"}, "n")
    assert t.prometheus_address == "http://p:9090"
    assert t.source.address == "http://p:9090"


@given(st.text(min_size=1, max_size=60).filter(str.strip),
       st.text(min_size=1, max_size=60).filter(str.strip))
def test_metric_names_are_stable_and_distinct(a: str, b: str) -> None:
    def name(model: str, signal: str) -> str:
        return parse_trigger({"model": model, "target": "1", "signal": signal}, "ns").metric_name

    assert name(a, "queue") == name(a, "queue")
    assert name(a, "queue") != name(a, "running")
    if a.strip() != b.strip():
        assert name(a, "queue") != name(b, "queue")
    assert all(c.isalnum() or c == "-" for c in name(a, "kv_cache"))


@pytest.mark.parametrize("text", ['a"b', "a\\b", "new\nline", "plain"])
def test_quote_round_trips_through_a_promql_string(text: str) -> None:
    quoted = quote(text)
    assert quoted.startswith('"')
    assert quoted.endswith('"')
    inner = quoted[1:-1]
    assert inner.replace("\\\\", "").count('"') == inner.replace("\\\\", "").count('\\"')
    assert quoted.encode().decode("unicode_escape")[1:-1] == text


def test_model_query_selects_namespace_and_model() -> None:
    q = model_query("ns", 'we"ird')
    # The engine parts are the model's pods, in its namespace ...
    assert q.count('{namespace="ns",model="we\\"ird"}') == 4
    # ... while the gateway's pending count lives in the gateway's namespace.
    assert 'brix_gateway_requests_pending{model="we\\"ird"}' in q
    for part in ("waiting", "pending", "running", "kv_cache", "pods"):
        assert f'"brix_part", "{part}"' in q


def sample(**parts: float) -> list[dict[str, object]]:
    return [{"metric": {"brix_part": k}, "value": [0, str(v)]} for k, v in parts.items()]


def test_reading_a_model_sample() -> None:
    s = read_model_sample(sample(waiting=3, pending=2, running=1, kv_cache=0.5, pods=2),
                          model="m", namespace="n")
    assert signal_value(s, "queue", model="m", namespace="n") == 5
    assert signal_value(s, "running", model="m", namespace="n") == 1
    assert signal_value(s, "kv_cache", model="m", namespace="n") == 0.5


def test_no_pods_means_zero_but_pending_counts() -> None:
    s = read_model_sample(sample(pending=4), model="m", namespace="n")
    assert signal_value(s, "queue", model="m", namespace="n") == 4
    assert signal_value(s, "running", model="m", namespace="n") == 0
    assert signal_value(ModelSample(), "kv_cache", model="m", namespace="n") == 0


@pytest.mark.parametrize("signal", ["queue", "running", "kv_cache"])
def test_missing_series_with_pods_is_an_error(signal: str) -> None:
    s = ModelSample(pods=2)
    with pytest.raises(DataError, match="no brix_engine_") as info:
        signal_value(s, signal, model="m", namespace="n")  # type: ignore[arg-type]
    assert info.value.code == "unavailable"


def test_nan_is_an_error() -> None:
    s = read_model_sample(sample(waiting=math.nan, pods=1), model="m", namespace="n")
    with pytest.raises(DataError, match="NaN"):
        signal_value(s, "queue", model="m", namespace="n")


def test_unexpected_series_is_an_error() -> None:
    with pytest.raises(DataError, match="unexpected series"):
        read_model_sample([{"metric": {}, "value": [0, "1"]}], model="m", namespace="n")


def test_raw_query_needs_exactly_one_sample() -> None:
    assert read_query_value([{"metric": {}, "value": [0, "7"]}], query="q") == 7
    assert read_query_value([0, "2.5"], query="q") == 2.5  # a scalar
    with pytest.raises(DataError, match="exactly one sample, it returned 2") as many:
        read_query_value([{"value": [0, "1"]}, {"value": [0, "2"]}], query="q")
    assert many.value.code == "internal"
    with pytest.raises(DataError, match="exactly one sample, it returned 0") as none:
        read_query_value([], query="q")
    assert none.value.code == "unavailable"
    with pytest.raises(DataError, match=">= 0"):
        read_query_value([{"value": [0, "-1"]}], query="q")


@pytest.mark.parametrize(("metadata", "key"), [
    ({}, "model"),
    ({"model": " ", "target": "1"}, "model"),
    ({"model": "m", "query": "up", "target": "1"}, "query"),
    ({"model": "m", "signal": "QUEUE", "target": "1"}, "signal"),
    ({"model": "m", "target": "inf"}, "target"),
    ({"model": "m", "target": "1", "activationTarget": "-2"}, "activationTarget"),
    ({"model": "m", "target": "1", "prometheusAddress": "p:9090"}, "prometheusAddress"),
])
def test_bad_metadata_names_the_key(metadata: dict[str, str], key: str) -> None:
    with pytest.raises(MetadataError, match=f"^{key}:") as info:
        parse_trigger(metadata, "n")
    assert info.value.key == key
    assert info.value.code == "invalid"


# --- annotations ----------------------------------------------------------------------


def test_annotations_read_into_a_target() -> None:
    t = read_target(namespace="n", labels={MODEL_LABEL: "m"}, default_max=10, annotations={
        AUTOSCALE_TARGET_ANNOTATION: "4", AUTOSCALE_SIGNAL_ANNOTATION: "running",
        AUTOSCALE_MIN_ANNOTATION: "0", AUTOSCALE_MAX_ANNOTATION: "6"})
    assert (t.trigger.model, t.trigger.signal, t.trigger.target) == ("m", "running", 4.0)
    assert (t.min_replicas, t.max_replicas) == (0, 6)
    d = read_target(namespace="n", labels={MODEL_LABEL: "m"}, default_max=7,
                    annotations={AUTOSCALE_TARGET_ANNOTATION: "1"})
    assert (d.min_replicas, d.max_replicas, d.trigger.signal) == (1, 7, "queue")


@pytest.mark.parametrize(("labels", "annotations", "named"), [
    ({}, {AUTOSCALE_TARGET_ANNOTATION: "1"}, MODEL_LABEL),
    ({MODEL_LABEL: "m"}, {}, AUTOSCALE_TARGET_ANNOTATION),
    ({MODEL_LABEL: "m"}, {AUTOSCALE_TARGET_ANNOTATION: "0"}, AUTOSCALE_TARGET_ANNOTATION),
    ({MODEL_LABEL: "m"}, {AUTOSCALE_TARGET_ANNOTATION: "1", AUTOSCALE_SIGNAL_ANNOTATION: "gpu"},
     AUTOSCALE_SIGNAL_ANNOTATION),
    ({MODEL_LABEL: "m"}, {AUTOSCALE_TARGET_ANNOTATION: "1", AUTOSCALE_MIN_ANNOTATION: "1.5"},
     AUTOSCALE_MIN_ANNOTATION),
    ({MODEL_LABEL: "m"}, {AUTOSCALE_TARGET_ANNOTATION: "1", AUTOSCALE_MIN_ANNOTATION: "3",
                          AUTOSCALE_MAX_ANNOTATION: "2"}, AUTOSCALE_MAX_ANNOTATION),
])
def test_bad_annotations_name_the_annotation(labels: dict[str, str],
                                             annotations: dict[str, str], named: str) -> None:
    with pytest.raises(AnnotationError, match=named):
        read_target(namespace="n", labels=labels, annotations=annotations, default_max=10)


def test_only_true_turns_autoscaling_on() -> None:
    assert wants_autoscaling({"brix.dev/autoscale": "true"})
    assert wants_autoscaling({"brix.dev/autoscale": "True"})
    assert not wants_autoscaling({"brix.dev/autoscale": "yes"})
    assert not wants_autoscaling({})


# --- the Lease --------------------------------------------------------------------------


def lease(holder: str, duration: float = 15) -> LeaseRecord:
    return LeaseRecord(holder=holder, duration=duration, renew_time="t", acquire_time="t",
                       transitions=0, resource_version="1")


def test_lease_plan() -> None:
    assert plan(None, me="a", unchanged_for=0) == "create"
    assert plan(lease("a"), me="a", unchanged_for=100) == "renew"
    assert plan(lease("b"), me="a", unchanged_for=14.9) == "follow"
    assert plan(lease("b"), me="a", unchanged_for=15) == "take"
    assert plan(lease(""), me="a", unchanged_for=0) == "take"  # handed back at shutdown
