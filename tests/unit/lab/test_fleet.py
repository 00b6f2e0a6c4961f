"""Replica counts as step functions, and the live-versus-lab comparison built on them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lab.engine import Outcome, Result
from lab.fleet import integral, mean_abs_diff, time_mean, value_at
from lab.live import REQUEST_COLUMNS, Fleet, LiveRun, Target, compare, decisions_made
from lab.summary import Slo
from lab.traces import Request, Trace
from lab.validate import Replayed

pytestmark = pytest.mark.unit


def test_steps_hold_until_the_next_change() -> None:
    s = [(0.0, 1.0), (10.0, 3.0), (20.0, 1.0)]
    assert value_at(s, -5.0) == 1.0
    assert value_at(s, 10.0) == 3.0
    assert value_at(s, 19.9) == 3.0
    assert value_at(s, 100.0) == 1.0
    assert integral(s, 0.0, 30.0) == pytest.approx(10 + 30 + 10)
    assert integral(s, 5.0, 15.0) == pytest.approx(5 + 15)
    assert time_mean(s, 0.0, 30.0) == pytest.approx(50 / 30)


def test_mean_abs_diff_is_time_aligned() -> None:
    a = [(0.0, 1.0), (10.0, 3.0), (20.0, 1.0)]
    late = [(0.0, 1.0), (15.0, 3.0), (25.0, 1.0)]  # the same shape, 5 s later
    assert mean_abs_diff(a, a, 0.0, 30.0) == 0.0
    assert mean_abs_diff(a, late, 0.0, 30.0) == pytest.approx((5 * 2 + 5 * 2) / 30)
    assert mean_abs_diff(late, a, 0.0, 30.0) == mean_abs_diff(a, late, 0.0, 30.0)


def test_bad_series_are_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        integral([], 0.0, 1.0)
    with pytest.raises(ValueError, match="time order"):
        integral([(5.0, 1.0), (1.0, 2.0)], 0.0, 10.0)
    with pytest.raises(ValueError, match="end > start"):
        mean_abs_diff([(0.0, 1.0)], [(0.0, 1.0)], 3.0, 3.0)


def _result(timeline: list[tuple[float, int, int, int]], ttft: list[float]) -> Result:
    n = len(ttft)
    outcome = [Outcome.COMPLETED if not math.isnan(t) else Outcome.TIMED_OUT for t in ttft]
    return Result(outcome=np.array(outcome, dtype=np.int8), ttft=np.array(ttft),
                  e2e=np.array(ttft) + 1.0, tpot=np.full(n, 0.01), end_time=timeline[-1][0],
                  replica_seconds=0.0, timeline=timeline, decisions=[], queue=[], peak_queue=0,
                  scale_events=0, oscillations=0)


def test_compare_lines_up_the_live_fleet_and_the_lab_over_one_window() -> None:
    fleet = Fleet(samples=[(-1.0, 1, 1, 1), (0.5, 1, 1, 1), (10.0, 3, 3, 1), (14.0, 3, 3, 3),
                           (30.0, 1, 1, 1)],
                  listed={"a": -1.0, "b": 10.0, "c": 10.0}, ready={"a": -1.0, "b": 14.0,
                                                                   "c": 14.0})
    live = LiveRun(requests=[Replayed(0.2, 1.2, "a", 0.0), Replayed(0.4, 1.4, "b", 0.01), None,
                             Replayed(3.0, 4.0, "a", 0.0)], fleet=fleet, horizon=40.0)
    sim = _result([(0.0, 1, 1, 1), (10.0, 3, 3, 1), (14.0, 3, 3, 3), (30.0, 1, 1, 1)],
                  [0.2, 0.4, 0.6, 3.0])
    report = compare(live, sim, Slo(ttft=2.0))
    assert report["window_s"] == 40.0
    assert report["mean_abs_diff"] == {"spec": 0.0, "ready": 0.0, "pods": 0.0}
    assert report["real"]["replica_seconds"] == pytest.approx(10 + 3 * 20 + 10)
    assert report["sim_over_real"]["replica_seconds"] == 1.0
    assert report["real"]["max_spec"] == report["sim"]["max_spec"] == 3
    assert report["real"]["failed"] == 1
    assert report["real"]["slo_attainment"] == 0.5
    assert report["sim"]["slo_attainment"] == 0.75
    assert report["pod_start_s"]["measured"] == [4.0, 4.0]
    assert "requests" not in report  # rows only with the trace replayed
    trace = Trace.of("t", [Request(arrival=float(i), prompt_tokens=10 * (i + 1), output_tokens=5)
                           for i in range(4)])
    sim.pod = np.array([0, 1, -1, 0], dtype=np.int32)
    rows = compare(live, sim, Slo(ttft=2.0), trace)["requests"]
    assert rows["columns"] == list(REQUEST_COLUMNS)
    by_name = [dict(zip(REQUEST_COLUMNS, row, strict=True)) for row in rows["rows"]]
    assert by_name[1] == {"arrival_s": 1.0, "prompt_tokens": 20, "output_tokens": 5,
                          "real_ttft_s": 0.4, "real_e2e_s": 1.4, "real_pod": "b",
                          "real_late_s": 0.01, "sim_ttft_s": 0.4, "sim_e2e_s": 1.4, "sim_pod": 1}
    assert by_name[2]["real_ttft_s"] is None
    assert by_name[2]["sim_pod"] is None
    # A lab that scaled 5 s later than the live loop is 2 replicas off for 10 of 40 s.
    late = _result([(0.0, 1, 1, 1), (15.0, 3, 3, 1), (19.0, 3, 3, 3), (35.0, 1, 1, 1)],
                   [0.2, 0.4, 0.6, 3.0])
    assert compare(live, late, Slo(ttft=2.0))["mean_abs_diff"]["spec"] == pytest.approx(0.5)


def test_the_fleet_counts_pods_from_listed_to_gone_and_times_the_ones_that_start() -> None:
    fleet = Fleet()
    fleet.record(-1.5, [("a", True)], 1, 1)
    fleet.record(-0.5, [("a", True)], 2, 1)
    fleet.record(0.5, [("a", True), ("b", False)], 2, 1)
    fleet.record(3.5, [("a", True), ("b", True)], 2, 2)
    # Scaled in: "b" terminates (listed, not ready), then "c" starts and never gets ready.
    fleet.record(8.0, [("a", True), ("b", False), ("c", False)], 1, 1)
    assert [s[1] for s in fleet.samples] == [1, 1, 2, 2, 3]
    assert fleet.listed == {"a": -1.5, "b": 0.5, "c": 8.0}
    assert fleet.ready == {"a": -1.5, "b": 3.5}
    # "a" was there before the first sample: its start was not seen.
    assert fleet.start_times() == [3.0]
    assert fleet.ready_at_start() == 1  # the last sample at or before trace time 0
    late = Fleet()
    late.record(0.2, [("a", True), ("b", True)], 2, 2)
    late.record(1.2, [("a", True)], 1, 1)
    assert late.ready_at_start() == 2  # none before 0: the first


class _Apps:
    """Answers read_namespaced_deployment with one Deployment (the client's own model)."""

    def __init__(self, annotations: dict[str, str], grace: int | None = None) -> None:
        from kubernetes import client
        self.deployment = client.V1Deployment(
            metadata=client.V1ObjectMeta(name="m", namespace="ns", annotations=annotations,
                                         labels={"brix.dev/model": "m"}),
            spec=client.V1DeploymentSpec(
                selector=client.V1LabelSelector(match_labels={"brix.dev/model": "m"}),
                template=client.V1PodTemplateSpec(spec=client.V1PodSpec(
                    containers=[], termination_grace_period_seconds=grace))))

    def read_namespaced_deployment(self, name: str, namespace: str) -> object:
        return self.deployment


def test_the_target_is_read_from_the_deployment_and_bad_ones_are_named() -> None:
    from lab.live import read_target

    good = {"brix.dev/autoscale": "true", "brix.dev/autoscale-target": "2",
            "brix.dev/autoscale-min": "1", "brix.dev/autoscale-max": "4"}
    target = read_target(_Apps(good, grace=10), "ns", "m")
    assert (target.target, target.min_replicas, target.max_replicas) == (2.0, 1, 4)
    assert target.grace_period == 10.0
    assert target.selector == {"brix.dev/model": "m"}
    assert read_target(_Apps(good), "ns", "m").grace_period == 30.0  # Kubernetes' default
    for notes, message in (
        ({}, "not annotated brix.dev/autoscale"),
        ({**good, "brix.dev/autoscale-signal": "running"}, "queue signal only"),
        # Read as the scaler's loop reads them (scaler.targets): its checks, its words.
        ({**good, "brix.dev/autoscale-signal": "slo"}, "autoscale-ttft: is required"),
        ({**good, "brix.dev/autoscale-target": "lots"}, "autoscale-target: expected a number"),
        ({**good, "brix.dev/autoscale-min": "5"}, "autoscale-max: must be >= 1 and >="),
    ):
        with pytest.raises(ValueError, match=message) as err:
            read_target(_Apps(notes), "ns", "m")
        assert "\n" not in str(err.value)


def test_a_prometheus_that_does_not_scrape_the_model_is_named() -> None:
    from lab.live import check_scraped
    from tests.helpers.procs import free_port

    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ValueError, match="cannot see the model's pods") as err:
        check_scraped(url, "m", wait=0)
    assert url in str(err.value)
    assert "\n" not in str(err.value)


