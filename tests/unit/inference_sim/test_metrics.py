"""The sim's metric families: vLLM's names and labels, fed by committed steps."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from inference.sim.metrics import MAX_LORA_INFO_SERIES, SimMetrics
from inference.sim.prefix_cache import block_hashes
from inference.sim.scheduler import Scheduler, Sequence
from inference.sim.timing import TimingModel


def _metrics() -> tuple[Scheduler, SimMetrics, list[float]]:
    now = [100.0]
    scheduler = Scheduler(max_num_seqs=2, kv_cache_tokens=1000, max_loras=4,
                          timing=TimingModel(prefill_tokens_per_s=1000, decode_ms_per_token=10,
                                             decode_ms_per_token_per_seq=0))
    return scheduler, SimMetrics(scheduler=scheduler, model_name="m", max_loras=4,
                                 clock=lambda: now[0]), now


def _samples(metrics: SimMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(metrics.render().decode())
            for s in f.samples}


def test_gauges_follow_the_scheduler_with_vllms_labels() -> None:
    scheduler, metrics, _ = _metrics()
    for i in range(3):
        scheduler.add(Sequence(id=i, prompt_tokens=100, output_len=100))
    scheduler.plan()
    got = _samples(metrics)
    labels = (("engine", "0"), ("model_name", "m"))
    assert got[("vllm:num_requests_running", labels)] == 2
    assert got[("vllm:num_requests_waiting", labels)] == 1
    assert got[("vllm:kv_cache_usage_perc", labels)] == 0.4


def test_steps_count_tokens_and_latencies() -> None:
    scheduler, metrics, _ = _metrics()
    seq = Sequence(id=1, prompt_tokens=30, output_len=2, arrival=0.0)
    scheduler.add(seq)
    for now in (0.5, 1.5):
        step = scheduler.plan()
        assert step is not None
        metrics.observe_step(scheduler.commit(step, now), reasons={1: "stop"})
    got = _samples(metrics)
    labels = (("engine", "0"), ("model_name", "m"))
    assert got[("vllm:prompt_tokens_total", labels)] == 30
    assert got[("vllm:generation_tokens_total", labels)] == 2
    assert got[("vllm:time_to_first_token_seconds_sum", labels)] == 0.5
    assert got[("vllm:e2e_request_latency_seconds_sum", labels)] == 1.5
    # Two tokens, the second a second after the first: 1 s per output token after it.
    assert got[("vllm:request_time_per_output_token_seconds_sum", labels)] == 1.0
    assert got[("vllm:request_time_per_output_token_seconds_count", labels)] == 1
    assert got[("vllm:request_success_total", (*labels[:1], ("finished_reason", "stop"),
                                               labels[1]))] == 1


def test_lora_info_keeps_a_bounded_number_of_label_sets() -> None:
    scheduler, metrics, now = _metrics()
    for i in range(MAX_LORA_INFO_SERIES + 10):
        scheduler.add(Sequence(id=i, prompt_tokens=1, output_len=1, adapter=f"a{i}"))
        now[0] += 1
        metrics.update_lora_info()
        scheduler.abort(scheduler.waiting[0])
    series = {labels: v for (name, labels), v in _samples(metrics).items()
              if name == "vllm:lora_requests_info"}
    assert len(series) == MAX_LORA_INFO_SERIES
    latest = dict(max(series, key=lambda k: series[k]))
    assert latest == {"max_lora": "4", "running_lora_adapters": "",
                      "waiting_lora_adapters": f"a{MAX_LORA_INFO_SERIES + 9}"}


def test_prefix_cache_counters_count_queried_and_cached_prompt_tokens_at_admission() -> None:
    scheduler = Scheduler(max_num_seqs=4, kv_cache_tokens=1024, max_loras=4,
                          timing=TimingModel(prefill_tokens_per_s=1000, decode_ms_per_token=10,
                                             decode_ms_per_token_per_seq=0),
                          enable_prefix_caching=True, block_size=16)
    metrics = SimMetrics(scheduler=scheduler, model_name="m", max_loras=4, clock=lambda: 0.0)
    labels = (("engine", "0"), ("model_name", "m"))
    got = _samples(metrics)
    assert got[("vllm:prefix_cache_queries_total", labels)] == 0
    assert got[("vllm:prefix_cache_hits_total", labels)] == 0
    tokens = list(range(40))
    for i, prompt in enumerate((tokens, [*tokens, 99])):
        seq = Sequence(id=i, prompt_tokens=len(prompt), output_len=1,
                       block_hashes=block_hashes(prompt, block_size=16))
        scheduler.add(seq)
        step = scheduler.plan()
        assert step is not None
        metrics.observe_admitted(step.prefill, now=0.0)
        metrics.observe_step(scheduler.commit(step, 1.0), reasons={})
    got = _samples(metrics)
    assert got[("vllm:prefix_cache_queries_total", labels)] == 40 + 41
    assert got[("vllm:prefix_cache_hits_total", labels)] == 32  # two whole blocks
    assert got[("vllm:prompt_tokens_total", labels)] == 40 + 41


def test_prefix_cache_counters_stay_zero_with_caching_off() -> None:
    scheduler, metrics, _ = _metrics()
    seq = Sequence(id=1, prompt_tokens=30, output_len=1)
    scheduler.add(seq)
    step = scheduler.plan()
    assert step is not None
    metrics.observe_admitted(step.prefill, now=0.0)
    labels = (("engine", "0"), ("model_name", "m"))
    assert _samples(metrics)[("vllm:prefix_cache_queries_total", labels)] == 0
