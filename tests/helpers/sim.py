"""Start a sim engine (``python -m inference.sim``) for a test.

Usage::

    def test_x(procs):
        engine = start_sim(procs, name="m1", extra_args=FAST)
        httpx.get(engine.url + "/v1/models")

``engine.url`` is ``http://127.0.0.1:PORT`` (the sim binds 127.0.0.1 here, on
a free port). The sim speaks vLLM's OpenAI API, its LoRA routes
(``/v1/load_lora_adapter``, ``/v1/unload_lora_adapter``: the path must exist)
and its ``/metrics`` names.

Timing flags for tests:

- ``FAST``: answers in milliseconds (prefill 1M tokens/s, 1 ms per decode
  step): for API tests that do not care about load.
- ``slow(ms_per_token=..., max_num_seqs=...)``: each request takes about
  ``max_tokens * ms_per_token`` ms, so a burst of requests keeps the engine
  busy long enough to see ``vllm:num_requests_running``/``_waiting`` move.
  Send ``"ignore_eos": true`` (``extra_body`` with the openai package) to make
  every request produce exactly ``max_tokens`` tokens.

Other flags tests use: ``--max-num-seqs N`` (more requests wait, and show in
``vllm:num_requests_waiting``), ``--kv-cache-tokens`` with ``--max-model-len``
(requests that do not fit wait), ``--max-loras`` (distinct adapters per batch).

``sim_value(url, "vllm:num_requests_waiting")`` reads one metric (summed over
the series whose labels include the ones given); ``sim_metrics(url)`` all.
``sim_deployment("m1", 2, FAST)`` is a Deployment of sim pods for localkube's
kubelet (labelled ``brix.dev/model``, Ready when the sim answers ``/health``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.procs import Proc, ProcessGroup

FAST: tuple[str, ...] = (
    "--prefill-tokens-per-s", "1000000",
    "--decode-ms-per-token", "1",
    "--decode-ms-per-token-per-seq", "0",
)


def slow(*, ms_per_token: float = 50.0, max_num_seqs: int = 256) -> tuple[str, ...]:
    """Flags for a sim whose requests take ``ms_per_token`` per output token."""
    return (
        "--prefill-tokens-per-s", "1000000",
        "--decode-ms-per-token", str(ms_per_token),
        "--decode-ms-per-token-per-seq", "0",
        "--max-num-seqs", str(max_num_seqs),
    )


def start_sim(
    procs: ProcessGroup,
    *,
    name: str = "sim-model",
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Proc:
    """Start a sim serving ``name`` on a free loopback port; returns once it listens."""
    full_env = {"BIND_HOST": "127.0.0.1", **(env or {})}
    return procs.start(
        ["-m", "inference.sim", "--served-model-name", name, "--port", "0", *extra_args],
        name=f"sim-{name}", env=full_env, timeout=timeout,
    )


def sim_deployment(model: str, replicas: int, flags: Sequence[str]) -> dict[str, Any]:
    """A Deployment of ``replicas`` sim pods serving ``model`` (the Deployment's name too)."""
    labels = {"brix.dev/model": model}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": model, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
                "name": "engine", "image": "brix/engine",
                "command": [sys.executable, "-m", "inference.sim", "--served-model-name", model,
                            "--port", "8000", *flags],
                "ports": [{"name": "http", "containerPort": 8000}],
                "readinessProbe": {"httpGet": {"path": "/health", "port": "http"},
                                   "periodSeconds": 1},
            }]},
        }},
    }


def sim_metrics(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The sim's /metrics as {(sample name, frozenset of labels): value}."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sim_value(url: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (0 if none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in sim_metrics(url).items() if n == name and wanted <= ls)
