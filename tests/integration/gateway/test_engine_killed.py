"""An engine SIGKILLed under ~100 concurrent streams through the real gateway and sim engines.

What must hold (docs/RELIABILITY.md):

- no client hangs: every stream that had started on the killed engine ends
  with an SSE ``error`` event (the kernel closes the dead process's sockets at
  once, so the gateway sees the break at once; a pod that vanishes without
  closing them is bounded by ``--first-byte-timeout`` between two bytes);
- requests that had not started streaming (queued in the killed engine, or
  sent while it was down) are retried on another pod and succeed; with one
  replica they are held until the engine is back (``--reconnect-hold``), not
  answered 502 at once;
- the restarted engine rejoins routing; under localkube's kubelet too (the
  container restarted in its pod, the pod Ready again).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client, config

from tests.helpers.gateway import start_gateway
from tests.helpers.localkube import kubectl, start_localkube
from tests.helpers.operator import LORA_CRD, wait_for
from tests.helpers.procs import Proc, ProcessGroup, free_port
from tests.helpers.sim import slow, start_sim
from tests.helpers.streams import Outcome, run_streams

# 50 tokens at 20 ms: a second a request; 8 run at once per engine, the rest wait.
SEQS = 8
pytestmark = pytest.mark.integration
BODY = {"model": "m1", "prompt": "x", "max_tokens": 50, "stream": True, "ignore_eos": True}


def host_of(proc: Proc) -> str:
    assert proc.url is not None
    return proc.url.removeprefix("http://")


def broken_streams(outcomes: list[Outcome]) -> list[Outcome]:
    """Those that did not complete, after checking that each ended with an error event
    after a token, that some but at most a batch broke, and that all the rest completed."""
    assert all(o.status == 200 for o in outcomes), [o.status for o in outcomes]
    broken = [o for o in outcomes if not o.done]
    for o in broken:
        assert o.error is not None, o.events[-3:]
        assert o.started
    assert 0 < len(broken) <= SEQS
    assert sum(o.done for o in outcomes) == len(outcomes) - len(broken)
    return broken


async def assert_routed_again(gw_url: str) -> None:
    """The restarted engine is routed to again; held requests count back to zero."""
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(f"{gw_url}/v1/completions",
                              json={"model": "m1", "prompt": "x", "max_tokens": 1})
        assert r.status_code == 200, r.text
        metrics = (await client.get(f"{gw_url}/metrics")).text
    assert 'brix_gateway_requests_pending{model="m1"} 0.0' in metrics


async def test_killed_engine_streams_end_with_an_error_and_waiting_ones_go_to_the_other_pod(
    procs: ProcessGroup,
) -> None:
    engines = [start_sim(procs, name="m1", extra_args=slow(ms_per_token=20, max_num_seqs=SEQS))
               for _ in range(2)]
    gw = start_gateway(procs, extra_args=[
        *[a for e in engines for a in ("--static-routes", f"m1={e.url}")],
        "--routing", "round-robin", "--reconnect-hold", "30"])
    victim, survivor = engines
    outcomes, killed_at = await run_streams(str(gw.url), 100,
                                            lambda: victim.signal(signal.SIGKILL), body=BODY,
                                            kill_after=1.5, min_started=1)
    assert all(o.status == 200 for o in outcomes), [o.status for o in outcomes]
    broken = [o for o in outcomes if not o.done]
    # Only streams that had started on the killed engine may end broken, each with an error.
    for o in broken:
        assert o.error is not None, o.events[-3:]
        assert o.error["code"] == "upstream_error"
        assert o.pod == host_of(victim)
        assert o.started
    assert len(broken) <= SEQS, "more streams broke than the engine was running"
    assert broken, "the kill broke no stream: it came too late to test anything"
    # The rest, the victim's queue included, completed (on the survivor, once it was gone).
    assert sum(o.done for o in outcomes) == 100 - len(broken)
    assert any(o.done and o.pod == host_of(survivor) and o.ended_at > killed_at
               for o in outcomes)
    bound = max(o.ended_at for o in broken) - killed_at
    print(f"\nbroken streams: {len(broken)} of 100; the last error event {bound:.2f} s "
          "after the kill")


async def test_one_replica_killed_and_restarted_holds_the_waiting_requests(
    procs: ProcessGroup,
) -> None:
    port = free_port()
    flags = ("--port", str(port), *slow(ms_per_token=20, max_num_seqs=SEQS))
    engine = procs.start(["-m", "inference.sim", "--served-model-name", "m1", *flags],
                         name="sim-m1", env={"BIND_HOST": "127.0.0.1"})
    url = f"http://127.0.0.1:{port}"
    gw = start_gateway(procs, extra_args=["--static-routes", f"m1={url}",
                                          "--reconnect-hold", "30"])

    def kill_and_restart() -> None:
        engine.signal(signal.SIGKILL)
        engine.popen.wait(10)
        time.sleep(1.0)  # down for a while, as while a container restarts
        procs.start(["-m", "inference.sim", "--served-model-name", "m1", *flags],
                    name="sim-m1-restarted", env={"BIND_HOST": "127.0.0.1"})

    outcomes, _ = await run_streams(str(gw.url), 40, kill_and_restart, body=BODY,
                                     kill_after=0.5, min_started=1)
    broken = broken_streams(outcomes)
    print(f"\none replica: {len(broken)} of 40 streams broken (error event), "
          f"{40 - len(broken)} held or retried and completed")
    await assert_routed_again(str(gw.url))


async def test_one_replica_under_the_kubelet_killed_restarted_and_rejoins(
    procs: ProcessGroup, tmp_path: Path,
) -> None:
    """The engine of a localkube pod SIGKILLed: its kubelet restarts the container, the
    pod is Ready again, and the gateway (Kubernetes discovery) held the waiting requests
    and serves them there."""
    _, kubeconfig = start_localkube(procs, tmp_path / "kube")
    kubectl(kubeconfig, "apply", "-f", str(LORA_CRD))
    engine = {
        "name": "engine",
        "command": ["python", "-m", "inference.sim", "--served-model-name", "m1",
                    "--port", "8000", *slow(ms_per_token=20, max_num_seqs=SEQS)],
        "ports": [{"name": "http", "containerPort": 8000}],
        "readinessProbe": {"httpGet": {"path": "/health", "port": "http"},
                           "periodSeconds": 1},
    }
    kubectl(kubeconfig, "apply", "-f", "-", input=json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "m1", "namespace": "default", "labels": {"brix.dev/model": "m1"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"brix.dev/model": "m1"}},
                 "template": {"metadata": {"labels": {"brix.dev/model": "m1"}},
                              "spec": {"terminationGracePeriodSeconds": 2,
                                       "containers": [engine]}}},
    }))
    api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    core = client.CoreV1Api(api)

    def the_pod() -> Any:
        pods = core.list_namespaced_pod("default", label_selector="brix.dev/model=m1").items
        return pods[0] if len(pods) == 1 else None

    def ready_engine() -> Any:
        pod = the_pod()
        statuses = (pod.status.container_statuses or []) if pod is not None else []
        return statuses[0] if statuses and statuses[0].ready else None

    try:
        first = wait_for(ready_engine, what="the engine's pod Ready", timeout=90)
        gw = start_gateway(procs, kubeconfig=kubeconfig, extra_args=[
            "--reconnect-hold", "60", "--hold-timeout", "60"])
        async with httpx.AsyncClient(timeout=30) as c:
            deadline = time.monotonic() + 30
            while (await c.get(f"{gw.url}/health")).status_code != 200:
                assert time.monotonic() < deadline, "the gateway never became ready"
                await asyncio.sleep(0.2)
        name = the_pod().metadata.name
        pid = int(first.container_id.removeprefix("localkube://"))

        outcomes, killed_at = await run_streams(
            str(gw.url), 40, lambda: os.kill(pid, signal.SIGKILL), body=BODY,
            kill_after=0.5, min_started=1)
        broken = broken_streams(outcomes)
        again = wait_for(ready_engine, what="the engine Ready again", timeout=60)
        assert again.restart_count >= 1
        assert int(again.container_id.removeprefix("localkube://")) != pid
        assert the_pod().metadata.name == name  # the same pod, its container restarted
        served_after = max(o.ended_at for o in outcomes if o.done) - killed_at
        await assert_routed_again(str(gw.url))
        print(f"\nunder the kubelet: {len(broken)} of 40 streams broken (error event), "
              f"{40 - len(broken)} held and completed, the last {served_after:.1f} s after "
              f"the kill; restarts {again.restart_count}")
    finally:
        api.close()
