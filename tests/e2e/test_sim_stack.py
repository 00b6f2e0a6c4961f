"""The stack of the `local` overlay with the simulated model: a client's view."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import json
import time
from collections.abc import Callable
from typing import TypeVar

import httpx
import openai
import pytest

from brix.local import view
from brix.local.stack import Stack
from localkube.api import audit
from tests.helpers.localkube import kubectl
from tests.helpers.procs import REPO, free_port
from tests.helpers.prometheus import query

T = TypeVar("T")

# The module's stack waits up to 420 s to be ready, its tests up to 330 s more.
pytestmark = pytest.mark.timeout(900)


def eventually(
    check: Callable[[], T | None], *, timeout: float, what: str, every: float = 1.0
) -> T:
    """Poll ``check`` until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(every)


def replicas(stack: Stack, name: str = "sim-model") -> tuple[int, int]:
    dep = json.loads(kubectl(stack.config.kubeconfig, "-n", "brix-models", "get", "deploy", name,
                             "-o", "json").stdout)
    return int(dep["spec"]["replicas"]), int(dep["status"].get("readyReplicas") or 0)


async def _drive(url: str, seconds: float, concurrency: int) -> int:
    deadline = time.monotonic() + seconds
    done = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            r = await client.post(f"{url}/v1/completions", json={
                "model": "sim-model", "prompt": "load", "max_tokens": 64})
            assert r.status_code == 200, r.text
            done += 1

    async with httpx.AsyncClient(timeout=120) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return done


def test_openai_client_through_the_gateway(sim_stack: Stack) -> None:
    client = openai.OpenAI(base_url=f"{sim_stack.config.gateway_url}/v1", api_key="unused")
    models = {m.id for m in client.models.list().data}
    assert "sim-model" in models
    chat = client.chat.completions.create(
        model="sim-model", messages=[{"role": "user", "content": "hello"}], max_tokens=8)
    assert chat.choices[0].message.content
    assert chat.usage is not None
    assert chat.usage.completion_tokens == 8
    stream = client.completions.create(model="sim-model", prompt="count", max_tokens=5, stream=True)
    text = "".join(chunk.choices[0].text for chunk in stream if chunk.choices)
    assert text
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model",
                                       messages=[{"role": "user", "content": "x"}])


def _scaler_event(name: str, message: str) -> dict[str, object]:
    now = dt.datetime.now(dt.UTC).isoformat()
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{name}.", "namespace": "brix-models"},
        "involvedObject": {"apiVersion": "apps/v1", "kind": "Deployment",
                           "namespace": "brix-models", "name": name},
        "reason": "Scaled", "message": message, "type": "Normal",
        "source": {"component": "brix-scaler"}, "firstTimestamp": now, "lastTimestamp": now,
    }


def test_the_live_view_reads_the_stack_and_names_an_unreachable_prometheus(
    sim_stack: Stack,
) -> None:
    apps, custom, core = sim_stack.clients()
    core.create_namespaced_event("brix-models", _scaler_event("sim-model", "1 -> 2 replicas"))
    # An Event of another Deployment is not sim-model's decision.
    core.create_namespaced_event("brix-models", _scaler_event("sim-model-x", "9 -> 9 replicas"))
    with httpx.Client(base_url=sim_stack.config.prometheus_url, timeout=5) as prometheus:
        snap = eventually(
            lambda: (s := view.gather(apps, custom, core, prometheus)).models
            and _row(s, "sim-model").waiting is not None and s, timeout=30,
            what="sim-model's queue in Prometheus")
    # The stack's two sim models (sim-slo scales on its latency target), one row each.
    assert sorted(m.model for m in snap.models) == ["sim-model", "sim-slo"]
    row = _row(snap, "sim-model")
    assert (row.model, row.namespace, row.ready) == ("sim-model", "brix-models", 1)
    assert not snap.problems
    decisions = [d.split(" ", 1)[1] for d in snap.decisions]  # without the time
    assert "sim-model: 1 -> 2 replicas" in decisions
    assert not [d for d in decisions if d.startswith("sim-model-x")]
    with httpx.Client(base_url=f"http://127.0.0.1:{free_port()}", timeout=2) as nowhere:
        snap = view.gather(apps, custom, core, nowhere)
    assert sorted(m.model for m in snap.models) == ["sim-model", "sim-slo"]  # the rest shows
    assert all(m.waiting is None for m in snap.models)
    assert len(snap.problems) == 1
    assert snap.problems[0].startswith("Prometheus: ")
    assert "! Prometheus: " in view.render(snap)


def _row(snap: view.Snapshot, model: str) -> view.ModelRow:
    (row,) = [m for m in snap.models if m.model == model]
    return row


