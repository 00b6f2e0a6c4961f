"""The policy core, example by example: HPA arithmetic, windows, zero, panic, bad input."""

from __future__ import annotations

import pytest

from scaler.policy import Observation, Policy, PolicyState, decide, is_active


def obs(value: float, current: int, *, kind: str = "total", active: bool = True) -> Observation:
    return Observation(value=value, kind=kind, current_replicas=current, active=active)  # type: ignore[arg-type]


def run(policy: Policy, steps: list[tuple[float, float]], current: int,
        *, active: bool = True, kind: str = "total") -> list[int]:
    """Apply decisions for (time, value) steps; return the replicas after each."""
    state = PolicyState()
    out = []
    for now, value in steps:
        decision, state = decide(policy, state, obs(value, current, kind=kind, active=active), now)
        current = decision.desired
        out.append(current)
    return out


def test_total_signal_is_ceil_of_value_over_target() -> None:
    policy = Policy(target=5, max_replicas=100, scale_up_pods=100)
    decision, _ = decide(policy, PolicyState(), obs(23, 2), 0.0)
    assert decision.desired == 5
    assert decision.direction == "up"


def test_average_signal_scales_the_current_count() -> None:
    policy = Policy(target=0.5, max_replicas=100)
    decision, _ = decide(policy, PolicyState(), obs(0.9, 4, kind="average"), 0.0)
    assert decision.desired == 8  # ceil(4 * 0.9 / 0.5)


def test_within_tolerance_nothing_changes() -> None:
    policy = Policy(target=10)
    decision, _ = decide(policy, PolicyState(), obs(31, 3), 0.0)  # 10.33 per replica
    assert decision.desired == 3
    assert decision.reason == "within tolerance"
    decision, _ = decide(policy, PolicyState(), obs(34, 3), 0.0)  # 11.33 per replica
    assert decision.desired == 4


def test_scale_up_is_rate_limited_per_period() -> None:
    policy = Policy(target=1, max_replicas=1000, scale_up_percent=100, scale_up_pods=4,
                    scale_up_period=15)
    replicas = run(policy, [(0, 100), (5, 100), (16, 100)], current=2)
    assert replicas == [6, 6, 12]  # 2+4, then nothing within 15 s, then 6*2


def test_scale_down_waits_for_the_stabilisation_window() -> None:
    policy = Policy(target=10, stabilization_window=60)
    steps = [(0, 100), (10, 10), (30, 10), (59, 10), (61, 10)]
    replicas = run(policy, steps, current=10)
    assert replicas == [10, 10, 10, 10, 1]


def test_scale_down_rate_limit() -> None:
    policy = Policy(target=10, stabilization_window=1, scale_down_percent=50,
                    scale_down_period=30)
    replicas = run(policy, [(0, 10), (10, 10), (20, 10), (41, 10)], current=8)
    assert replicas == [8, 4, 4, 2]  # the first observation seeds the window


def test_bounds_apply() -> None:
    policy = Policy(target=1, min_replicas=2, max_replicas=5, scale_up_pods=100)
    assert run(policy, [(0, 0.0)], current=3, active=False)[-1] >= 2
    assert run(policy, [(0, 50.0)], current=3)[-1] == 5


def test_from_zero_when_active() -> None:
    policy = Policy(target=5, min_replicas=0)
    decision, _ = decide(policy, PolicyState(), obs(1, 0, active=True), 0.0)
    assert decision.desired == 1
    assert decision.reason == "active: scale from zero"
    decision, _ = decide(policy, PolicyState(), obs(12, 0, active=True), 0.0)
    assert decision.desired == 3


def test_stays_at_zero_while_inactive() -> None:
    policy = Policy(target=5, min_replicas=0)
    decision, _ = decide(policy, PolicyState(), obs(0, 0, active=False), 0.0)
    assert decision.desired == 0


def test_to_zero_only_after_the_cooldown() -> None:
    policy = Policy(target=5, min_replicas=0, scale_to_zero_cooldown=100,
                    stabilization_window=1)
    state = PolicyState()
    decision, state = decide(policy, state, obs(5, 1, active=True), 0.0)
    decision, state = decide(policy, state, obs(0, 1, active=False), 50.0)
    assert decision.desired == 1
    decision, state = decide(policy, state, obs(0, 1, active=False), 101.0)
    assert decision.desired == 0
    assert "scale to zero" in decision.reason


def test_min_one_never_goes_to_zero() -> None:
    policy = Policy(target=5, min_replicas=1, scale_to_zero_cooldown=1, stabilization_window=1)
    assert run(policy, [(0, 0), (10, 0), (100, 0)], current=3, active=False) == [3, 1, 1]


def test_panic_scales_up_at_once_and_holds() -> None:
    policy = Policy(target=1, max_replicas=100, panic_window=60, stabilization_window=1)
    state = PolicyState()
    decision, state = decide(policy, state, obs(40, 2), 0.0)
    assert decision.panic
    assert decision.desired == 40
    decision, state = decide(policy, state, obs(1, 40), 30.0)
    assert decision.panic
    assert decision.desired == 40
    decision, state = decide(policy, state, obs(1, 40), 61.0)
    assert not decision.panic
    assert decision.desired < 40


def test_without_panic_the_rate_limit_applies() -> None:
    policy = Policy(target=1, max_replicas=100)
    decision, _ = decide(policy, PolicyState(), obs(40, 2), 0.0)
    assert not decision.panic
    assert decision.desired == 6


def test_activity() -> None:
    assert is_active(queue=1, running=0, activation_target=0)
    assert not is_active(queue=3, running=0, activation_target=3)
    assert is_active(queue=0, running=1, activation_target=5)
    assert not is_active(queue=0, running=0, activation_target=0)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"target": 0}, "target"),
    ({"target": float("nan")}, "target"),
    ({"target": 1, "min_replicas": -1}, "min_replicas"),
    ({"target": 1, "min_replicas": 5, "max_replicas": 3}, "max_replicas"),
    ({"target": 1, "max_replicas": 0}, "max_replicas"),
    ({"target": 1, "tolerance": -0.1}, "tolerance"),
    ({"target": 1, "scale_up_period": 0}, "scale_up_period"),
    ({"target": 1, "scale_down_percent": 150}, "scale_down_percent"),
    ({"target": 1, "panic_threshold": 1}, "panic_threshold"),
])
def test_bad_policy_names_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        Policy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0])
def test_bad_value_is_refused(value: float) -> None:
    with pytest.raises(ValueError, match="value"):
        decide(Policy(target=1), PolicyState(), obs(value, 1), 0.0)
