"""The plan: calls to make and the status of what was observed (pure)."""

from __future__ import annotations

from brix.contract import MODEL_LABEL
from lora_operator.model import AdapterSpec, Loaded, PodInfo, PodView
from lora_operator.planning import Failure, plan, unloading_status

NOW = "2026-01-01T00:00:00Z"
LATER = "2026-01-01T00:05:00Z"


def spec(**kw: object) -> AdapterSpec:
    base: dict[str, object] = {"namespace": "ns", "name": "sql", "base_model": "m",
                               "source": "file:///adapters/sql", "generation": 3}
    base.update(kw)
    return AdapterSpec(**base)  # type: ignore[arg-type]


def view(name: str, *held: Loaded, ready: bool = True, error: str | None = None,
         model: str = "m") -> PodView:
    pod = PodInfo(namespace="ns", name=name, model=model, ip=f"10.0.0.{len(name)}",
                  ready=ready, labels=((MODEL_LABEL, model),))
    if error is not None or not ready:
        return PodView(pod, None, error)
    return PodView(pod, tuple(held))


SQL = Loaded("sql", "file:///adapters/sql")


def test_loads_where_missing_and_reports_loading() -> None:
    p = plan(spec(), [view("a"), view("b", SQL)], now=NOW)
    assert [x.name for x in p.load] == ["a"]
    assert not p.unload
    assert not p.reload
    assert p.phase == "Loading"
    assert p.status["ready"] == "1/2"
    assert p.status["loadedPods"] == [{"name": "b", "ip": "10.0.0.1"}]
    assert p.status["observedGeneration"] == 3


def test_ready_when_every_desired_pod_holds_it() -> None:
    p = plan(spec(), [view("a", SQL), view("b", SQL)], now=NOW)
    assert p.converged
    assert p.phase == "Ready"
    assert (p.status["readyReplicas"], p.status["desiredReplicas"]) == (2, 2)
    assert p.status["conditions"][0]["status"] == "True"


def test_replicas_one_unloads_the_extra_copies() -> None:
    p = plan(spec(replicas=1), [view("a", SQL), view("b", SQL), view("c")], now=NOW)
    assert p.desired == {"a"}
    assert [x.name for x in p.unload] == ["b"]
    assert p.phase == "Ready"
    assert p.status["ready"] == "1/1"


def test_a_new_source_reloads_every_pod_holding_the_old_one() -> None:
    old = Loaded("sql", "file:///adapters/sql-v1")
    p = plan(spec(), [view("a", old), view("b", old)], now=NOW)
    assert sorted(x.name for x in p.reload) == ["a", "b"]
    assert p.status["loadedPods"] == []
    assert p.phase == "Loading"


def test_a_different_sha256_reloads_but_an_unknown_one_does_not() -> None:
    s = spec(source="https://h/sql.tgz", sha256="a" * 64)
    p = plan(s, [view("a", Loaded("sql", "https://h/sql.tgz", "b" * 64)),
                 view("b", Loaded("sql", "https://h/sql.tgz", None))], now=NOW)
    assert [x.name for x in p.reload] == ["a"]


def test_no_pod_of_the_model_is_pending_saying_so() -> None:
    p = plan(spec(), [view("x", model="other")], now=NOW)
    assert p.phase == "Pending"
    assert p.status["reason"] == "NoPods"
    assert "'m'" in p.status["message"]


def test_pods_that_are_not_ready_are_pending_and_untouched() -> None:
    p = plan(spec(), [view("a", ready=False)], now=NOW)
    assert p.phase == "Pending"
    assert p.status["reason"] == "NoReadyPods"
    assert p.converged


def test_an_unreachable_sidecar_degrades_when_others_hold_it() -> None:
    p = plan(spec(), [view("a", SQL), view("b", error="connection refused")], now=NOW)
    assert p.phase == "Degraded"
    assert p.status["reason"] == "SidecarUnreachable"
    assert "b: connection refused" in p.status["message"]
    assert p.converged  # nothing can be done for b until it answers


def test_every_sidecar_unreachable_fails() -> None:
    p = plan(spec(), [view("a", error="timeout"), view("b", error="timeout")], now=NOW)
    assert p.phase == "Failed"
    assert p.status["ready"] == "0/2"


def test_a_refused_source_fails_with_the_sidecars_message_and_stops_loading() -> None:
    failures = {"a": Failure("refused", "path is outside the adapter roots")}
    p = plan(spec(), [view("a"), view("b")], failures=failures, now=NOW)
    assert p.phase == "Failed"
    assert p.status["reason"] == "SourceRefused"
    assert "outside the adapter roots" in p.status["message"]
    remembered = plan(spec(), [view("a"), view("b")], refused="outside", now=NOW)
    assert not remembered.load
    assert remembered.phase == "Failed"


def test_a_refusal_with_copies_elsewhere_degrades() -> None:
    failures = {"b": Failure("refused", "bad")}
    p = plan(spec(), [view("a", SQL), view("b")], failures=failures, now=NOW)
    assert p.phase == "Degraded"


def test_too_few_pods_for_the_replicas_asked_is_degraded() -> None:
    p = plan(spec(replicas=3), [view("a", SQL), view("b", SQL)], now=NOW)
    assert p.phase == "Degraded"
    assert p.status["reason"] == "NotEnoughPods"
    assert p.status["ready"] == "2/3"


def test_condition_time_moves_only_when_the_condition_changes() -> None:
    first = plan(spec(), [view("a", SQL)], now=NOW)
    same = plan(spec(), [view("a", SQL)], previous=first.status, now=LATER)
    assert same.status["conditions"][0]["lastTransitionTime"] == NOW
    changed = plan(spec(), [view("a")], previous=first.status, now=LATER)
    assert changed.status["conditions"][0]["lastTransitionTime"] == LATER


def test_holders_of_another_model_are_unloaded_after_a_base_model_change() -> None:
    p = plan(spec(), [view("a"), view("z", SQL, model="old")], now=NOW)
    assert [x.name for x in p.unload] == ["z"]
    assert [x.name for x in p.load] == ["a"]


def test_unloading_status_lists_what_is_left() -> None:
    s = unloading_status(spec(), holding=[view("a", SQL)], problems={"b": "timeout"},
                         previous=None, now=NOW)
    assert s["phase"] == "Unloading"
    assert s["loadedPods"] == [{"name": "a", "ip": "10.0.0.1"}]
    assert "b: timeout" in s["message"]


def test_a_sidecar_refusing_the_token_says_unauthorized() -> None:
    pod = view("a").pod
    p = plan(spec(), [PodView(pod, None, "401 missing token", "unauthorized")], now=NOW)
    assert p.phase == "Failed"
    assert p.status["reason"] == "SidecarUnauthorized"


def test_a_sidecar_that_forgot_the_source_is_judged_by_the_engines_path() -> None:
    same = Loaded("sql", None, None, "/adapters/sql/")
    other = Loaded("sql", None, None, "/adapters/sql-v1")
    p = plan(spec(), [view("a", same), view("b", other)], now=NOW)
    assert [x.name for x in p.reload] == ["b"]
    assert p.status["loadedPods"] == [{"name": "a", "ip": "10.0.0.1"}]
