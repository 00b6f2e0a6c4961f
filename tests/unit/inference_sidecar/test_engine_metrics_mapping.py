"""The mapping from vLLM's /metrics to brix's names (inference.sidecar.engine_metrics)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from brix.contract import METRIC_NAMES, metric
from inference.sidecar.engine_metrics import (
    Sample,
    engine_down_families,
    engine_families,
    mapped_names,
    parse_exposition,
)
from tests.unit.inference_sidecar.exposition import render, samples, types

RECORDED = (Path(__file__).parent / "data" / "vllm_two_engines.prom").read_text()
M = (("model", "llama-8b"),)


def test_every_mapped_name_is_in_the_contract_with_its_type() -> None:
    text = render(engine_families(parse_exposition(RECORDED), model="llama-8b",
                                  adapters_loaded=2))
    exported = types(text)
    assert set(mapped_names()) <= METRIC_NAMES
    # Every family the mapping can produce is in this recording, with the contract's type.
    assert set(exported) == {metric(n).name.removesuffix("_total") for n in mapped_names()}
    for name, typ in exported.items():
        contract_name = name + "_total" if typ == "counter" else name
        assert metric(contract_name).type == typ


def test_recorded_two_engine_exposition_is_added_up() -> None:
    got = samples(render(engine_families(parse_exposition(RECORDED), model="llama-8b",
                                         adapters_loaded=2)))
    assert got[("brix_engine_up", M)] == 1.0
    assert got[("brix_engine_requests_running", M)] == 12.0
    assert got[("brix_engine_requests_waiting", M)] == 3.0
    assert got[("brix_engine_kv_cache_usage_ratio", M)] == pytest.approx(0.375)
    assert got[("brix_engine_prompt_tokens_total", M)] == 2000.0
    assert got[("brix_engine_generation_tokens_total", M)] == 5120.0
    assert got[("brix_engine_prefix_cache_queries_total", M)] == 2000.0
    assert got[("brix_engine_prefix_cache_hits_total", M)] == 640.0
    assert got[("brix_lora_adapters_loaded", M)] == 2.0
    ttft = "brix_engine_time_to_first_token_seconds"
    for le, count in (("0.01", 1.0), ("0.1", 6.0), ("1.0", 14.0), ("+Inf", 16.0)):
        assert got[(f"{ttft}_bucket", (("le", le), *M))] == count
    assert got[(f"{ttft}_count", M)] == 16.0
    assert got[(f"{ttft}_sum", M)] == pytest.approx(5.75)
    e2e = "brix_engine_e2e_request_latency_seconds"
    assert got[(f"{e2e}_bucket", (("le", "0.3"), *M))] == 1.0
    assert got[(f"{e2e}_bucket", (("le", "5.0"), *M))] == 14.0
    assert got[(f"{e2e}_count", M)] == 16.0
    assert got[(f"{e2e}_sum", M)] == pytest.approx(50.0)
    tpot = "brix_engine_time_per_output_token_seconds"
    assert got[(f"{tpot}_bucket", (("le", "0.025"), *M))] == 9.0
    assert got[(f"{tpot}_bucket", (("le", "0.05"), *M))] == 15.0
    assert got[(f"{tpot}_count", M)] == 16.0
    assert got[(f"{tpot}_sum", M)] == pytest.approx(0.44)
    # Only brix names, only the model label (plus le).
    for name, labels in got:
        assert name.startswith("brix_")
        assert {k for k, _ in labels} <= {"model", "le"}


def test_engine_down_exports_up_zero_and_nothing_else() -> None:
    got = samples(render(engine_down_families(model="m")))
    assert got == {("brix_engine_up", (("model", "m"),)): 0.0}


def test_absent_engine_families_give_no_brix_family() -> None:
    text = (
        "# TYPE vllm:num_requests_waiting gauge\n"
        'vllm:num_requests_waiting{engine="0",model_name="m"} 4.0\n'
    )
    got = samples(render(engine_families(parse_exposition(text), model="m",
                                         adapters_loaded=None)))
    assert got == {
        ("brix_engine_up", (("model", "m"),)): 1.0,
        ("brix_engine_requests_waiting", (("model", "m"),)): 4.0,
    }


def test_counters_without_type_lines_are_still_read() -> None:
    # An engine that writes bare samples (no # TYPE): the parser calls them "unknown".
    text = 'vllm:prompt_tokens_total{model_name="m"} 42\n'
    got = samples(render(engine_families(parse_exposition(text), model="m",
                                         adapters_loaded=0)))
    assert got[("brix_engine_prompt_tokens_total", (("model", "m"),))] == 42.0
    assert got[("brix_lora_adapters_loaded", (("model", "m"),))] == 0.0


@pytest.mark.parametrize("text", [
    "vllm:num_requests_waiting{engine=\"0\" 4\n",
    "vllm:prompt_tokens_total is not prometheus text\n",
    'vllm:num_requests_waiting{engine="0"} four\n',
])
def test_text_that_is_not_prometheus_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not Prometheus text"):
        parse_exposition(text)


def test_only_the_mapped_families_are_read() -> None:
    # Other families, even ones the parser would refuse, do not disturb the mapping;
    # a family whose name only starts like a mapped one is not mixed in.
    text = (
        "# HELP vllm:num_requests_waiting_by_reason Number of waiting requests by reason.\n"
        "# TYPE vllm:num_requests_waiting_by_reason gauge\n"
        'vllm:num_requests_waiting_by_reason{reason="capacity"} 9\n'
        "# TYPE vllm:num_requests_waiting gauge\n"
        'vllm:num_requests_waiting{engine="0"} 4\n'
        "python_gc_objects_collected_total{generation=\"0\"} not-a-number\n"
    )
    assert parse_exposition(text) == {
        "vllm:num_requests_waiting": [Sample(labels={"engine": "0"}, value=4.0)]}
    assert parse_exposition(RECORDED) == parse_exposition(RECORDED + "garbage line\n")


def test_histogram_without_an_inf_bucket_is_left_out() -> None:
    text = (
        "# TYPE vllm:time_to_first_token_seconds histogram\n"
        'vllm:time_to_first_token_seconds_bucket{le="0.1"} 1\n'
        "vllm:time_to_first_token_seconds_sum 0.05\n"
    )
    got = samples(render(engine_families(parse_exposition(text), model="m",
                                         adapters_loaded=None)))
    assert not any(name.startswith("brix_engine_time_to_first") for name, _ in got)


# --- property: what an engine with N data-parallel engines writes, the mapping adds up ---

_engine_state = st.fixed_dictionaries({
    "running": st.integers(0, 500),
    "waiting": st.integers(0, 500),
    "kv": st.floats(0, 1),
    "prompt": st.integers(0, 10**9),
    "generation": st.integers(0, 10**9),
    "ttft": st.lists(st.floats(0, 100), max_size=20),
    "e2e": st.lists(st.floats(0, 1000), max_size=20),
})


def _vllm_exposition(engines: list[dict[str, object]]) -> str:
    """What vLLM's PrometheusStatLogger writes for these engines (same names, labels)."""
    reg = CollectorRegistry()
    labels = ["model_name", "engine"]
    running = Gauge("vllm:num_requests_running", "", labels, registry=reg)
    waiting = Gauge("vllm:num_requests_waiting", "", labels, registry=reg)
    kv = Gauge("vllm:kv_cache_usage_perc", "", labels, registry=reg)
    prompt = Counter("vllm:prompt_tokens", "", labels, registry=reg)
    gen = Counter("vllm:generation_tokens", "", labels, registry=reg)
    ttft = Histogram("vllm:time_to_first_token_seconds", "", labels, registry=reg,
                     buckets=(0.001, 0.01, 0.1, 1.0, 10.0))
    e2e = Histogram("vllm:e2e_request_latency_seconds", "", labels, registry=reg,
                    buckets=(0.3, 1.0, 10.0, 100.0))
    for i, e in enumerate(engines):
        lv = ("m", str(i))
        # vLLM creates every engine's series up front (create_metric_per_engine).
        for family in (running, waiting, kv, prompt, gen, ttft, e2e):
            family.labels(*lv)
        running.labels(*lv).set(e["running"])  # type: ignore[arg-type]
        waiting.labels(*lv).set(e["waiting"])  # type: ignore[arg-type]
        kv.labels(*lv).set(e["kv"])  # type: ignore[arg-type]
        prompt.labels(*lv).inc(e["prompt"])  # type: ignore[arg-type]
        gen.labels(*lv).inc(e["generation"])  # type: ignore[arg-type]
        for v in e["ttft"]:  # type: ignore[attr-defined]
            ttft.labels(*lv).observe(v)
        for v in e["e2e"]:  # type: ignore[attr-defined]
            e2e.labels(*lv).observe(v)
    return generate_latest(reg).decode()