def test_the_scaler_loops_passes_are_counted_from_its_own_metrics() -> None:
    from prometheus_client import generate_latest

    from scaler.metrics import ScalerMetrics

    target = Target(namespace="lab", name="m", selector={}, target=2.0, min_replicas=1,
                    max_replicas=4, grace_period=30.0)
    metrics = ScalerMetrics()
    assert decisions_made(generate_latest(metrics.registry).decode(), target) == 0
    for direction in ("hold", "up", "hold"):
        metrics.decision(namespace="lab", deployment="m", signal="queue", value=3.0, desired=2,
                         direction=direction)
    metrics.decision(namespace="lab", deployment="other", signal="queue", value=3.0, desired=2,
                     direction="up")
    assert decisions_made(generate_latest(metrics.registry).decode(), target) == 3


def test_the_lab_starts_its_pods_as_long_as_the_live_ones_took_in_order() -> None:
    from lab.live import pod_starts

    starts = pod_starts([4.9, 4.8, 3.1])
    assert [starts(None) for _ in range(5)] == pytest.approx([4.9, 4.8, 3.1, 12.8 / 3, 12.8 / 3])
    fixed = pod_starts(2.5)
    assert [fixed(None), fixed(None)] == [2.5, 2.5]
    with pytest.raises(ValueError, match="no pod start"):
        pod_starts([])
