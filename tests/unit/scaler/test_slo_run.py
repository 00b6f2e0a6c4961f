"""The SLO runner's replica count on the KEDA path: its last answer while fresh, else the pods.

Prometheus is replaced by fixed answers (``Answers``): what is under test is the
runner's memory between calls, not the query (tests/integration/scaler covers
it against a real Prometheus).
"""

from __future__ import annotations

import pytest

from scaler.prometheus import MetricsSource
from scaler.signals import SourceKey, Trigger, parse_trigger
from scaler.slo_run import SloRunner, start_replicas
from scaler.slo_signal import SloSample

pytestmark = pytest.mark.unit

# 10 requests/s answered, one engine pod serving (others may be starting).
ONE_POD = SloSample(rate=10.0, waiting=0.0, pending=0.0, running=2.0, pods=1.0)


class Answers(MetricsSource):
    def __init__(self, sample: SloSample) -> None:
        super().__init__("http://127.0.0.1:9")
        self.sample = sample

    async def slo_sample(self, key: SourceKey, attainment: float, *,
                         max_age: float | None = None) -> SloSample:
        return self.sample


def trigger(capacity: str) -> Trigger:
    return parse_trigger({"model": "m", "signal": "slo", "ttft": "2", "utilization": "0.5",
                          "initialCapacity": capacity, "maxReplicas": "100",
                          "podStartSeconds": "0"}, "ns")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_lower_answer_waits_for_the_window_while_pods_start() -> None:
    clock = Clock()
    runner = SloRunner(Answers(ONE_POD), clock=clock)
    first = await runner.decide("so", trigger("1"))
    assert first.desired == 20  # ceil(10 / (1 x 0.5))
    clock.now = 15.0
    # A capacity 100x higher: one replica would do, but the HPA set 20 and one pod
    # serves: the policy starts from its answer, and its window holds it.
    held = await runner.decide("so", trigger("100"))
    assert (held.current, held.desired) == (20, 20)
    assert "hold" in held.reason


async def test_a_stale_answer_gives_way_to_the_pods() -> None:
    clock = Clock()
    runner = SloRunner(Answers(ONE_POD), clock=clock, answer_ttl=120.0)
    assert (await runner.decide("so", trigger("1"))).desired == 20
    clock.now = 200.0  # the HPA stopped asking long ago: the pods are the count
    later = await runner.decide("so", trigger("100"))
    assert later.current == 1


async def test_the_loop_passes_the_deployments_count() -> None:
    runner = SloRunner(Answers(ONE_POD), clock=Clock())
    decision = await runner.decide("d", trigger("1"), replicas=7)
    assert decision.current == 7


@pytest.mark.parametrize(("serving", "answered", "now", "start"), [
    (3, None, 0.0, 3),           # no answer yet: the pods
    (1, (0.0, 20), 15.0, 20),    # pods still starting: the answer
    (1, (0.0, 20), 120.0, 20),   # fresh up to the ttl itself
    (1, (0.0, 20), 120.5, 1),    # stale: the pods again
    (5, (0.0, 2), 15.0, 5),      # more pods serve than answered: the pods
])
def test_the_start_is_the_larger_of_the_pods_and_a_fresh_answer(
        serving: int, answered: tuple[float, int] | None, now: float, start: int) -> None:
    assert start_replicas(serving, answered, now, ttl=120.0) == start


def test_a_bad_ttl_is_refused() -> None:
    with pytest.raises(ValueError, match="answer_ttl"):
        SloRunner(Answers(ONE_POD), answer_ttl=0)


@pytest.mark.parametrize("fresh", ["forget", "clear"])
async def test_a_forgotten_state_waits_a_window_of_its_own_before_a_scale_down(
        fresh: str) -> None:
    # 10 requests/s at 100 requests/s per replica: one replica would do; the loop's
    # Deployment has 20. scaleDownWindow 30 s.
    clock = Clock()
    runner = SloRunner(Answers(ONE_POD), clock=clock)
    slo = parse_trigger({"model": "m", "signal": "slo", "ttft": "2", "initialCapacity": "100",
                         "maxReplicas": "100", "scaleDownWindow": "30"}, "ns")
    answers = []
    for now in (0.0, 15.0, 30.0):
        clock.now = now
        answers.append((await runner.decide("d", slo, replicas=20)).desired)
    assert answers == [20, 20, 1]
    # After a restart of its memory (a forgotten ScaledObject, a new term of
    # leadership) the same demand holds again, for a window of the new state's own.
    if fresh == "clear":
        runner.clear()
    else:
        runner.forget("d")
    answers = []
    for now in (45.0, 60.0, 75.0):
        clock.now = now
        decision = await runner.decide("d", slo, replicas=20)
        answers.append(decision.desired)
        if now == 45.0:
            assert "fresh state" in decision.reason, decision.reason
    assert answers == [20, 20, 1]
