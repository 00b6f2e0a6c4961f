"""Placement: which pods should hold an adapter (a pure function)."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from brix.contract import MODEL_LABEL
from lora_operator.model import AdapterSpec, LabelSelector, Requirement
from lora_operator.placement import Candidate, eligible, place


def spec(replicas: int | None = None, selector: LabelSelector | None = None) -> AdapterSpec:
    return AdapterSpec(namespace="ns", name="sql", base_model="m", source="file:///a",
                       replicas=replicas, pod_selector=selector or LabelSelector())


def pod(name: str, *, model: str = "m", ready: bool = True, holds: bool = False,
        adapters: int = 0, reachable: bool = True, **labels: str) -> Candidate:
    return Candidate(name=name, labels={MODEL_LABEL: model, **labels}, ready=ready, holds=holds,
                     adapters=adapters, reachable=reachable)


def test_every_ready_pod_of_the_model_when_replicas_is_unset() -> None:
    pods = [pod("a"), pod("b"), pod("c", ready=False), pod("d", model="other")]
    assert place(spec(), pods) == {"a", "b"}


def test_replicas_prefers_where_loaded_then_fewest_adapters_then_name() -> None:
    pods = [pod("a", adapters=5), pod("b", adapters=1), pod("c", adapters=1),
            pod("d", adapters=9, holds=True)]
    assert place(spec(replicas=1), pods) == {"d"}
    assert place(spec(replicas=2), pods) == {"d", "b"}
    assert place(spec(replicas=3), pods) == {"d", "b", "c"}


def test_replicas_zero_places_nowhere_and_more_than_pods_places_everywhere() -> None:
    pods = [pod("a"), pod("b")]
    assert place(spec(replicas=0), pods) == frozenset()
    assert place(spec(replicas=5), pods) == {"a", "b"}


def test_pods_whose_sidecar_did_not_answer_come_after_those_that_did() -> None:
    pods = [pod("a", reachable=False), pod("b", adapters=3)]
    assert place(spec(replicas=1), pods) == {"b"}


def test_pod_selector_narrows_the_pods() -> None:
    sel = LabelSelector(match_labels=(("zone", "a"),),
                        match_expressions=(Requirement("gpu", "In", ("h100", "a100")),))
    pods = [pod("a", zone="a", gpu="h100"), pod("b", zone="b", gpu="h100"),
            pod("c", zone="a", gpu="t4"), pod("d", zone="a")]
    assert place(spec(selector=sel), pods) == {"a"}


# --- properties ------------------------------------------------------------------

names = st.text(alphabet="abcdefgh", min_size=1, max_size=4)
candidates = st.lists(
    st.builds(
        pod, names, model=st.sampled_from(["m", "m", "other"]), ready=st.booleans(),
        holds=st.booleans(), adapters=st.integers(0, 6), reachable=st.booleans(),
    ),
    max_size=12, unique_by=lambda c: c.name,
)
replicas = st.none() | st.integers(0, 14)


@given(candidates, replicas)
def test_only_eligible_pods_and_exactly_as_many_as_asked(
    pods: list[Candidate], n: int | None
) -> None:
    s = spec(replicas=n)
    chosen = place(s, pods)
    ok = {p.name for p in pods if eligible(s, p)}
    assert chosen <= ok
    assert len(chosen) == (len(ok) if n is None else min(n, len(ok)))


@given(candidates, replicas, st.randoms(use_true_random=False))
def test_the_order_of_the_pods_does_not_matter(
    pods: list[Candidate], n: int | None, rnd: random.Random
) -> None:
    shuffled = list(pods)
    rnd.shuffle(shuffled)
    assert place(spec(replicas=n), pods) == place(spec(replicas=n), shuffled)


@given(candidates, replicas)
def test_pods_that_already_hold_it_are_kept_first(pods: list[Candidate], n: int | None) -> None:
    s = spec(replicas=n)
    chosen = place(s, pods)
    holders = {p.name for p in pods if eligible(s, p) and p.holds}
    if len(holders) <= len(chosen):
        assert holders <= chosen
    else:
        assert chosen <= holders


@given(candidates, st.integers(0, 14))
def test_a_converged_placement_stays_put(pods: list[Candidate], n: int) -> None:
    """Loading where placed and asking again gives the same pods (stable across runs)."""
    s = spec(replicas=n)
    first = place(s, pods)
    after = [
        Candidate(p.name, p.labels, p.ready, holds=p.name in first, reachable=p.reachable,
                  adapters=p.adapters + (p.name in first and not p.holds))
        for p in pods
    ]
    assert place(s, after) == first


@given(candidates, st.integers(0, 14))
def test_new_placements_go_to_the_least_loaded_answering_pods(
    pods: list[Candidate], n: int
) -> None:
    s = spec(replicas=n)
    chosen = place(s, pods)
    fresh_chosen = [p for p in pods if p.name in chosen and not p.holds and p.reachable]
    fresh_left = [p for p in pods if eligible(s, p) and p.name not in chosen and not p.holds
                  and p.reachable]
    if fresh_chosen and fresh_left:
        assert max(p.adapters for p in fresh_chosen) <= min(p.adapters for p in fresh_left)
