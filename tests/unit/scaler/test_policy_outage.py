"""After an interval with no measurement (``policy.hold``), a scale-down waits a full window."""

from __future__ import annotations

import pytest

from scaler.policy import Observation, Policy, PolicyState, decide, hold

pytestmark = pytest.mark.unit

WINDOW = 10.0


def observe(policy: Policy, state: PolicyState, value: float, current: int,
            now: float) -> tuple[int, PolicyState]:
    decision, state = decide(policy, state, Observation(
        value=value, kind="total", current_replicas=current, active=value > 0), now)
    return decision.desired, state


@pytest.mark.parametrize("min_replicas", [0, 1])
def test_a_scale_down_after_an_outage_waits_a_whole_window_of_fresh_data(
    min_replicas: int,
) -> None:
    policy = Policy(target=1, min_replicas=min_replicas, max_replicas=8,
                    stabilization_window=WINDOW, scale_to_zero_cooldown=WINDOW)
    current, state = observe(policy, PolicyState(), 3, 3, 0.0)
    assert current == 3
    # Prometheus down from t=1 to t=30, longer than the window: every interval held.
    now = 1.0
    while now <= 30.0:
        state = hold(policy, state, current, now)
        now += 1.0
    # Fresh data again: no load. For a whole window after the last held interval,
    # nothing goes down; then it does.
    seen = []
    for t in range(31, 46):
        current, state = observe(policy, state, 0, current, float(t))
        seen.append((t, current))
    assert all(c == 3 for t, c in seen if t < 30 + WINDOW), seen
    assert seen[-1][1] == min_replicas, seen


def test_without_the_hold_the_window_would_have_aged_out() -> None:
    # The same story with the outage not recorded scales down on the first fresh sample:
    # this is what hold() prevents.
    policy = Policy(target=1, min_replicas=1, max_replicas=8, stabilization_window=WINDOW)
    current, state = observe(policy, PolicyState(), 3, 3, 0.0)
    current, _ = observe(policy, state, 0, current, 31.0)
    assert current == 1


def test_hold_keeps_only_the_window() -> None:
    policy = Policy(target=1, stabilization_window=WINDOW)
    state = PolicyState()
    for t in range(100):
        state = hold(policy, state, 2, float(t))
    assert len(state.recommendations) <= WINDOW + 1
    assert state.last_active == 99.0
