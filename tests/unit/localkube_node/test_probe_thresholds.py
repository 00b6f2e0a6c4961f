"""Probe results -> the probe's verdict (thresholds) -> the pod's Ready condition."""

from __future__ import annotations

from localkube.node.podstatus import ContainerRecord, pod_status
from localkube.node.probes import ProbeSpec, ProbeState, resolve_port


def spec(**probe: object) -> ProbeSpec:
    parsed = ProbeSpec.parse({"httpGet": {"port": 80}, **probe}, "readiness")
    assert parsed is not None
    return parsed


def test_defaults_are_kubernetes_defaults() -> None:
    s = spec()
    assert (s.initial_delay, s.period, s.timeout) == (0.0, 10.0, 1.0)
    assert (s.success_threshold, s.failure_threshold) == (1, 3)
    assert ProbeSpec.parse(None, "liveness") is None


def test_readiness_starts_failing_and_needs_success_threshold_in_a_row() -> None:
    state = ProbeState.initial(spec(successThreshold=2, failureThreshold=2), "readiness")
    assert not state.passing
    assert not state.record(True)          # 1 of 2
    assert not state.record(False)         # the run is broken
    assert not state.record(True)
    assert state.record(True)              # 2 in a row: now passing
    assert state.passing
    assert not state.record(False)         # 1 failure of 2 keeps it passing
    assert state.passing
    assert state.record(False)
    assert not state.passing


def test_liveness_starts_passing_and_success_threshold_is_forced_to_one() -> None:
    live = ProbeSpec.parse({"exec": {"command": ["true"]}, "successThreshold": 5,
                            "failureThreshold": 1}, "liveness")
    assert live is not None
    assert live.success_threshold == 1
    state = ProbeState.initial(live, "liveness")
    assert state.passing
    assert state.record(False)
    assert not state.passing
    assert state.record(True)


def test_named_ports_resolve_from_the_container() -> None:
    assert resolve_port("http", {"http": 8000}) == 8000
    assert resolve_port(9000, {}) == 9000
    assert resolve_port("9001", {}) == 9001


def _ready_of(status: dict[str, object]) -> str:
    conditions = status["conditions"]
    assert isinstance(conditions, list)
    return str(next(c["status"] for c in conditions if c["type"] == "Ready"))


def test_probe_verdicts_drive_the_ready_condition() -> None:
    rec = ContainerRecord(name="web", state="running", started_at="t0", started=True)
    state = ProbeState.initial(spec(), "readiness")
    rec.ready = state.passing
    s1 = pod_status([rec], restart_policy="Always", pod_ip="127.0.0.10", host_ip="127.0.0.1",
                    start_time="t0", previous=None, now="2026-01-01T00:00:00Z")
    assert _ready_of(s1) == "False"
    state.record(True)
    rec.ready = state.passing
    s2 = pod_status([rec], restart_policy="Always", pod_ip="127.0.0.10", host_ip="127.0.0.1",
                    start_time="t0", previous=s1, now="2026-01-01T00:00:05Z")
    assert _ready_of(s2) == "True"
    ready = next(c for c in s2["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == "2026-01-01T00:00:05Z"
    # Unchanged status keeps its transition time.
    s3 = pod_status([rec], restart_policy="Always", pod_ip="127.0.0.10", host_ip="127.0.0.1",
                    start_time="t0", previous=s2, now="2026-01-01T00:01:00Z")
    ready3 = next(c for c in s3["conditions"] if c["type"] == "Ready")
    assert ready3["lastTransitionTime"] == "2026-01-01T00:00:05Z"