@settings(max_examples=60, deadline=None)
@given(engines=st.lists(_engine_state, min_size=1, max_size=4))
def test_any_number_of_engines_is_added_up(engines: list[dict[str, object]]) -> None:
    got = samples(render(engine_families(parse_exposition(_vllm_exposition(engines)),
                                         model="m", adapters_loaded=None)))
    m = (("model", "m"),)
    assert got[("brix_engine_requests_running", m)] == sum(e["running"] for e in engines)  # type: ignore[misc]
    assert got[("brix_engine_requests_waiting", m)] == sum(e["waiting"] for e in engines)  # type: ignore[misc]
    assert got[("brix_engine_kv_cache_usage_ratio", m)] == pytest.approx(
        sum(e["kv"] for e in engines) / len(engines))  # type: ignore[misc]
    assert got[("brix_engine_prompt_tokens_total", m)] == sum(e["prompt"] for e in engines)  # type: ignore[misc]
    assert got[("brix_engine_generation_tokens_total", m)] == sum(
        e["generation"] for e in engines)  # type: ignore[misc]
    ttft_all = [v for e in engines for v in e["ttft"]]  # type: ignore[attr-defined]
    name = "brix_engine_time_to_first_token_seconds"
    assert got[(f"{name}_count", m)] == len(ttft_all)
    assert got[(f"{name}_sum", m)] == pytest.approx(sum(ttft_all))
    for le in (0.001, 0.01, 0.1, 1.0, 10.0):
        assert got[(f"{name}_bucket", (("le", str(le)), *m))] == sum(
            1 for v in ttft_all if v <= le)
    e2e_all = [v for e in engines for v in e["e2e"]]  # type: ignore[attr-defined]
    name = "brix_engine_e2e_request_latency_seconds"
    assert got[(f"{name}_bucket", (("le", "+Inf"), *m))] == len(e2e_all)
    for le in (0.3, 1.0, 10.0, 100.0):
        assert got[(f"{name}_bucket", (("le", str(le)), *m))] == sum(
            1 for v in e2e_all if v <= le)
