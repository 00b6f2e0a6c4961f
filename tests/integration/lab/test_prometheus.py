"""The lab against a real Prometheus (Debian's): a history backfilled with promtool,
read back as a ``prometheus:`` trace, and the lab's own PromQL checked against
Prometheus' answers over the same samples."""

from __future__ import annotations

import math
import subprocess
import time
from typing import Any

import httpx
import pytest

from lab.prom import TSDB
from lab.traces import TraceError, load
from tests.helpers.procs import ProcessGroup
from tests.helpers.prometheus import start_prometheus

pytestmark = pytest.mark.integration

MODEL = "hist-model"
SCRAPE = 15
HOUR = 3600
BUCKETS = (0.1, 0.5, 1.0, 2.5, math.inf)
Rows = list[tuple[str, str, str, int, float]]
History = tuple[str, int, Rows]
# Two pods; 2 requests/s in the first half hour, 6 in the second (split evenly),
# 500 prompt and 100 output tokens each; a pod restarts (counters reset) at 40 min.


def _samples(start: int) -> list[tuple[str, str, str, int, float]]:
    """(family, sample name, labels, time, value) for every scrape of the hour."""
    rows: list[tuple[str, str, str, int, float]] = []
    requests = {"a": 0.0, "b": 0.0}
    buckets = {"a": [0.0] * len(BUCKETS), "b": [0.0] * len(BUCKETS)}
    for k in range(HOUR // SCRAPE + 1):
        t = start + k * SCRAPE
        offset = k * SCRAPE
        rate = 2.0 if offset < HOUR / 2 else 6.0
        for pod in ("a", "b"):
            if k > 0:
                requests[pod] += rate / 2 * SCRAPE
                # Per scrape: a fifth of the requests fast (<= 0.1 s), the rest under 1 s.
                n = rate / 2 * SCRAPE
                for i, bound in enumerate(BUCKETS):
                    buckets[pod][i] += n * (0.2 if bound < 0.5 else 1.0)
            if pod == "b" and offset == 2400:
                requests[pod] = 0.0
                buckets[pod] = [0.0] * len(BUCKETS)
            labels = f'model="{MODEL}",pod="{pod}"'
            rows.append(("brix_gateway_requests", "brix_gateway_requests_total",
                         f'{labels},code="200"', t, requests[pod]))
            rows.append(("brix_engine_prompt_tokens", "brix_engine_prompt_tokens_total", labels,
                         t, requests[pod] * 500))
            rows.append(("brix_engine_generation_tokens", "brix_engine_generation_tokens_total",
                         labels, t, requests[pod] * 100))
            for bound, count in zip(BUCKETS, buckets[pod], strict=True):
                le = "+Inf" if math.isinf(bound) else str(bound)
                rows.append(("ttft", "ttft_bucket", f'{labels},le="{le}"', t, count))
    return rows


def _openmetrics(rows: list[tuple[str, str, str, int, float]]) -> str:
    kinds = {"brix_gateway_requests": "counter", "brix_engine_prompt_tokens": "counter",
             "brix_engine_generation_tokens": "counter", "ttft": "histogram"}
    lines: list[str] = []
    for family, kind in kinds.items():
        lines.append(f"# TYPE {family} {kind}")
        lines += [f"{name}{{{labels}}} {value} {t}"
                  for fam, name, labels, t, value in rows if fam == family]
    return "\n".join(lines) + "\n# EOF\n"


@pytest.fixture(scope="module")
def history(module_procs: ProcessGroup,
            tmp_path_factory: pytest.TempPathFactory) -> History:
    work = tmp_path_factory.mktemp("prom-history")
    start = (int(time.time()) - 3 * HOUR) // 60 * 60
    rows = _samples(start)
    source = work / "history.om"
    source.write_text(_openmetrics(rows))
    done = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(source),
                           str(work / "data")], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    _, url = start_prometheus(module_procs, work, {"global": {"scrape_interval": "15s"},
                                                    "scrape_configs": []})
    return url, start, rows


def test_a_window_of_history_becomes_a_trace_that_follows_it(
        history: History) -> None:
    url, start, _ = history
    trace = load(f"prometheus:{url}?model={MODEL}&start={start + 60}&end={start + HOUR}"
                 "&step=60&seed=3")
    first = sum(1 for r in trace.requests if r.arrival < 1700)
    second = sum(1 for r in trace.requests if 1800 <= r.arrival < 3500)
    assert first == pytest.approx(2 * 1700, rel=0.1)
    assert second == pytest.approx(6 * 1700, rel=0.1)
    steady = [r for r in trace.requests if r.arrival < 1700]
    assert {r.prompt_tokens for r in steady} == {500}
    assert {r.output_tokens for r in steady} == {100}


def test_a_model_without_history_is_a_clear_error(history: History) -> None:
    url, start, _ = history
    with pytest.raises(TraceError, match="no brix_gateway_requests_total for model 'other'"):
        load(f"prometheus:{url}?model=other&start={start}&end={start + HOUR}")


def test_the_labs_promql_answers_as_prometheus_does(history: History) -> None:
    url, start, rows = history
    db = TSDB()
    for _, name, labels, t, value in rows:
        pod = "a" if 'pod="a"' in labels else "b"
        le = labels.split('le="')[1].rstrip('"') if 'le="' in labels else ""
        db.append(name, float(t - start), value, pod=pod, le=le)
    for offset in (600, 1807, 2400, 2415, 2452, 3000):
        at = start + offset
        view = db.view(float(offset))
        for window in (60, 120):
            promql = f"sum(rate(brix_gateway_requests_total[{window}s]))"
            real = float(query_at(url, promql, at)[0]["value"][1])
            assert view.sum_rate("brix_gateway_requests_total", window) == \
                pytest.approx(real, rel=1e-9), (offset, window)
            hq = f"histogram_quantile(0.9, sum by (le) (rate(ttft_bucket[{window}s])))"
            real_q = float(query_at(url, hq, at)[0]["value"][1])
            assert view.histogram_quantile(0.9, "ttft", window) == \
                pytest.approx(real_q, rel=1e-9), (offset, window)
        real_sum = float(query_at(url, "sum(brix_engine_prompt_tokens_total)", at)[0]["value"][1])
        assert view.sum("brix_engine_prompt_tokens_total") == pytest.approx(real_sum)


def query_at(url: str, promql: str, at: int) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/api/v1/query", params={"query": promql, "time": at}, timeout=10.0)
    r.raise_for_status()
    result: list[dict[str, Any]] = r.json()["data"]["result"]
    assert result, promql
    return result

