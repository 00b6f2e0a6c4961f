"""The sidecar's /metrics, /healthz and /readyz against a real sim engine."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from brix.contract import METRIC_NAMES, metric
from tests.helpers.procs import Proc, ProcessGroup
from tests.helpers.prometheus import query, start_prometheus
from tests.helpers.sidecar import start_sidecar
from tests.helpers.sim import FAST, sim_metrics, sim_value, slow, start_sim
from tests.helpers.wait import wait_until
from tests.integration.inference_sidecar.conftest import write_adapter

MODEL = "sim-llama"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(sidecar: Proc) -> Samples:
    text = httpx.get(f"{sidecar.url}/metrics", timeout=10).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    wanted = frozenset(labels.items())
    found = [v for (n, ls), v in samples.items() if n == name and wanted <= ls]
    return sum(found) if found else None




def _as_brix(engine: Samples) -> Samples:
    """What the sim's own figures are under brix's names (the sim has one engine)."""
    names = {
        "vllm:num_requests_waiting": "brix_engine_requests_waiting",
        "vllm:num_requests_running": "brix_engine_requests_running",
        "vllm:kv_cache_usage_perc": "brix_engine_kv_cache_usage_ratio",
        "vllm:prompt_tokens_total": "brix_engine_prompt_tokens_total",
        "vllm:generation_tokens_total": "brix_engine_generation_tokens_total",
        "vllm:prefix_cache_queries_total": "brix_engine_prefix_cache_queries_total",
        "vllm:prefix_cache_hits_total": "brix_engine_prefix_cache_hits_total",
    }
    for vllm, brix in (("vllm:time_to_first_token_seconds",
                        "brix_engine_time_to_first_token_seconds"),
                       ("vllm:e2e_request_latency_seconds",
                        "brix_engine_e2e_request_latency_seconds"),
                       ("vllm:request_time_per_output_token_seconds",
                        "brix_engine_time_per_output_token_seconds")):
        for suffix in ("_bucket", "_sum", "_count"):
            names[vllm + suffix] = brix + suffix
    out: Samples = {}
    for (name, labels), v in engine.items():
        if name in names:
            kept = {(k, x) for k, x in labels if k == "le"} | {("model", MODEL)}
            out[(names[name], frozenset(kept))] = v
    return out


def _engine_part(samples: Samples) -> Samples:
    return {k: v for k, v in samples.items()
            if k[0].startswith("brix_engine_") and k[0] != "brix_engine_up"}


def test_metrics_follow_the_engine_under_load_and_match_its_figures(
    procs: ProcessGroup,
) -> None:
    engine = start_sim(procs, name=MODEL, extra_args=slow(ms_per_token=20, max_num_seqs=2))
    assert engine.url is not None
    sidecar = start_sidecar(procs, engine_url=engine.url)
    idle = scrape(sidecar)
    assert value(idle, "brix_engine_up", model=MODEL) == 1.0
    assert value(idle, "brix_engine_requests_running", model=MODEL) == 0.0
    assert value(idle, "brix_lora_adapters_loaded", model=MODEL) == 0.0

    def one(i: int) -> int:
        r = httpx.post(f"{engine.url}/v1/completions", timeout=120, json={
            "model": MODEL, "prompt": f"request {i} " * (i + 1), "max_tokens": 40,
            "ignore_eos": True})
        return r.status_code

    seen: list[Samples] = []
    with ThreadPoolExecutor(8) as pool:
        results = pool.map(one, range(8))

        def busy() -> bool:
            s = scrape(sidecar)
            seen.append(s)
            return (value(s, "brix_engine_requests_running", model=MODEL) == 2.0
                    and (value(s, "brix_engine_requests_waiting", model=MODEL) or 0) > 0)

        wait_until(busy, what="2 running and some waiting on the sidecar's /metrics")
        assert list(results) == [200] * 8
    assert (value(seen[-1], "brix_engine_kv_cache_usage_ratio", model=MODEL) or 0) > 0

    wait_until(lambda: value(scrape(sidecar), "brix_engine_requests_running") == 0.0,
               what="the engine idle again")
    mine, theirs = scrape(sidecar), _as_brix(sim_metrics(engine.url))
    assert _engine_part(mine) == theirs
    assert value(mine, "brix_engine_generation_tokens_total") == 8 * 40
    assert value(mine, "brix_engine_e2e_request_latency_seconds_count") == 8
    assert value(mine, "brix_engine_time_per_output_token_seconds_count") == 8
    assert value(mine, "brix_engine_prompt_tokens_total") == sim_value(
        engine.url, "vllm:prompt_tokens_total") > 0


def test_prefix_cache_counters_match_the_engines_and_rise_on_a_shared_prefix(
    procs: ProcessGroup,
) -> None:
    engine = start_sim(procs, name=MODEL, extra_args=FAST)
    assert engine.url is not None
    sidecar = start_sidecar(procs, engine_url=engine.url)
    shared = " ".join(f"rule{i}" for i in range(120))  # 120 tokens in common

    def ask(question: str) -> None:
        r = httpx.post(f"{engine.url}/v1/chat/completions", timeout=60, json={
            "model": MODEL, "max_tokens": 4, "messages": [
                {"role": "system", "content": shared}, {"role": "user", "content": question}]})
        assert r.status_code == 200, r.text

    ask("first question")
    before = scrape(sidecar)
    assert value(before, "brix_engine_prefix_cache_queries_total", model=MODEL) == sim_value(
        engine.url, "vllm:prefix_cache_queries_total") > 0
    ask("a second question")
    after = scrape(sidecar)
    hits = value(after, "brix_engine_prefix_cache_hits_total", model=MODEL)
    assert hits == sim_value(engine.url, "vllm:prefix_cache_hits_total")
    assert hits is not None
    assert hits - (value(before, "brix_engine_prefix_cache_hits_total") or 0) >= 112
    assert _engine_part(after) == _as_brix(sim_metrics(engine.url))


def test_every_series_is_in_the_contract_and_gpu_series_are_absent_without_nvml(
    procs: ProcessGroup, tmp_path: Path,
) -> None:
    engine = start_sim(procs, name=MODEL, extra_args=FAST)
    assert engine.url is not None
    roots = tmp_path / "roots"
    sidecar = start_sidecar(procs, engine_url=engine.url,
                            extra_args=("--adapter-roots", str(roots), "--model", "labelled"))
    httpx.post(f"{engine.url}/v1/completions", timeout=30,
               json={"model": MODEL, "prompt": "hi", "max_tokens": 3})
    for name in ("a", "b"):
        r = httpx.post(f"{sidecar.url}/v1/adapters", timeout=30, json={
            "name": name, "source": f"file://{write_adapter(roots / name)}"})
        assert r.status_code == 201, r.text

    text = httpx.get(f"{sidecar.url}/metrics", timeout=10).text
    families = list(text_string_to_metric_families(text))
    exported = set()
    for f in families:
        contract_name = f.name + "_total" if f.type == "counter" else f.name
        assert contract_name in METRIC_NAMES, f.name
        assert metric(contract_name).type == f.type
        exported.add(contract_name)
        for s in f.samples:
            assert s.labels.get("model") == "labelled"  # --model sets the label
            assert set(s.labels) <= {"model", "le"}
    assert not any(n.startswith("brix_gpu_") for n in exported)  # no NVML here: absent
    assert exported == {m.name for m in (metric(n) for n in METRIC_NAMES)
                        if m.exporter == "sidecar" and not m.name.startswith("brix_gpu_")}
    assert value(scrape(sidecar), "brix_lora_adapters_loaded") == 2.0


def test_engine_down_exports_up_zero_and_no_stale_values_then_recovers(
    procs: ProcessGroup,
) -> None:
    engine = start_sim(procs, name=MODEL, extra_args=FAST)
    assert engine.url is not None
    sidecar = start_sidecar(procs, engine_url=engine.url)
    httpx.post(f"{engine.url}/v1/completions", timeout=30,
               json={"model": MODEL, "prompt": "hi", "max_tokens": 3})
    assert value(scrape(sidecar), "brix_engine_generation_tokens_total") == 3.0

    engine.stop()
    down = scrape(sidecar)
    assert down == {("brix_engine_up", frozenset({("model", MODEL)})): 0.0}

    port = engine.url.rsplit(":", 1)[1]
    start_sim(procs, name=MODEL, extra_args=(*FAST, "--port", port))
    wait_until(lambda: value(scrape(sidecar), "brix_engine_up") == 1.0,
               what="the engine back up")
    back = scrape(sidecar)
    assert value(back, "brix_engine_generation_tokens_total") == 0.0  # a new engine's count


def test_a_slow_engine_counts_as_down(procs: ProcessGroup) -> None:
    # A "server" that accepts connections and never answers.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        sidecar = start_sidecar(procs, engine_url=url, extra_args=(
            "--metrics-timeout", "0.3", "--model", "m"))
        assert scrape(sidecar) == {("brix_engine_up", frozenset({("model", "m")})): 0.0}


def test_healthz_and_readyz_with_a_cached_probe(procs: ProcessGroup) -> None:
    engine = start_sim(procs, name=MODEL, extra_args=FAST)
    assert engine.url is not None
    sidecar = start_sidecar(procs, engine_url=engine.url,
                            extra_args=("--ready-cache-seconds", "3600"))
    before = sim_value(engine.url, "vllm:request_success_total")
    answers = []
    with ThreadPoolExecutor(6) as pool:
        barrier = threading.Barrier(6)

        def probe(_: int) -> httpx.Response:
            barrier.wait(10)
            return httpx.get(f"{sidecar.url}/readyz", timeout=30)

        answers = list(pool.map(probe, range(6)))
    answers += [httpx.get(f"{sidecar.url}/readyz", timeout=30) for _ in range(4)]
    assert [r.status_code for r in answers] == [200] * 10
    assert answers[0].json()["status"] == "ready"
    # Ten probes, one real completion on the engine.
    assert sim_value(engine.url, "vllm:request_success_total") == before + 1
    assert httpx.get(f"{sidecar.url}/healthz", timeout=10).json() == {"status": "ok"}
    # SIGTERM: uvicorn shuts down (lifespan closed), then re-raises the signal.
    assert sidecar.stop() in (0, -15)
    assert "Finished server process" in sidecar.output()
    assert "Traceback" not in sidecar.output()


def test_readyz_follows_the_engine_once_the_cache_expires(procs: ProcessGroup) -> None:
    engine = start_sim(procs, name=MODEL, extra_args=FAST)
    assert engine.url is not None
    sidecar = start_sidecar(procs, engine_url=engine.url,
                            extra_args=("--ready-cache-seconds", "0.2"))
    assert httpx.get(f"{sidecar.url}/readyz", timeout=30).status_code == 200
    engine.stop()
    wait_until(lambda: httpx.get(f"{sidecar.url}/readyz", timeout=30).status_code == 503,
               what="/readyz 503 after the engine stopped")
    body = httpx.get(f"{sidecar.url}/readyz", timeout=30).json()
    assert body["error"]["code"] == "engine_not_ready"
    assert httpx.get(f"{sidecar.url}/healthz", timeout=10).status_code == 200


def test_readyz_stays_ready_while_the_engine_batch_is_full(procs: ProcessGroup) -> None:
    """A busy engine is a serving engine: once it has completed a request, /readyz does
    not queue a completion behind a full batch (the kubelet's probe gives up after 1 s
    by default, and a busy pod taken out of routing is the worst outcome)."""
    engine = start_sim(procs, name=MODEL, extra_args=slow(ms_per_token=50, max_num_seqs=1))
    assert engine.url is not None
    sidecar = start_sidecar(procs, engine_url=engine.url,
                            extra_args=("--ready-cache-seconds", "0.1"))
    assert httpx.get(f"{sidecar.url}/readyz", timeout=30).status_code == 200

    def long_request(_: int) -> int:
        return httpx.post(f"{engine.url}/v1/completions", timeout=60, json={
            "model": MODEL, "prompt": "hi", "max_tokens": 120, "ignore_eos": True}).status_code

    with ThreadPoolExecutor(2) as pool:
        running = pool.map(long_request, range(2))  # one in the batch of one, one waiting
        wait_until(lambda: sim_value(engine.url, "vllm:num_requests_waiting") == 1,
                   what="one request running and one waiting")
        answers = []
        for _ in range(5):
            answers.append(httpx.get(f"{sidecar.url}/readyz", timeout=1.0).status_code)
            time.sleep(0.2)
        assert answers == [200] * 5
        assert sim_value(engine.url, "vllm:num_requests_waiting") == 1  # still full
        assert list(running) == [200, 200]
    engine.stop()
    wait_until(lambda: httpx.get(f"{sidecar.url}/readyz", timeout=30).status_code == 503,
               what="/readyz 503 after the engine stopped")


@pytest.mark.timeout(120)
def test_prometheus_scrapes_the_sidecar(procs: ProcessGroup, tmp_path: Path) -> None:
    engine = start_sim(procs, name=MODEL, extra_args=FAST)
    assert engine.url is not None
    sidecar = start_sidecar(procs, engine_url=engine.url)
    httpx.post(f"{engine.url}/v1/completions", timeout=30,
               json={"model": MODEL, "prompt": "hi", "max_tokens": 5})
    assert sidecar.url is not None
    _, prom = start_prometheus(procs, tmp_path / "prom", {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [{"job_name": "sidecar", "static_configs": [
            {"targets": [sidecar.url.removeprefix("http://")]}]}],
    })
    wait_until(lambda: bool(query(prom, f'brix_engine_up{{model="{MODEL}"}} == 1')),
               timeout=60, what="Prometheus sees brix_engine_up 1")
    got = query(prom, "brix_engine_generation_tokens_total")
    assert [float(r["value"][1]) for r in got] == [5.0]
    q = "histogram_quantile(0.5, rate(brix_engine_time_to_first_token_seconds_bucket[1m]))"
    query(prom, q)  # the buckets are a histogram PromQL accepts
