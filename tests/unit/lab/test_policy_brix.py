"""brix-loop: the real ``scaler.policy`` with the fallback loop's defaults, through MetricsView."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from lab.policies.brix import BrixLoop
from lab.policies.keda import KedaHpa
from lab.policies.registry import parse
from lab.policies.static import StaticMetrics
from scaler.settings import ScalerSettings

pytestmark = pytest.mark.unit

WAITING = "vllm:num_requests_waiting"
RUNNING = "vllm:num_requests_running"
PENDING = "brix_gateway_requests_pending"


def loop(spec: str = "brix-loop") -> BrixLoop:
    (policy,) = parse(spec)
    made = policy.make()
    assert isinstance(made, BrixLoop)
    return made


def test_it_runs_at_the_loops_interval_with_the_loops_windows() -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(ScalerSettings)}
    policy = loop()
    assert policy.interval == defaults["loop_interval"]
    assert policy.policy.stabilization_window == defaults["stabilization_window"]
    assert policy.policy.scale_to_zero_cooldown == defaults["scale_to_zero_cooldown"]


def test_the_gateways_pending_requests_count_in_the_queue() -> None:
    # Full replica (4 running) with a queue: capacity 4 per replica; the queue asks for
    # ceil(queue / 4) more on top of the one the running work needs.
    engine_only = loop().decide(now=15.0, metrics=StaticMetrics(15.0, {
        WAITING: 6.0, RUNNING: 4.0}), replicas=1, ready=1)
    with_gateway = loop().decide(now=15.0, metrics=StaticMetrics(15.0, {
        WAITING: 6.0, PENDING: 6.0, RUNNING: 4.0}), replicas=1, ready=1)
    assert engine_only == 1 + 2
    assert with_gateway == 1 + 3


def test_from_zero_on_the_first_pending_request() -> None:
    policy = loop("brix-loop:min=0")
    assert policy.decide(now=15.0, metrics=StaticMetrics(15.0, {}), replicas=0, ready=0) == 0
    assert policy.decide(now=30.0, metrics=StaticMetrics(30.0, {PENDING: 1.0}),
                         replicas=0, ready=0) == 1


def test_to_zero_after_the_cooldown_without_work() -> None:
    policy = loop("brix-loop:min=0;cooldown=60")
    replicas = 1
    seen = []
    for step in range(1, 9):
        now = 15.0 * step
        load = {RUNNING: 1.0} if now <= 15.0 else {RUNNING: 0.0, WAITING: 0.0}
        replicas = policy.decide(now=now, metrics=StaticMetrics(now, load),
                                 replicas=replicas, ready=replicas)
        seen.append((now, replicas))
    assert dict(seen)[60.0] == 1  # 45 s inactive
    assert dict(seen)[75.0] == 0  # 60 s inactive
    assert "zero" in policy.last_reason


def test_scale_down_waits_for_the_stabilisation_window() -> None:
    policy = loop()
    busy = StaticMetrics(15.0, {WAITING: 16.0, RUNNING: 16.0})
    up = policy.decide(now=15.0, metrics=busy, replicas=4, ready=4)
    assert up > 4
    quiet = {WAITING: 0.0, RUNNING: 0.0}
    held = policy.decide(now=30.0, metrics=StaticMetrics(30.0, quiet), replicas=up, ready=up)
    assert held == up
    later = policy.decide(now=330.0, metrics=StaticMetrics(330.0, quiet), replicas=up, ready=up)
    assert later == 1


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(ValueError, match="target"):
        BrixLoop(target=0.0)
    with pytest.raises(ValueError, match="interval"):
        BrixLoop(interval=0.0)


ROOT = Path(__file__).resolve().parents[3]


def test_defaults_follow_the_sim_model_manifests() -> None:
    deployment = yaml.safe_load((ROOT / "k8s/models/sim-model/deployment.yaml").read_text())
    notes = deployment["metadata"]["annotations"]
    looped = loop()
    assert notes["brix.dev/autoscale-signal"] == "queue"
    assert looped.policy.target == float(notes["brix.dev/autoscale-target"])
    assert looped.policy.min_replicas == int(notes["brix.dev/autoscale-min"])

    objects = list(yaml.safe_load_all(
        (ROOT / "k8s/overlays/keda/scaledobjects.yaml").read_text()))
    (sim,) = [o for o in objects if o["metadata"]["name"] == "sim-model"]
    spec = sim["spec"]
    (trigger,) = spec["triggers"]
    keda = parse("brix-keda")[0].make()
    assert isinstance(keda, KedaHpa)
    assert trigger["metadata"]["signal"] == "queue"
    assert keda.threshold == float(trigger["metadata"]["target"])
    assert keda.activation_threshold == float(trigger["metadata"]["activationTarget"])
    assert keda.polling_interval == spec["pollingInterval"]
    assert keda.cooldown_period == spec["cooldownPeriod"]
    assert keda.min_replicas == spec["minReplicaCount"]
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert keda.scale_down.stabilization_window == \
        behavior["scaleDown"]["stabilizationWindowSeconds"]
