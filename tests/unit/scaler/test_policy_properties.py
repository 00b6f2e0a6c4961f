"""Properties of the policy core over generated policies and load histories.

Generation can be slow on a busy machine: the too_slow health check is off
(it judges the machine, not the policy).
"""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaler.policy import Observation, Policy, PolicyState, ScaleEvent, SignalKind, decide


@st.composite
def policies(draw: st.DrawFn, *, min_at_least: int = 0, panic: bool = True) -> Policy:
    min_replicas = draw(st.integers(min_at_least, 5))
    return Policy(
        target=draw(st.floats(0.1, 50)),
        min_replicas=min_replicas,
        max_replicas=draw(st.integers(max(1, min_replicas), 40)),
        tolerance=draw(st.sampled_from([0.0, 0.1, 0.3])),
        stabilization_window=draw(st.floats(0, 400)),
        scale_to_zero_cooldown=draw(st.floats(0, 400)),
        scale_up_percent=draw(st.floats(0, 300)),
        scale_up_pods=draw(st.integers(0, 6)),
        scale_up_period=draw(st.floats(1, 60)),
        scale_down_percent=draw(st.floats(0, 100)),
        scale_down_pods=draw(st.integers(0, 6)),
        scale_down_period=draw(st.floats(1, 60)),
        panic_window=draw(st.floats(0, 120)) if panic and draw(st.booleans()) else 0.0,
    )


kinds = st.sampled_from(["total", "average", "queue"])
# A queue signal reads the running requests too; here they grow with the load.
RUNNING_PER_QUEUED = 0.5
values = st.floats(0, 500, allow_nan=False)
steps = st.lists(st.tuples(st.floats(0.5, 90), values, st.booleans()), min_size=1, max_size=30)


def simulate(policy: Policy, kind: SignalKind, current: int,
             history: list[tuple[float, float, bool]]) -> list[tuple[float, int, int]]:
    """Apply each decision; return (time, replicas before, replicas after) per step."""
    state, now, out = PolicyState(), 0.0, []
    for dt, value, active in history:
        now += dt
        decision, state = decide(policy, state, Observation(
            value=value, kind=kind, current_replicas=current, active=active,
            running=value * RUNNING_PER_QUEUED), now)
        out.append((now, current, decision.desired))
        current = decision.desired
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies(), kinds, st.integers(0, 50), steps)
def test_bounded_by_min_and_max(policy: Policy, kind: SignalKind, current: int,
                                history: list[tuple[float, float, bool]]) -> None:
    for _, _, after in simulate(policy, kind, current, history):
        assert after <= policy.max_replicas
        assert after >= policy.min_replicas  # 0 only when min is 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), policies(min_at_least=1, panic=False), kinds, steps)
def test_rate_limits_hold(data: st.DataObject, policy: Policy, kind: SignalKind,
                          history: list[tuple[float, float, bool]]) -> None:
    current = data.draw(st.integers(policy.min_replicas, policy.max_replicas))
    moves = [(t, before, after) for t, before, after in simulate(policy, kind, current, history)
             if after != before]
    for i, (t, _before, after) in enumerate(moves):
        # The moves in the period before this one, in one direction only, started from
        # the replicas before the first of them; the limit is measured from there.
        up = after > _before
        period = policy.scale_up_period if up else policy.scale_down_period
        window = [m for m in moves[: i + 1] if t - m[0] < period]
        if any((m[2] > m[1]) != up for m in window):
            continue
        start = window[0][1]
        if up:
            limit = max(math.ceil(start * (1 + policy.scale_up_percent / 100)),
                        start + policy.scale_up_pods)
            assert after <= max(limit, start), (start, after, window)
        else:
            limit = min(math.ceil(start * (1 - policy.scale_down_percent / 100)),
                        start - policy.scale_down_pods)
            assert after >= min(limit, start), (start, after, window)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies(), kinds, st.integers(0, 50), values, st.booleans(),
       st.lists(st.floats(0.5, 90), min_size=2, max_size=40))
def test_constant_load_never_flaps(policy: Policy, kind: SignalKind, current: int, value: float,
                                   active: bool, gaps: list[float]) -> None:
    history = [(dt, value, active) for dt in gaps]
    directions = {after > before
                  for _, before, after in simulate(policy, kind, current, history)
                  if after != before}
    assert len(directions) <= 1, "scaled both up and down under a constant load"


@st.composite
def states(draw: st.DrawFn) -> PolicyState:
    now = 1000.0
    recs = draw(st.lists(st.tuples(st.floats(now - 500, now), st.integers(0, 40)), max_size=8))
    events = draw(st.lists(st.builds(ScaleEvent, st.floats(now - 100, now),
                                     st.integers(-10, 10).filter(bool)), max_size=6))
    return PolicyState(
        recommendations=tuple(sorted(recs)),
        events=tuple(sorted(events, key=lambda e: e.time)),
        last_active=draw(st.one_of(st.none(), st.floats(now - 600, now))),
        panic_until=draw(st.one_of(st.none(), st.floats(now - 50, now + 50))),
        capacity=draw(st.one_of(st.none(), st.floats(0.5, 64))),
    )


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies(), states(), kinds, st.integers(0, 50), values, values, st.booleans())
def test_monotonic_in_load(policy: Policy, state: PolicyState, kind: SignalKind, current: int,
                           a: float, b: float, active: bool) -> None:
    low, high = sorted((a, b))
    now = 1000.5

    def desired(value: float) -> int:
        decision, _ = decide(policy, state, Observation(
            value=value, kind=kind, current_replicas=current, active=active,
            running=value * RUNNING_PER_QUEUED), now)
        return decision.desired

    assert desired(low) <= desired(high)