def test_load_scales_up_then_down(sim_stack: Stack) -> None:
    start = replicas(sim_stack)
    assert start == (1, 1)
    # 24 concurrent long requests on engines that run 8 at a time: the queue
    # signal (target 4 per replica) asks for more pods; once they absorb the
    # queue the running work keeps them (scaler/README.md), so the replicas,
    # watched while the load runs, stay above one until it stops.
    seen: list[tuple[int, int]] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        load = pool.submit(asyncio.run, _drive(sim_stack.config.gateway_url, seconds=40,
                                               concurrency=24))
        while not load.done():
            seen.append(replicas(sim_stack))
            time.sleep(1)
        served = load.result()
    assert served > 0
    assert max(spec for spec, _ in seen) > 1, f"the scaler added no replica under load: {seen}"
    assert max(ready for _, ready in seen) > 1, f"no added replica became ready: {seen}"
    assert max(spec for spec, _ in seen) <= 6  # the Deployment's autoscale-max
    first_up = next(i for i, (spec, _) in enumerate(seen) if spec > 1)
    assert min(spec for spec, _ in seen[first_up:]) > 1, f"stepped down under load: {seen}"
    up = query(sim_stack.config.prometheus_url,
               'max_over_time(brix_scaler_desired_replicas{deployment="sim-model"}[5m])')
    assert up, "Prometheus has no brix_scaler_desired_replicas for sim-model"
    assert float(up[0]["value"][1]) > 1
    # Load gone: back to the minimum after the stabilisation window.
    eventually(lambda: replicas(sim_stack)[0] == 1, timeout=150,
               what="sim-model to scale back down to 1")


def test_scale_from_zero_holds_then_answers(sim_stack: Stack) -> None:
    kc = sim_stack.config.kubeconfig
    kubectl(kc, "-n", "brix-models", "annotate", "deploy", "sim-model",
            "brix.dev/autoscale-min=0", "--overwrite")
    kubectl(kc, "-n", "brix-models", "scale", "deploy", "sim-model", "--replicas=0")
    eventually(lambda: replicas(sim_stack) == (0, 0), timeout=60, what="sim-model at zero")
    eventually(lambda: not json.loads(kubectl(kc, "-n", "brix-models", "get", "pods", "-l",
                                              "brix.dev/model=sim-model", "-o", "json").stdout
                                      )["items"], timeout=60, what="sim-model's pods gone")
    r = httpx.post(f"{sim_stack.config.gateway_url}/v1/completions", timeout=120, json={
        "model": "sim-model", "prompt": "wake up", "max_tokens": 4})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"]
    assert replicas(sim_stack)[0] >= 1
    pending = query(sim_stack.config.prometheus_url,
                    'max_over_time(brix_gateway_requests_pending{model="sim-model"}[5m])')
    assert pending
    assert float(pending[0]["value"][1]) >= 1


def test_an_adapter_is_loaded_served_then_removed(sim_stack: Stack) -> None:
    kc = sim_stack.config.kubeconfig
    source = REPO / ".brix" / "models" / "tiny-llama" / "adapters" / "tiny-lora-1"
    assert source.is_dir(), f"the tiny model's adapter is missing at {source}"
    kubectl(kc, "apply", "-f", "-", input=json.dumps({
        "apiVersion": "brix.dev/v1alpha1", "kind": "LoraAdapter",
        "metadata": {"name": "e2e-lora", "namespace": "brix-models"},
        "spec": {"baseModel": "sim-model", "source": f"file://{source}"}}))

    def phase() -> str:
        return kubectl(kc, "-n", "brix-models", "get", "loraadapter", "e2e-lora", "-o",
                       "jsonpath={.status.phase}", check=False).stdout
    eventually(lambda: phase() == "Ready", timeout=120, what="e2e-lora Ready")
    r = eventually(lambda: (r := httpx.post(
        f"{sim_stack.config.gateway_url}/v1/completions", timeout=60,
        json={"model": "e2e-lora", "prompt": "hi", "max_tokens": 4})).status_code == 200 and r,
        timeout=60, what="a completion through the adapter")
    assert r.json()["model"] == "e2e-lora"
    kubectl(kc, "-n", "brix-models", "delete", "loraadapter", "e2e-lora", "--timeout=120s")


def test_each_account_used_exactly_what_its_role_grants(sim_stack: Stack) -> None:
    """After the flows above: every ServiceAccount of brix used each grant of its Role
    (no grant unused), was refused nothing (no grant lacking), and no Role has a
    wildcard (tests/integration/deploy/test_rbac.py)."""
    from tests.helpers.manifests import render
    from tests.helpers.rbac_audit import differences, granted, used

    records = audit.read(sim_stack.config.audit_log)
    uses, refused = used(records)
    accounts = [f"brix-system:{name}" for name in
                ("brix-gateway", "brix-lora-operator", "brix-scaler")]
    assert set(accounts) <= set(uses), f"accounts seen in the audit log: {sorted(uses)}"
    assert not [r for r in refused if r["user"].split(":", 2)[2] in accounts], refused
    assert differences(granted(render("base")), uses, accounts) == {}
