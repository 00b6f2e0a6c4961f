"""The operator under faults and hostile input, against localkube and real sidecars.

- SIGKILL while it reconciles 50 adapters over 3 pods (some of them being
  deleted): after a restart every adapter converges to Ready on every pod,
  none is lost or held twice, and the deletions begun before the kill finish
  (their finalizers are taken off).
- hypothesis against the LoraAdapter CRD through the API (the ``kubernetes``
  client): an invalid object is refused (422) with a message naming the field;
  a valid one reconciles or gets a clear status; the operator never crashes.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes.client.exceptions import ApiException

from brix.contract import LORA_GROUP, LORA_PLURAL, LORA_VERSION
from tests.helpers.localkube import kubectl
from tests.helpers.operator import (
    adapter_status,
    get_object,
    make_adapter_dir,
    start_operator,
    wait_for,
)
from tests.helpers.procs import Proc
from tests.integration.lora_operator.test_on_registered_pods import NS, Env, env  # noqa: F401

pytestmark = pytest.mark.integration

PHASES = {"Pending", "Loading", "Ready", "Degraded", "Failed", "Unloading"}


def held(port: int) -> list[str]:
    data = httpx.get(f"http://127.0.0.1:{port}/v1/adapters", timeout=10).json()["data"]
    return [a["name"] for a in data]


def the_operator(where: Env) -> Proc:
    return next(p for p in where.procs.procs if p.name == "lora-operator")


def manifest(names: list[str], where: Env) -> str:
    return yaml.safe_dump_all([{
        "apiVersion": "brix.dev/v1alpha1", "kind": "LoraAdapter",
        "metadata": {"name": n, "namespace": NS},
        "spec": {"baseModel": "m", "source": f"file://{make_adapter_dir(where.adapters, n)}"},
    } for n in names])


def test_operator_killed_mid_reconcile_converges_after_restart(env: Env) -> None:  # noqa: F811
    pods = [env.pod(f"pod-{i}") for i in range(3)]
    operator = the_operator(env)
    first = [f"a{i:02d}" for i in range(10)]
    kubectl(env.kubeconfig, "apply", "-f", "-", input=manifest(first, env))
    for n in first:
        env.wait(n, "Ready 3/3", lambda s: s.get("phase") == "Ready" and s.get("ready") == "3/3",
                 timeout=120)
    doomed, kept = first[:5], first[5:]
    later = [f"b{i:02d}" for i in range(40)]
    kubectl(env.kubeconfig, "delete", "loraadapters.brix.dev", "-n", NS, "--wait=false",
            *doomed)
    kubectl(env.kubeconfig, "apply", "-f", "-", input=manifest(later, env))
    # Kill it once it is at work on the new ones, before it is through them.
    from kubernetes import client

    api = client.CustomObjectsApi(env.api.api_client)

    def statuses() -> dict[str, dict[str, Any]]:
        items = api.list_namespaced_custom_object(LORA_GROUP, LORA_VERSION, NS,
                                                  LORA_PLURAL)["items"]
        return {o["metadata"]["name"]: o.get("status") or {} for o in items}

    wait_for(lambda: any(statuses().get(n, {}).get("phase") for n in later),
             what="work begun", timeout=60, interval=0.05)
    operator.signal(signal.SIGKILL)
    done = sum(s.get("ready") == "3/3" for n, s in statuses().items() if n in later)
    operator.popen.wait(10)
    start_operator(env.procs, kubeconfig=env.kubeconfig)

    wanted = sorted(kept + later)
    for n in wanted:
        env.wait(n, "Ready 3/3 after the restart",
                 lambda s: s.get("phase") == "Ready" and s.get("ready") == "3/3", timeout=180)
    for n in doomed:
        wait_for(lambda n=n: get_object(env.kubeconfig, "loraadapters.brix.dev", NS, n) is None,
                 what=f"{n} deleted", timeout=60)
    for pod in pods:
        names = held(pod.port)
        assert sorted(names) == wanted, f"{pod.name}: {sorted(set(names) ^ set(wanted))}"
        assert len(names) == len(set(names))
    print(f"\nkilled with {done} of 40 new adapters Ready on every pod; all 45 converged")


_seq = itertools.count()
_fields = {
    "baseModel": st.sampled_from(["m", "other-model", "", 3, None]),
    "source": st.sampled_from(["GOOD", "file:///nowhere/at/all", "ftp://x/a.tgz", "a.tgz",
                               "http://127.0.0.1:9/a.tgz", 7, None]),
    "sha256": st.sampled_from(["ab" * 32, "xyz", "AB" * 31, 5]),
    "replicas": st.sampled_from([0, 1, 3, -1, "two", 10**6]),
    "podSelector": st.sampled_from([{"matchLabels": {"zone": "a"}},
                                    {"matchLabels": {"zone": 3}},
                                    {"matchExpressions": [{"key": "z", "operator": "Near"}]},
                                    "all"]),
}
# Half of them valid by construction, half anything.
valid_specs = st.fixed_dictionaries(
    {"baseModel": st.sampled_from(["m", "other-model"]),
     "source": st.sampled_from(["GOOD", "file:///nowhere/at/all"])},
    optional={"replicas": st.sampled_from([0, 1, 3]),
              "sha256": st.sampled_from(["ab" * 32]),
              "podSelector": st.sampled_from([{"matchLabels": {"zone": "a"}}])})
specs = valid_specs | st.fixed_dictionaries({}, optional=_fields)


def _refused_field(body: str) -> str:
    message = json.loads(body).get("message", "")
    assert isinstance(message, str)
    return message


def test_hypothesis_against_the_crd_through_the_api(env: Env) -> None:  # noqa: F811
    from kubernetes import client

    env.pod("pod-0")
    good = f"file://{make_adapter_dir(env.adapters, 'good')}"
    api = client.CustomObjectsApi(env.api.api_client)
    operator = the_operator(env)
    created: list[str] = []
    refused = 0
    examples = int(os.environ.get("BRIX_CRD_EXAMPLES", "40"))

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(spec=specs)
    def one(spec: dict[str, Any]) -> None:
        nonlocal refused
        spec = {k: v for k, v in spec.items() if v is not None}
        if spec.get("source") == "GOOD":
            spec["source"] = good
        name = f"f{next(_seq)}"
        body = {"apiVersion": f"{LORA_GROUP}/{LORA_VERSION}", "kind": "LoraAdapter",
                "metadata": {"name": name}, "spec": spec}
        try:
            api.create_namespaced_custom_object(LORA_GROUP, LORA_VERSION, NS, LORA_PLURAL, body)
        except ApiException as exc:
            error: ApiException | None = exc
        else:
            error = None
        if error is None:
            created.append(name)
            return
        assert error.status == 422, error.body
        assert "spec" in _refused_field(error.body), error.body
        refused += 1

    one()
    assert operator.popen.poll() is None, "the operator crashed"
    assert created, "no generated object was valid"
    for name in created:
        wait_for(lambda name=name: adapter_status(env.kubeconfig, NS, name).get("phase"),
                 what=f"{name} has a phase", timeout=90)
        status = adapter_status(env.kubeconfig, NS, name)
        assert status["phase"] in PHASES
        if status["phase"] != "Ready":
            assert status.get("message"), status
    assert operator.popen.poll() is None, "the operator crashed"
    print(f"\nCRD fuzz: {len(created)} accepted, {refused} refused")
