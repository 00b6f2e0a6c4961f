"""The policy core, example by example: HPA arithmetic, windows, zero, panic, bad input."""

from __future__ import annotations

import itertools

import pytest

from scaler.policy import Decision, Observation, Policy, PolicyState, decide, is_active


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


def _steady_load(kind: str, *, clients: int, per_replica: int, seconds: int,
                 then_idle: int = 0) -> list[int]:
    """Replicas every 2 s for a closed loop: ``clients`` always in flight on engines
    that run ``per_replica`` each; the rest wait (new replicas are ready at once)."""
    policy = Policy(target=4, max_replicas=6, stabilization_window=30)
    state, current, out = PolicyState(), 1, []
    for now in range(0, seconds + then_idle, 2):
        in_flight = clients if now < seconds else 0
        running = min(in_flight, per_replica * current)
        queue = in_flight - running
        decision, state = decide(policy, state, Observation(
            value=queue, kind=kind, current_replicas=current,  # type: ignore[arg-type]
            active=in_flight > 0, running=running), float(now))
        current = decision.desired
        out.append(current)
    return out


def test_a_queue_signal_holds_steady_under_steady_load() -> None:
    # 24 clients on engines of 8: the first queue (16) asks for 1 + 4 replicas;
    # once they absorb it the running work still needs 3, and that is kept.
    replicas = _steady_load("queue", clients=24, per_replica=8, seconds=120, then_idle=60)
    under_load = replicas[:60]
    assert under_load[0] == 5
    assert max(under_load) == 5
    assert under_load[-30:] == [3] * 30  # steady: no step down and back up
    assert all(b <= a for a, b in itertools.pairwise(under_load))
    assert replicas[-1] == 1  # load gone: down to the minimum after the window


def test_a_plain_total_on_the_same_queue_flaps() -> None:
    # What the queue kind fixes: ceil(queue / target) is 0 once the queue is
    # absorbed, so the replicas go down under load and come back up.
    replicas = _steady_load("total", clients=24, per_replica=8, seconds=120)
    downs = sum(1 for a, b in itertools.pairwise(replicas) if b < a)
    ups = sum(1 for a, b in itertools.pairwise(replicas) if b > a)
    assert downs >= 1
    assert ups >= 1


def test_a_queue_signal_learns_capacity_only_from_full_replicas() -> None:
    policy = Policy(target=4, max_replicas=10, stabilization_window=0)
    # No queue yet: the capacity is unknown and the total's arithmetic applies.
    d, state = decide(policy, PolicyState(), Observation(
        value=0, kind="queue", current_replicas=3, active=True, running=5), 0.0)
    assert state.capacity is None
    assert d.raw == 0  # ceil(0 / 4), as a plain total
    # A queue on 2 replicas running 12: 6 each, at most.
    d, state = decide(policy, state, Observation(
        value=2, kind="queue", current_replicas=2, active=True, running=12), 1.0)
    assert state.capacity == 6
    assert d.raw == 2 + 1
    assert any("at 6 per replica" in n for n in d.notes)
    # A lower reading while new replicas start does not lower it.
    d, state = decide(policy, state, Observation(
        value=2, kind="queue", current_replicas=3, active=True, running=12), 2.0)
    assert state.capacity == 6
    # No queue, 13 running: 3 replicas' worth.
    d, state = decide(policy, state, Observation(
        value=0, kind="queue", current_replicas=5, active=True, running=13), 3.0)
    assert d.raw == 3
    with pytest.raises(ValueError, match="running"):
        decide(policy, state, Observation(
            value=0, kind="queue", current_replicas=5, active=True, running=-1), 4.0)


def test_a_new_panic_trigger_never_shortens_a_panic_under_way() -> None:
    # Found by the monotonicity property: a trigger whose window is below the
    # clock's resolution (now + window == now) used to end the panic under way,
    # so a higher load could get fewer replicas than a lower one.
    policy = Policy(target=1, min_replicas=0, max_replicas=4, tolerance=0,
                    panic_window=1e-15, panic_threshold=1.5)
    state = PolicyState(panic_until=1001.0, last_active=1000.0)

    def desired(value: float) -> Decision:
        decision, _ = decide(policy, state, Observation(
            value=value, kind="total", current_replicas=2, active=True), 1000.5)
        return decision

    calm, hot = desired(1.0), desired(4.0)
    assert calm.panic
    assert hot.panic
    assert calm.desired == 2  # panic: no scale-down
    assert hot.desired == 4
