"""The slo signal's metadata, its query and reading its answer (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from brix.contract import MODEL_LABEL
from scaler.signals import DataError, MetadataError, parse_trigger
from scaler.slo_signal import demand, parse_slo, read_slo_sample, slo_load, slo_query
from scaler.targets import AnnotationError, ScaleTarget, read_target

pytestmark = pytest.mark.unit


def test_settings_map_onto_the_policy() -> None:
    policy = parse_slo({"ttft": "1.5", "tpot": "0.05", "attainment": "0.95",
                        "podStartSeconds": "30", "initialCapacity": "4", "minReplicas": "1",
                        "maxReplicas": "7", "utilization": "0.7", "scaleDownWindow": "120",
                        "scaleDownTolerance": "0.2"})
    assert (policy.slo.ttft, policy.slo.tpot, policy.slo.attainment) == (1.5, 0.05, 0.95)
    assert (policy.pod_start, policy.capacity, policy.min_replicas, policy.max_replicas) == (
        30, 4, 1, 7)
    assert (policy.utilization, policy.scale_down_window, policy.down_tolerance) == (
        0.7, 120, 0.2)
    assert parse_slo({"ttft": "2", "initialCapacity": "1",
                      "scaleDownTolerance": "0"}).down_tolerance == 0


@pytest.mark.parametrize(("raw", "allowed"), [(None, False), ("false", False), ("true", True),
                                              (" True ", True)])
def test_scale_down_while_rising_is_off_unless_asked(raw: str | None, allowed: bool) -> None:
    metadata = {"ttft": "2", "initialCapacity": "1"}
    if raw is not None:
        metadata["scaleDownWhileRising"] = raw
    assert parse_slo(metadata).down_while_rising is allowed


def test_a_profile_is_the_prior() -> None:
    policy = parse_slo({"ttft": "2", "profile": '{"prefill_tokens_per_s": 1000, '
                        '"decode_ms_per_token": 10, "decode_ms_per_token_per_seq": 0, '
                        '"max_num_seqs": 1}'})
    assert policy.profile is not None
    assert policy.profile.requests_per_s(100, 50) == pytest.approx(1 / 0.6)


@pytest.mark.parametrize(("metadata", "key"), [
    ({"initialCapacity": "1"}, "ttft"),
    ({"ttft": "nan", "initialCapacity": "1"}, "ttft"),
    ({"ttft": "2", "attainment": "1.01", "initialCapacity": "1"}, "attainment"),
    ({"ttft": "2"}, "initialCapacity"),
    ({"ttft": "2", "profile": "[1, 2]"}, "profile"),
    ({"ttft": "2", "profile": '{"prefill_tokens_per_s": 1000, "decode_ms_per_token": 0, '
      '"decode_ms_per_token_per_seq": 0, "max_num_seqs": 1}'}, "profile"),
    ({"ttft": "2", "initialCapacity": "1", "minReplicas": "2.5"}, "minReplicas"),
    ({"ttft": "2", "initialCapacity": "1", "minReplicas": "-1"}, "minReplicas"),
    ({"ttft": "2", "initialCapacity": "1", "scaleDownWindow": "-5"}, "scaleDownWindow"),
    ({"ttft": "2", "initialCapacity": "1", "promptTokens": "0"}, "promptTokens"),
    ({"ttft": "2", "initialCapacity": "1", "scaleDownTolerance": "1"}, "scaleDownTolerance"),
    ({"ttft": "2", "initialCapacity": "1", "scaleDownTolerance": "-0.1"},
     "scaleDownTolerance"),
    ({"ttft": "2", "initialCapacity": "1", "scaleDownTolerance": "a third"},
     "scaleDownTolerance"),
    ({"ttft": "2", "initialCapacity": "1", "outputTokens": "many"}, "outputTokens"),
    ({"ttft": "2", "initialCapacity": "1", "scaleDownWhileRising": "yes"},
     "scaleDownWhileRising"),
    # At or below the profile's decode step with one sequence (10 ms): no batch meets it.
    ({"ttft": "2", "tpot": "0.01", "profile": '{"prefill_tokens_per_s": 1000, '
      '"decode_ms_per_token": 10, "decode_ms_per_token_per_seq": 0, "max_num_seqs": 4}'},
     "tpot"),
])
def test_bad_settings_name_the_key(metadata: dict[str, str], key: str) -> None:
    with pytest.raises(MetadataError) as info:
        parse_slo(metadata)
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ")


def test_the_prior_lengths_are_settings() -> None:
    policy = parse_slo({"ttft": "2", "initialCapacity": "1", "promptTokens": "4000",
                        "outputTokens": "300"})
    assert (policy.prompt_tokens, policy.output_tokens) == (4000, 300)
    target = _target(**{"brix.dev/autoscale-ttft": "2", "brix.dev/autoscale-initial-capacity": "1",
                        "brix.dev/autoscale-prompt-tokens": "800",
                        "brix.dev/autoscale-output-tokens": "0"})
    assert target.trigger.slo is not None
    assert (target.trigger.slo.prompt_tokens, target.trigger.slo.output_tokens) == (800, 0)


def test_the_trigger_carries_the_policy_and_a_target_of_one() -> None:
    trigger = parse_trigger({"model": "m", "signal": "slo", "ttft": "2",
                             "initialCapacity": "1"}, "ns")
    assert trigger.slo is not None
    assert trigger.target == 1.0
    assert trigger.metric_name == "brix-slo-m"
    with pytest.raises(MetadataError, match=r"^model: "):
        parse_trigger({"query": "up", "signal": "slo", "ttft": "2", "initialCapacity": "1"},
                      "ns")


def test_the_query_selects_the_model_and_the_quantile() -> None:
    q = slo_query("ns", 'we"ird', 0.95)
    assert 'model="we\\"ird"' in q
    assert "histogram_quantile(0.95," in q
    for part in ("rate", "prompt", "output", "ttft", "tpot", "served", "waiting", "pending",
                 "running", "pods"):
        assert f'"brix_part", "{part}"' in q
    assert q.count("histogram_quantile(0.95,") == 2  # TTFT and TPOT at the same share
    assert "brix_engine_time_per_output_token_seconds_bucket" in q


def _item(part: str, value: str) -> dict[str, object]:
    return {"metric": {"brix_part": part}, "value": [0, value]}


def test_reading_the_answer_into_a_load() -> None:
    sample = read_slo_sample([_item("rate", "4"), _item("prompt", "400"),
                              _item("output", "200"), _item("ttft", "NaN"),
                              _item("tpot", "0.04"),
                              _item("waiting", "3"), _item("pending", "1"),
                              _item("running", "5"), _item("pods", "2")], model="m")
    load = slo_load(sample, model="m", namespace="ns")
    assert (load.rate, load.queue, load.running, load.replicas, load.ready) == (4, 4, 5, 2, 2)
    assert (load.prompt_tokens, load.output_tokens) == (100, 50)
    assert load.ttft is None  # NaN: nothing observed
    assert load.tpot == 0.04


def test_no_requests_means_no_lengths_and_no_quantile() -> None:
    load = slo_load(read_slo_sample([_item("rate", "0"), _item("ttft", "0.5"), _item("pods", "1"),
                                     _item("tpot", "0.1"), _item("waiting", "0"),
                                     _item("running", "0")], model="m"),
                    model="m", namespace="ns")
    assert load.rate == 0
    assert load.ttft is None
    assert load.tpot is None
    assert load.prompt_tokens is None


def test_a_missing_request_series_is_not_zero_demand() -> None:
    engines = [_item("pods", "2"), _item("waiting", "4"), _item("running", "30")]
    with pytest.raises(DataError, match="absent data is not zero demand") as info:
        slo_load(read_slo_sample(engines, model="m"), model="m", namespace="ns")
    assert info.value.code == "unavailable"
    assert "brix_gateway_requests_total" in str(info.value)
    # The engines' own count of first tokens stands in for the gateway's.
    load = slo_load(read_slo_sample([*engines, _item("served", "6.5")], model="m"),
                    model="m", namespace="ns")
    assert load.rate == 6.5
    # The gateway's rate, where there is one, is the demand.
    load = slo_load(read_slo_sample([*engines, _item("served", "6.5"), _item("rate", "7")],
                                    model="m"), model="m", namespace="ns")
    assert load.rate == 7


@pytest.mark.parametrize(("rate", "served", "pods", "expected"), [
    (7.0, 6.5, 2, 7.0),      # the gateway's rate
    (0.0, 6.5, 2, 0.0),      # a gateway series at 0 is zero demand
    (None, 6.5, 2, 6.5),     # the engines' count stands in
    (None, None, 2, None),   # neither while pods serve: unknown
    (None, None, 0, 0.0),    # no pods: nothing can have been answered
])
def test_the_demand_falls_back_from_the_gateway_to_the_engines(
        rate: float | None, served: float | None, pods: int, expected: float | None) -> None:
    assert demand(rate, served, pods) == expected


@pytest.mark.parametrize("result", [
    [_item("bogus", "1")],
    [_item("rate", "-1")],
    [_item("rate", "+Inf")],
    [{"metric": {"brix_part": "rate"}, "value": [0]}],
])
def test_unusable_answers_are_data_errors(result: list[dict[str, object]]) -> None:
    with pytest.raises(DataError):
        read_slo_sample(result, model="m")


def test_pods_without_their_queue_series_is_an_error() -> None:
    with pytest.raises(DataError, match="sidecars scraped"):
        slo_load(read_slo_sample([_item("pods", "1")], model="m"), model="m", namespace="ns")
    empty = slo_load(read_slo_sample([], model="m"), model="m", namespace="ns")
    assert (empty.rate, empty.queue, empty.replicas) == (0, 0, 0)  # never deployed: at zero


# --- the loop's annotations -------------------------------------------------


def _target(**annotations: str) -> ScaleTarget:
    return read_target(namespace="ns", labels={MODEL_LABEL: "m"}, default_max=5,
                       annotations={"brix.dev/autoscale-signal": "slo", **annotations})


def test_annotations_are_the_metadata() -> None:
    target = _target(**{"brix.dev/autoscale-ttft": "2", "brix.dev/autoscale-tpot": "0.1",
                        "brix.dev/autoscale-pod-start-seconds": "45",
                        "brix.dev/autoscale-initial-capacity": "3",
                        "brix.dev/autoscale-scale-down-tolerance": "0.5",
                        "brix.dev/autoscale-scale-down-while-rising": "true",
                        "brix.dev/autoscale-min": "0"})
    policy = target.trigger.slo
    assert policy is not None
    assert (policy.slo.ttft, policy.slo.tpot, policy.pod_start, policy.capacity) == (
        2, 0.1, 45, 3)
    assert (policy.min_replicas, policy.max_replicas) == (0, 5) == (
        target.min_replicas, target.max_replicas)
    assert policy.down_tolerance == 0.5
    assert policy.down_while_rising


@pytest.mark.parametrize(("annotations", "named"), [
    ({"brix.dev/autoscale-initial-capacity": "1"}, "brix.dev/autoscale-ttft"),
    ({"brix.dev/autoscale-ttft": "2"}, "brix.dev/autoscale-initial-capacity"),
    ({"brix.dev/autoscale-ttft": "2", "brix.dev/autoscale-profile": "{}"},
     "brix.dev/autoscale-profile"),
    ({"brix.dev/autoscale-ttft": "2", "brix.dev/autoscale-initial-capacity": "1",
      "brix.dev/autoscale-utilization": "0"}, "brix.dev/autoscale-utilization"),
    ({"brix.dev/autoscale-ttft": "2", "brix.dev/autoscale-initial-capacity": "1",
      "brix.dev/autoscale-scale-down-tolerance": "1.5"},
     "brix.dev/autoscale-scale-down-tolerance"),
    ({"brix.dev/autoscale-ttft": "2", "brix.dev/autoscale-initial-capacity": "1",
      "brix.dev/autoscale-scale-down-while-rising": "1"},
     "brix.dev/autoscale-scale-down-while-rising"),
])
def test_bad_annotations_name_the_annotation(annotations: dict[str, str], named: str) -> None:
    with pytest.raises(AnnotationError) as info:
        _target(**annotations)
    assert str(info.value).startswith(f"{named}: ")


def test_the_shipped_slo_model_reads_as_an_slo_target() -> None:
    path = Path(__file__).resolve().parents[3] / "k8s/models/sim-slo/deployment.yaml"
    deployment = yaml.safe_load(path.read_text())
    meta = deployment["metadata"]
    target = read_target(namespace="brix-models", labels=meta["labels"],
                         annotations=meta["annotations"], default_max=5)
    assert target.trigger.slo is not None
    assert target.trigger.slo.profile is not None
    # The profile is the engine's own concurrency.
    args = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    assert target.trigger.slo.profile.max_num_seqs == int(args[args.index("--max-num-seqs") + 1])
