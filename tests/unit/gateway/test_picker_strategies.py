"""The picker on its own: each strategy's choices, distributions and bounds."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.picker import (
    LEAST_QUEUE,
    LEAST_REQUEST,
    PREFIX_AFFINITY,
    RANDOM,
    ROUND_ROBIN,
    STRATEGIES,
    Candidate,
    load_bound,
    pick,
    prompt_chars,
    prompt_prefix,
    rendezvous_order,
)

KEYS = [f"http://10.0.0.{i}:8000" for i in range(1, 9)]

candidate_lists = st.lists(
    st.builds(
        Candidate,
        key=st.sampled_from(KEYS),
        in_flight=st.integers(0, 50),
        waiting=st.none() | st.integers(0, 50),
        running=st.none() | st.integers(0, 50),
    ),
    min_size=1, max_size=8, unique_by=lambda c: c.key,
)


@settings(deadline=None)  # the machine is shared: time is not what is tested
@given(strategy=st.sampled_from(sorted(STRATEGIES)), cands=candidate_lists,
       seed=st.integers(0, 2**32), turn=st.integers(0, 10**6), prefix=st.text(max_size=40))
def test_every_strategy_returns_a_valid_index(
    strategy: str, cands: list[Candidate], seed: int, turn: int, prefix: str,
) -> None:
    i = pick(strategy, cands, rng=random.Random(seed), turn=turn, prefix=prefix)
    assert 0 <= i < len(cands)


def test_no_candidates_and_unknown_strategy_are_errors() -> None:
    with pytest.raises(ValueError, match="no candidates"):
        pick(RANDOM, [], rng=random.Random(0))
    with pytest.raises(ValueError, match="unknown routing strategy 'fastest'"):
        pick("fastest", [Candidate("a")], rng=random.Random(0))


def test_random_is_uniform() -> None:
    cands = [Candidate(k) for k in KEYS[:4]]
    rng = random.Random(7)
    counts = Counter(pick(RANDOM, cands, rng=rng) for _ in range(8000))
    assert set(counts) == {0, 1, 2, 3}
    # Chi-square with 3 degrees of freedom; 16.27 is its 0.999 quantile.
    chi2 = sum((counts[i] - 2000) ** 2 / 2000 for i in range(4))
    assert chi2 < 16.27, counts


def test_random_depends_only_on_the_seed() -> None:
    cands = [Candidate(k) for k in KEYS[:5]]
    a = [pick(RANDOM, cands, rng=random.Random(3)) for _ in range(50)]
    b = [pick(RANDOM, cands, rng=random.Random(3)) for _ in range(50)]
    assert a == b


@settings(deadline=None)  # the machine is shared: time is not what is tested
@given(n=st.integers(1, 8), rounds=st.integers(1, 20), start=st.integers(0, 1000))
def test_round_robin_gives_each_candidate_its_turn(n: int, rounds: int, start: int) -> None:
    cands = [Candidate(k) for k in reversed(KEYS[:n])]
    picks = [pick(ROUND_ROBIN, cands, rng=random.Random(0), turn=start + t)
             for t in range(n * rounds)]
    assert Counter(picks) == {i: rounds for i in range(n)}
    # Consecutive turns never repeat a candidate while there are several.
    if n > 1:
        assert all(a != b for a, b in itertools.pairwise(picks))


def test_round_robin_order_does_not_depend_on_the_list_order() -> None:
    cands = [Candidate(k) for k in KEYS[:4]]
    shuffled = [cands[2], cands[0], cands[3], cands[1]]
    for turn in range(8):
        assert cands[pick(ROUND_ROBIN, cands, rng=random.Random(0), turn=turn)].key == \
            shuffled[pick(ROUND_ROBIN, shuffled, rng=random.Random(0), turn=turn)].key


@settings(deadline=None)  # the machine is shared: time is not what is tested
@given(cands=candidate_lists, seed=st.integers(0, 2**32))
def test_least_request_picks_a_least_loaded(cands: list[Candidate], seed: int) -> None:
    i = pick(LEAST_REQUEST, cands, rng=random.Random(seed))
    assert cands[i].in_flight == min(c.in_flight for c in cands)


def test_least_request_spreads_ties() -> None:
    cands = [Candidate(k, in_flight=2) for k in KEYS[:3]] + [Candidate(KEYS[3], in_flight=3)]
    rng = random.Random(1)
    counts = Counter(pick(LEAST_REQUEST, cands, rng=rng) for _ in range(300))
    assert set(counts) == {0, 1, 2}


def _simulate(
    strategy: str, service_ticks: list[int], arrivals: int, seed: int = 0,
) -> Counter[int]:
    """Requests arrive one a tick; pod i holds each for service_ticks[i] ticks."""
    rng = random.Random(seed)
    in_flight = [0] * len(service_ticks)
    ends: list[tuple[int, int]] = []
    sent: Counter[int] = Counter()
    for tick in range(arrivals):
        for end in [e for e in ends if e[0] <= tick]:
            in_flight[end[1]] -= 1
            ends.remove(end)
        cands = [Candidate(KEYS[i], in_flight=in_flight[i]) for i in range(len(service_ticks))]
        i = pick(strategy, cands, rng=rng, turn=tick)
        in_flight[i] += 1
        sent[i] += 1
        ends.append((tick + service_ticks[i], i))
    return sent


def test_least_request_sends_less_to_a_slow_pod() -> None:
    # Pod 0 takes 10x longer per request: least-request sends it far fewer,
    # round-robin the same share as the others.
    least = _simulate(LEAST_REQUEST, [20, 2, 2], arrivals=600)
    rr = _simulate(ROUND_ROBIN, [20, 2, 2], arrivals=600)
    assert rr[0] == 200
    assert least[0] < 100
    assert least[1] + least[2] > 500


def test_least_queue_prefers_the_shorter_engine_queue() -> None:
    cands = [Candidate(KEYS[0], waiting=5, running=8), Candidate(KEYS[1], waiting=0, running=8),
             Candidate(KEYS[2], waiting=2, running=1)]
    assert pick(LEAST_QUEUE, cands, rng=random.Random(0)) == 1
    # The gateway's own in-flight count is a floor under a stale sidecar number.
    cands = [Candidate(KEYS[0], in_flight=9, waiting=0, running=0),
             Candidate(KEYS[1], in_flight=1, waiting=0, running=3)]
    assert pick(LEAST_QUEUE, cands, rng=random.Random(0)) == 1
    # Without sidecar numbers it is least-request.
    cands = [Candidate(KEYS[0], in_flight=4), Candidate(KEYS[1], in_flight=2)]
    assert pick(LEAST_QUEUE, cands, rng=random.Random(0)) == 1


@settings(deadline=None)  # the machine is shared: time is not what is tested
@given(prefix=st.text(max_size=60), n=st.integers(2, 8), seed=st.integers(0, 2**32))
def test_prefix_affinity_is_sticky_when_load_is_even(prefix: str, n: int, seed: int) -> None:
    cands = [Candidate(k) for k in KEYS[:n]]
    first = pick(PREFIX_AFFINITY, cands, rng=random.Random(seed), prefix=prefix)
    assert first == rendezvous_order(cands, prefix)[0]
    # The same prefix goes to the same pod whatever the order of the list.
    reordered = list(reversed(cands))
    again = pick(PREFIX_AFFINITY, reordered, rng=random.Random(seed + 1), prefix=prefix)
    assert reordered[again].key == cands[first].key


@settings(deadline=None)  # the machine is shared: time is not what is tested
@given(prefix=st.text(max_size=60), n=st.integers(3, 8), drop=st.integers(0, 7))
def test_prefix_affinity_moves_only_the_prefixes_of_a_removed_pod(
    prefix: str, n: int, drop: int,
) -> None:
    cands = [Candidate(k) for k in KEYS[:n]]
    chosen = cands[pick(PREFIX_AFFINITY, cands, rng=random.Random(0), prefix=prefix)]
    gone = cands[drop % n]
    if gone.key == chosen.key:
        return
    rest = [c for c in cands if c.key != gone.key]
    assert rest[pick(PREFIX_AFFINITY, rest, rng=random.Random(0), prefix=prefix)].key == chosen.key


def test_prefix_affinity_spreads_different_prefixes() -> None:
    cands = [Candidate(k) for k in KEYS[:4]]
    homes = Counter(cands[pick(PREFIX_AFFINITY, cands, rng=random.Random(0),
                               prefix=f"system prompt {i}")].key for i in range(400))
    assert len(homes) == 4
    assert min(homes.values()) > 50, homes


@settings(deadline=None)  # the machine is shared: time is not what is tested
@given(loads=st.lists(st.integers(0, 40), min_size=2, max_size=8),
       prefix=st.text(max_size=20), factor=st.floats(1.0, 3.0))
def test_prefix_affinity_respects_its_load_bound(loads: list[int], prefix: str,
                                                  factor: float) -> None:
    cands = [Candidate(KEYS[i], in_flight=n) for i, n in enumerate(loads)]
    i = pick(PREFIX_AFFINITY, cands, rng=random.Random(0), prefix=prefix, load_factor=factor)
    bound = math.ceil(factor * (sum(loads) + 1) / len(loads))
    assert bound == load_bound(cands, factor)
    assert cands[i].in_flight + 1 <= max(1, bound)


@settings(deadline=None)  # the machine is shared: time is not what is tested
@given(prefix=st.text(min_size=1, max_size=20), n=st.integers(2, 6))
def test_one_hot_prefix_fills_pods_in_turn_within_the_bound(prefix: str, n: int) -> None:
    # A burst of requests with one prefix that all stay in flight: the bound
    # spills them over the pods instead of piling them on the first.
    in_flight = [0] * n
    for _ in range(20 * n):
        cands = [Candidate(KEYS[i], in_flight=in_flight[i]) for i in range(n)]
        in_flight[pick(PREFIX_AFFINITY, cands, rng=random.Random(0), prefix=prefix)] += 1
        total = sum(in_flight)
        assert max(in_flight) <= math.ceil(1.25 * total / n)
    # The prefix's own pod took as many as the bound let it.
    home = rendezvous_order([Candidate(k) for k in KEYS[:n]], prefix)[0]
    assert in_flight[home] == max(in_flight)
    assert in_flight[home] == math.ceil(1.25 * 20 * n / n)


def test_prompt_prefix_of_chat_and_completions() -> None:
    chat = {"messages": [{"role": "system", "content": "You are terse."},
                         {"role": "user", "content": [{"type": "text", "text": "hello"}]}]}
    assert prompt_prefix(chat, 100) == "system:You are terse.\nuser:hello\n"
    assert prompt_prefix(chat, 10) == "system:You"
    assert prompt_prefix({"prompt": "abc"}, 2) == "ab"
    assert prompt_prefix({"prompt": ["first", "second"]}, 10) == "first"
    assert prompt_prefix({"prompt": [1, 2, 3]}, 10) == "1,2,3"
    assert prompt_prefix({"messages": "not a list"}, 10) == ""
    assert prompt_prefix({}, 10) == ""


_content = st.text(max_size=40) | st.lists(
    st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=20)})
    | st.fixed_dictionaries({"type": st.just("image_url")}), max_size=3) | st.none()
_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant"]) | st.none(), "content": _content})


@given(st.lists(_message | st.just("not a message"), max_size=6)
       .map(lambda m: {"messages": m})
       | st.text(max_size=60).map(lambda p: {"prompt": p})
       | st.lists(st.text(max_size=20), min_size=1, max_size=3).map(lambda p: {"prompt": p})
       | st.just({}))
def test_prompt_chars_is_the_length_of_the_rendered_prompt(body: dict[str, object]) -> None:
    assert prompt_chars(body) == len(prompt_prefix(body, 10**9))


def test_a_prompt_of_token_ids_counts_four_characters_a_token() -> None:
    assert prompt_chars({"prompt": [1, 2, 3]}) == 12
    assert prompt_chars({"prompt": [[1, 2], [3]]}) == 8  # a batch: its first, as prompt_prefix
