"""Profiles of weighted scorers and filters: the pure decision, and the router around it."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.load import LoadTracker
from gateway.picker import Candidate, prompt_chars
from gateway.router import ProfileRouter
from gateway.routing_config import RoutingConfig, parse_routing_config
from gateway.scoring import (
    FLEET_PREFILL,
    LEAST_PREFILL,
    PREFIX_CACHE,
    SCORERS,
    Filter,
    Profile,
    Signals,
    pick_scored,
    score,
    uncached,
)
from gateway.table import Endpoint, RoutingTable

pytestmark = pytest.mark.unit

KEYS = [f"http://10.0.0.{i}:8000" for i in range(1, 7)]


def pick(profile: Profile, cands: list[Candidate], sig: list[Signals], total: int = 10,
         seed: int = 0, prompt: int = 0) -> int:
    return pick_scored(profile, cands, sig, prefix_total=total, rng=random.Random(seed),
                       prompt=prompt)


PREFIX_ONLY = Profile("prefix-only", {"prefix": 1.0},
                      (Filter("load", {"factor": 1.5, "slack": 2.0}),))
"""The built-in before it weighed load: the prefix scorer alone."""


def test_a_whole_prefix_beats_an_idle_pod() -> None:
    cands = [Candidate(KEYS[0], in_flight=2), Candidate(KEYS[1], in_flight=0),
             Candidate(KEYS[2], in_flight=1)]
    sig = [Signals(prefix_chunks=3), Signals(prefix_chunks=0), Signals(prefix_chunks=10)]
    assert pick(PREFIX_CACHE, cands, sig) == 2


def test_a_shared_first_chunk_does_not_beat_a_less_loaded_pod() -> None:
    # Every request starts with the same system prompt: the busy pod that has served it
    # matches 1 chunk of 10, the idle one none. The prefix scorer alone piles onto the
    # busy one; the built-in sends the request to the idle one.
    cands = [Candidate(KEYS[0], in_flight=1), Candidate(KEYS[1], in_flight=0)]
    sig = [Signals(prefix_chunks=1), Signals()]
    assert pick(PREFIX_ONLY, cands, sig) == 0
    assert pick(PREFIX_CACHE, cands, sig) == 1


def test_a_pod_past_the_load_threshold_loses_its_prefix() -> None:
    # mean with the new request = (12 + 0 + 0 + 1) / 4 = 3.25; bound 2 * 3.25 + 4 = 10.5
    cands = [Candidate(KEYS[0], in_flight=12), Candidate(KEYS[1], in_flight=0),
             Candidate(KEYS[2], in_flight=0), Candidate(KEYS[3], in_flight=0)]
    sig = [Signals(prefix_chunks=10), Signals(), Signals(prefix_chunks=2), Signals()]
    assert pick(PREFIX_CACHE, cands, sig) == 2  # the next longest prefix among the rest
    cands[0] = Candidate(KEYS[0], in_flight=9)  # bound 2 * (9 + 1) / 4 + 4 = 9: past
    assert pick(PREFIX_CACHE, cands, sig) == 2
    cands[0] = Candidate(KEYS[0], in_flight=8)  # bound 2 * (8 + 1) / 4 + 4 = 8.5: within
    assert pick(PREFIX_CACHE, cands, sig) == 0


@settings(deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 10)), min_size=2, max_size=6),
       st.integers(0, 2**32))
def test_the_built_in_never_picks_a_dominated_pod(rows: list[tuple[int, int]],
                                                   seed: int) -> None:
    # No other pod holds at least as much of the prompt with fewer requests in flight.
    cands = [Candidate(KEYS[i], in_flight=n) for i, (n, _) in enumerate(rows)]
    sig = [Signals(prefix_chunks=p) for _, p in rows]
    i = pick(PREFIX_CACHE, cands, sig, seed=seed)
    assert not any(p >= rows[i][1] and n < rows[i][0] for n, p in rows)


@settings(deadline=None)
@given(st.lists(st.integers(0, 20), min_size=2, max_size=6), st.integers(0, 2**32))
def test_misses_go_to_the_least_loaded(loads: list[int], seed: int) -> None:
    cands = [Candidate(KEYS[i], in_flight=n) for i, n in enumerate(loads)]
    i = pick(PREFIX_CACHE, cands, [Signals()] * len(cands), seed=seed)
    assert cands[i].in_flight == min(loads)


def test_ties_in_score_go_to_the_least_loaded_then_at_random() -> None:
    cands = [Candidate(KEYS[0], in_flight=3), Candidate(KEYS[1], in_flight=1),
             Candidate(KEYS[2], in_flight=1)]
    sig = [Signals(prefix_chunks=5)] * 3
    chosen = Counter(pick(PREFIX_CACHE, cands, sig, seed=s) for s in range(200))
    assert set(chosen) == {1, 2}
    assert min(chosen.values()) > 60


@settings(deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.none() | st.integers(0, 30),
                          st.none() | st.integers(0, 30), st.integers(0, 12),
                          st.none() | st.just(float("nan")) | st.floats(0, 1), st.booleans()),
                min_size=1, max_size=6),
       st.dictionaries(st.sampled_from(SCORERS), st.floats(0, 5), min_size=1),
       st.integers(0, 2**32))
def test_every_profile_picks_a_kept_candidate_with_the_best_score(
    rows: list[tuple[int, int | None, int | None, int, float | None, bool]],
    weights: dict[str, float], seed: int,
) -> None:
    profile = Profile("p", weights, (Filter("load", {"factor": 1.2, "slack": 0}),
                                     Filter("kv-cache", {"max": 0.8})))
    cands = [Candidate(KEYS[i], in_flight=f, waiting=w, running=r, prefill=1000 * f)
             for i, (f, w, r, _, _, _) in enumerate(rows)]
    sig = [Signals(prefix_chunks=p, kv_cache=k, lora_active=la, uncached=(12 - p) * 256)
           for _, _, _, p, k, la in rows]
    i = pick(profile, cands, sig, total=12, seed=seed, prompt=12 * 256)
    if len(cands) == 1:
        assert i == 0
        return
    scored = score(profile, cands, sig, prefix_total=12, prompt=12 * 256)
    assert scored[i].kept
    assert scored[i].score >= max(s.score for s in scored if s.kept) - 1e-9
    assert all(0.0 <= v <= 1.0 for s in scored for v in s.parts.values())


def test_each_scorer_prefers_what_it_says() -> None:
    cands = [Candidate(KEYS[0], in_flight=1, waiting=5, running=9),
             Candidate(KEYS[1], in_flight=1, waiting=0, running=2)]
    assert pick(Profile("q", {"queue": 1}), cands, [Signals()] * 2) == 1
    assert pick(Profile("r", {"running": 1}), cands, [Signals()] * 2) == 1
    # in-flight reads this gateway's own count only, whatever the sidecars say
    busy = [Candidate(KEYS[0], in_flight=3, waiting=0, running=0),
            Candidate(KEYS[1], in_flight=1, waiting=7, running=9)]
    assert pick(Profile("f", {"in-flight": 1}), busy, [Signals()] * 2) == 1
    assert pick(Profile("q", {"queue": 1}), busy, [Signals()] * 2) == 0
    assert pick(Profile("k", {"kv-cache": 1}), cands,
                [Signals(kv_cache=0.1), Signals(kv_cache=0.9)]) == 0
    assert pick(Profile("l", {"lora": 1}), cands,
                [Signals(lora_active=True), Signals()]) == 0
    # weights trade them off: the LoRA pod wins only while lora outweighs the queue
    sig = [Signals(lora_active=True), Signals()]
    assert pick(Profile("lq", {"lora": 2, "queue": 1}), cands, sig) == 0
    assert pick(Profile("lq", {"lora": 0.5, "queue": 1}), cands, sig) == 1


def test_what_a_pod_must_prefill_is_the_prompt_past_the_chunks_it_holds() -> None:
    assert uncached(1000, 0, 256) == 1000
    assert uncached(1000, 2, 256) == 488
    # A prompt of token ids renders longer than its estimate (4 characters a token):
    # its chunks can cover more than the estimate, and nothing is left, not less than 0.
    assert uncached(300, 2, 256) == 0


def test_a_short_prompt_is_not_sent_behind_a_long_prefill() -> None:
    # Pod 0 has one request in flight, a 40,000-character prompt not yet at its first
    # token; pod 1 has three requests decoding. least-request picks pod 0, least-prefill
    # pod 1: its short prompt would wait for the whole long prefill on pod 0.
    cands = [Candidate(KEYS[0], in_flight=1, prefill=40_000),
             Candidate(KEYS[1], in_flight=3, prefill=0)]
    sig = [Signals(uncached=500), Signals(uncached=500)]
    assert pick(Profile("f", {"in-flight": 1}), cands, sig) == 0
    assert pick(LEAST_PREFILL, cands, sig) == 1


def test_a_long_prompt_goes_where_its_prefix_is_unless_the_backlog_costs_more() -> None:
    # A 40,000-character prompt, 36,000 of it cached on pod 0 (so 4,000 to prefill there).
    idle = Candidate(KEYS[1])
    sig = [Signals(prefix_chunks=140, uncached=4_000), Signals(uncached=40_000)]
    assert pick(LEAST_PREFILL, [Candidate(KEYS[0], in_flight=2, prefill=30_000), idle],
                sig) == 0  # 34,000 to wait for there against 40,000 on the idle pod
    assert pick(LEAST_PREFILL, [Candidate(KEYS[0], in_flight=2, prefill=50_000), idle],
                sig) == 1  # 54,000 against 40,000: the cache no longer pays


@settings(deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 50_000), st.integers(0, 50_000)),
                min_size=2, max_size=6), st.integers(0, 2**32))
def test_least_prefill_picks_the_least_prefill_ahead_then_the_fewest_in_flight(
    rows: list[tuple[int, int, int]], seed: int,
) -> None:
    cands = [Candidate(KEYS[i], in_flight=n, prefill=p) for i, (n, p, _) in enumerate(rows)]
    sig = [Signals(uncached=u) for _, _, u in rows]
    i = pick(LEAST_PREFILL, cands, sig, seed=seed)
    ahead = [p + u for _, p, u in rows]
    assert ahead[i] == min(ahead)
    assert rows[i][0] == min(n for (n, _, _), a in zip(rows, ahead, strict=True)
                             if a == min(ahead))


@settings(deadline=None)
@given(st.lists(st.integers(0, 20), min_size=2, max_size=6), st.integers(0, 10_000),
       st.integers(0, 2**32))
def test_with_no_prefill_ahead_and_no_cache_least_prefill_is_least_request(
    loads: list[int], size: int, seed: int,
) -> None:
    cands = [Candidate(KEYS[i], in_flight=n) for i, n in enumerate(loads)]
    i = pick(LEAST_PREFILL, cands, [Signals(uncached=size)] * len(cands), seed=seed)
    assert cands[i].in_flight == min(loads)


def test_once_every_pod_is_behind_fleet_prefill_charges_the_hit_a_pod_gives_up() -> None:
    # A 4,000-character prompt, all of it cached on pod 0, which has 7,000 characters
    # ahead of it; pod 1 has 2,000 ahead and holds none of it.
    sig = [Signals(prefix_chunks=16, uncached=0), Signals(uncached=4_000)]

    def pods(ahead0: int, ahead1: int) -> list[Candidate]:
        return [Candidate(KEYS[0], in_flight=3, prefill=ahead0),
                Candidate(KEYS[1], in_flight=1, prefill=ahead1)]

    # least-prefill: 7,000 against 2,000 + 4,000, pod 1. fleet-prefill charges pod 1
    # the least backlog (2,000) times the share it would prefill again (all of it):
    # 8,000, so pod 0 keeps its hit.
    assert pick(LEAST_PREFILL, pods(7_000, 2_000), sig, prompt=4_000) == 1
    assert pick(FLEET_PREFILL, pods(7_000, 2_000), sig, prompt=4_000) == 0
    # The charge is bounded: 8,500 ahead of the hit is more than it saves.
    assert pick(FLEET_PREFILL, pods(8_500, 2_000), sig, prompt=4_000) == 1
    # A pod with nothing ahead of it: no charge, as least-prefill.
    assert pick(FLEET_PREFILL, pods(7_000, 0), sig, prompt=4_000) == 1
    # Half the prompt cached: half the charge (7,000 + 2,000 against 6,000 + 1,000).
    half = [Signals(prefix_chunks=8, uncached=2_000), Signals(uncached=4_000)]
    assert pick(FLEET_PREFILL, pods(7_000, 2_000), half, prompt=4_000) == 1
    assert pick(FLEET_PREFILL, pods(4_900, 2_000), half, prompt=4_000) == 0
    # The prompt's size not known: no charge.
    assert pick(FLEET_PREFILL, pods(7_000, 2_000), sig) == 1


PODS = st.lists(st.tuples(st.integers(0, 20), st.integers(0, 50_000), st.integers(0, 10_000)),
                min_size=2, max_size=6)
"""Pods as (in flight, prefill backlog, what they would prefill of the prompt)."""


def pods_of(rows: list[tuple[int, int, int]], prompt: int) -> tuple[list[Candidate],
                                                                    list[Signals]]:
    cands = [Candidate(KEYS[i], in_flight=n, prefill=p) for i, (n, p, _) in enumerate(rows)]
    return cands, [Signals(uncached=min(u, prompt)) for _, _, u in rows]


@settings(deadline=None)
@given(PODS, st.integers(1, 10_000), st.integers(0, 2**32))
def test_while_a_pod_has_nothing_to_prefill_fleet_prefill_picks_as_least_prefill(
    rows: list[tuple[int, int, int]], prompt: int, seed: int,
) -> None:
    rows[seed % len(rows)] = (rows[seed % len(rows)][0], 0, rows[seed % len(rows)][2])
    cands, sig = pods_of(rows, prompt)
    assert (pick(FLEET_PREFILL, cands, sig, seed=seed, prompt=prompt)
            == pick(LEAST_PREFILL, cands, sig, seed=seed, prompt=prompt))


@settings(deadline=None)
@given(PODS, st.integers(1, 10_000), st.integers(0, 2**32))
def test_fleet_prefill_never_picks_a_pod_with_more_ahead_and_less_cached(
    rows: list[tuple[int, int, int]], prompt: int, seed: int,
) -> None:
    cands, sig = pods_of(rows, prompt)
    i = pick(FLEET_PREFILL, cands, sig, seed=seed, prompt=prompt)
    for j in range(len(rows)):
        no_more = (cands[j].prefill <= cands[i].prefill
                   and sig[j].uncached <= sig[i].uncached)
        assert not (no_more and (cands[j].prefill, sig[j].uncached)
                    != (cands[i].prefill, sig[i].uncached)), (i, j)


def test_an_unknown_or_nan_kv_cache_usage_is_neutral_not_empty() -> None:
    cands = [Candidate(KEYS[0], in_flight=1), Candidate(KEYS[1], in_flight=1),
             Candidate(KEYS[2], in_flight=1)]
    kv = Profile("k", {"kv-cache": 1})
    for unknown in (float("nan"), None):
        # A pod with a known, lightly used cache beats one whose usage is unknown ...
        sig = [Signals(kv_cache=unknown), Signals(kv_cache=0.2), Signals(kv_cache=0.9)]
        assert pick(kv, cands, sig) == 1
        parts = [s.parts["kv-cache"] for s in score(kv, cands, sig, prefix_total=0)]
        assert parts[0] == 0.5
        # ... and the unknown one beats a nearly full one.
        sig = [Signals(kv_cache=unknown), Signals(kv_cache=0.9), Signals(kv_cache=0.95)]
        assert pick(kv, cands, sig) == 0
    # The kv-cache filter keeps a pod it knows nothing of, and drops a full one.
    lora = Profile("kv", {"lora": 1}, (Filter("kv-cache", {"max": 0.5}),))
    sig = [Signals(kv_cache=float("nan"), lora_active=True), Signals(kv_cache=0.2),
           Signals(kv_cache=0.9, lora_active=True)]
    assert pick(lora, cands, sig) == 0


def test_a_filter_that_would_leave_none_is_skipped() -> None:
    cands = [Candidate(KEYS[0], waiting=9), Candidate(KEYS[1], waiting=7)]
    strict = Profile("s", {"queue": 1}, (Filter("queue", {"max": 2}),))
    assert pick(strict, cands, [Signals()] * 2) == 1
    kv = Profile("kv", {"lora": 1}, (Filter("kv-cache", {"max": 0.5}),))
    assert pick(kv, cands, [Signals(kv_cache=0.9, lora_active=True),
                            Signals(kv_cache=0.2)]) == 1


def test_bad_calls_are_errors() -> None:
    with pytest.raises(ValueError, match="no candidates"):
        pick(PREFIX_CACHE, [], [])
    with pytest.raises(ValueError, match="one Signals per candidate"):
        score(PREFIX_CACHE, [Candidate("a")], [], prefix_total=0)
    with pytest.raises(ValueError, match="unknown scorer 'speed'"):
        score(Profile("x", {"speed": 1}), [Candidate("a")], [Signals()], prefix_total=0)


# --- the router: the index and LoRA recency around the pure decision ----------

def router_for(eps: list[Endpoint], config: RoutingConfig | None = None,
               clock: list[float] | None = None) -> tuple[ProfileRouter, RoutingTable,
                                                        LoadTracker]:
    table = RoutingTable(static={"m": eps})
    tracker = LoadTracker()
    now = clock if clock is not None else [0.0]
    router = ProfileRouter(config or RoutingConfig(), table=table, tracker=tracker,
                           clock=lambda: now[0])
    return router, table, tracker


def ask(router: ProfileRouter, eps: list[Endpoint], text: str, name: str = "m",
        profile: str = "prefix-cache") -> Endpoint:
    body = {"model": name, "messages": [{"role": "system", "content": "S" * 600},
                                        {"role": "user", "content": text}]}
    return router.choose(profile, eps, name=name, model="m", hashes=router.hashes(body, name),
                         rng=random.Random(0), prompt_chars=prompt_chars(body))[0]


def test_requests_sharing_a_prefix_follow_the_first_one() -> None:
    eps = [Endpoint(f"p{i}", KEYS[i]) for i in range(4)]
    router, _, tracker = router_for(eps)
    first = ask(router, eps, "conversation one " * 40)
    tracker.started(first)  # it is still running: load alone would send the next elsewhere
    for turn in range(3):
        assert ask(router, eps, "conversation one " * 40 + f"turn {turn} " * 40) == first


def test_the_router_says_how_much_of_the_prompt_the_chosen_pod_must_prefill() -> None:
    eps = [Endpoint(f"p{i}", KEYS[i]) for i in range(2)]
    router, _, tracker = router_for(eps)
    config = RoutingConfig()
    chunk = config.prefix.chunk_chars
    first = {"model": "m", "messages": [{"role": "user", "content": "a" * 3000}]}
    body = {"model": "m", "messages": [{"role": "user", "content": "a" * 3000},
                                       {"role": "assistant", "content": "b" * 500},
                                       {"role": "user", "content": "c" * 400}]}
    rng = random.Random(0)
    pod, prefill = router.choose("least-prefill", eps, name="m", model="m",
                                 hashes=router.hashes(first, "m"), rng=rng,
                                 prompt_chars=prompt_chars(first))
    assert prefill == prompt_chars(first)  # nothing cached anywhere yet
    again, prefill = router.choose("least-prefill", eps, name="m", model="m",
                                   hashes=router.hashes(body, "m"), rng=rng,
                                   prompt_chars=prompt_chars(body))
    assert again == pod  # the idle pods tie on in flight; the cached prefix decides
    held = len(router.hashes(first, "m")) * chunk
    assert prefill == prompt_chars(body) - held
    # The same request again, the first pod now with 20,000 characters ahead of it:
    tracker.started(pod, 20_000)
    other, prefill = router.choose("least-prefill", eps, name="m", model="m",
                                   hashes=router.hashes(body, "m"), rng=rng,
                                   prompt_chars=prompt_chars(body))
    assert other != pod
    assert prefill == prompt_chars(body)


def test_the_router_gives_fleet_prefill_the_prompts_size() -> None:
    # Both pods behind; the follow-up turn's prefix is on one of them, with more ahead
    # than least-prefill would wait for, less than fleet-prefill charges for the lost hit.
    eps = [Endpoint(f"p{i}", KEYS[i]) for i in range(2)]
    chunk = RoutingConfig().prefix.chunk_chars
    first = {"model": "m", "messages": [{"role": "user", "content": "a" * 6000}]}
    body = {"model": "m", "messages": [{"role": "user", "content": "a" * 6000},
                                       {"role": "user", "content": "c" * 400}]}
    size = prompt_chars(body)
    behind = 3_000
    picks = {}
    for name in ("least-prefill", "fleet-prefill"):
        router, _, tracker = router_for(eps)
        rng = random.Random(0)
        pod, _ = router.choose(name, eps, name="m", model="m",
                               hashes=router.hashes(first, "m"), rng=rng,
                               prompt_chars=prompt_chars(first))
        held = len(router.hashes(first, "m")) * chunk
        tracker.started(eps[1] if pod is eps[0] else eps[0], behind)
        tracker.started(pod, behind + held + int(behind * held / size / 2))
        chosen, _ = router.choose(name, eps, name="m", model="m",
                                  hashes=router.hashes(body, "m"), rng=rng, prompt_chars=size)
        picks[name] = chosen is pod
    assert picks == {"least-prefill": False, "fleet-prefill": True}


def test_the_built_in_polls_no_sidecar_and_a_queue_profile_does() -> None:
    eps = [Endpoint(f"p{i}", KEYS[i]) for i in range(2)]
    config = parse_routing_config({"profiles": {"q": {"scorers": {"prefix": 2, "queue": 1}}}})
    router, _, tracker = router_for(eps, config)
    ask(router, eps, "hello " * 100)
    assert not tracker.queues_wanted.is_set()
    ask(router, eps, "hello " * 100, profile="q")
    assert tracker.queues_wanted.is_set()


def test_an_adapter_does_not_match_its_base_models_prefix() -> None:
    eps = [Endpoint(f"p{i}", KEYS[i]) for i in range(2)]
    router, _, tracker = router_for(eps)
    base = ask(router, eps, "x" * 1000)
    tracker.started(base)
    assert ask(router, eps, "x" * 1000, name="m-lora") != base


def test_lora_affinity_lasts_the_window() -> None:
    eps = [Endpoint(f"p{i}", KEYS[i]) for i in range(3)]
    config = parse_routing_config({"lora-window": 5,
                                   "profiles": {"la": {"scorers": {"lora": 1}}}})
    clock = [100.0]
    router, _, tracker = router_for(eps, config, clock)
    first = ask(router, eps, "a", name="ad1", profile="la")
    tracker.started(first)
    assert ask(router, eps, "b", name="ad1", profile="la") == first
    clock[0] += 6
    tracker.started(first)
    assert ask(router, eps, "c", name="ad1", profile="la") != first


def test_lora_recency_is_bounded_and_forgets_the_least_recent_first() -> None:
    eps = [Endpoint(f"p{i}", KEYS[i]) for i in range(3)]
    config = parse_routing_config({"lora-window": 60,
                                   "profiles": {"la": {"scorers": {"lora": 1}}}})
    table = RoutingTable(static={"m": eps})
    tracker = LoadTracker()
    router = ProfileRouter(config, table=table, tracker=tracker, clock=lambda: 0.0,
                           lora_entries=3)
    where: dict[int, Endpoint] = {}
    for n in range(6):
        where[n] = ask(router, eps, "a", name=f"ad{n}", profile="la")
        tracker.started(where[n])  # keep it busy: only affinity brings a request back
        assert router.lora_pairs == min(n + 1, 3)
    # The three most recent adapters are remembered; their next requests follow them.
    assert ask(router, eps, "b", name="ad5", profile="la") == where[5]
    # ad0 was forgotten: its request goes by load alone, to the least busy pod.
    loads = {c.key: c.in_flight for c in tracker.candidates(eps)}
    chosen = ask(router, eps, "c", name="ad0", profile="la")
    assert loads[chosen.url] == min(loads.values())
    assert router.lora_pairs == 3
    with pytest.raises(ValueError, match="lora_entries"):
        ProfileRouter(config, table=table, tracker=tracker, lora_entries=0)


def test_pods_that_leave_the_table_leave_the_index() -> None:
    eps = [Endpoint(f"p{i}", KEYS[i]) for i in range(2)]
    router, table, _ = router_for(eps)
    chosen = ask(router, eps, "y" * 1000)
    assert router.index.pods() == {chosen.url}
    table.replace("pods", {})  # a change: the static routes stay, nothing else
    ask(router, eps, "z" * 1000)
    assert chosen.url in router.index.pods()  # still in the table: kept
    gone = RoutingTable(static={"m": [e for e in eps if e != chosen]})
    router2 = ProfileRouter(RoutingConfig(), table=gone, tracker=LoadTracker())
    router2.index.record(chosen.url, (1, 2, 3))
    left = [e for e in eps if e != chosen]
    router2.choose("prefix-cache", left, name="m", model="m", hashes=(1,),
                   rng=random.Random(0))
    assert chosen.url not in router2.index.pods()
