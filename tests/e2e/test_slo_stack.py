"""The `slo` model on the local stack: a step in load scales it before a queue forms.

sim-slo (k8s/models/sim-slo) is sim-model on the SLO policy: it plans for 80 %
of what one engine serves within its TTFT target. Seven clients in a closed
loop keep about seven of an engine's eight sequences busy, so its queue stays
below the queue policy's threshold (sim-model's `autoscale-target`), which
would therefore never add a pod; the SLO policy must.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

import httpx
import pytest

from brix.local.stack import Stack
from tests.e2e.test_sim_stack import replicas
from tests.helpers.localkube import kubectl
from tests.helpers.prometheus import query

pytestmark = pytest.mark.e2e

CLIENTS = 7


async def _drive(url: str, model: str, stop: threading.Event, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    done = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done
        while time.monotonic() < deadline and not stop.is_set():
            r = await client.post(f"{url}/v1/completions", json={
                "model": model, "prompt": "load", "max_tokens": 64})
            assert r.status_code == 200, r.text
            done += 1

    async with httpx.AsyncClient(timeout=120) as client:
        await asyncio.gather(*(worker(client) for _ in range(CLIENTS)))
    return done


def _waiting(stack: Stack, model: str) -> float:
    result = query(stack.config.prometheus_url,
                   f'sum(brix_engine_requests_waiting{{model="{model}"}})')
    return float(result[0]["value"][1]) if result else 0.0


def test_a_load_step_scales_the_slo_model_before_its_queue_passes_the_threshold(
        sim_stack: Stack) -> None:
    threshold = float(kubectl(sim_stack.config.kubeconfig, "-n", "brix-models", "get",
                              "deploy", "sim-model", "-o",
                              r"jsonpath={.metadata.annotations.brix\.dev/autoscale-target}"
                              ).stdout)
    assert replicas(sim_stack, "sim-slo") == (1, 1)
    seen: list[tuple[int, float]] = []  # (spec replicas, engines' waiting requests)
    stop = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        load = pool.submit(asyncio.run, _drive(sim_stack.config.gateway_url, "sim-slo",
                                               stop, seconds=100))
        try:
            while not load.done():
                spec, _ = replicas(sim_stack, "sim-slo")
                seen.append((spec, _waiting(sim_stack, "sim-slo")))
                if spec > 1:
                    break
                time.sleep(1)
        finally:
            stop.set()
        served = load.result()
    assert served > 0
    assert any(spec > 1 for spec, _ in seen), f"sim-slo was not scaled up: {seen}"
    before = [waiting for _, waiting in seen]
    assert max(before) <= threshold, (
        f"the queue passed the queue policy's {threshold:g} before the scale-up: {seen}")
    events = kubectl(sim_stack.config.kubeconfig, "-n", "brix-models", "get", "events",
                     "--field-selector", "involvedObject.name=sim-slo", "-o",
                     "jsonpath={.items[*].message}").stdout
    print(f"seen (replicas, waiting): {seen}\nevents: {events}")
    assert "slo: 1 -> " in events, events
