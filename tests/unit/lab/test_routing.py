"""The lab's routing: the gateway's prefix-cache profile over trace blocks, and prefix caching."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from gateway.picker import Candidate
from gateway.routing_config import parse_routing_config
from gateway.settings import GatewaySettings
from lab.cli import main
from lab.engine import Outcome, Result, SimSettings, simulate
from lab.profiles import Profile
from lab.routing import Router, routings
from lab.traces import Request, Trace, load, transform

from .test_engine import Steps

pytestmark = pytest.mark.unit

PROFILE = Profile(name="test", prefill_tokens_per_s=10000.0, decode_ms_per_token=10.0,
                  decode_ms_per_token_per_seq=0.5, max_num_seqs=8, kv_cache_tokens=200_000,
                  max_model_len=8192)
SHARED = tuple(range(1, 9))  # eight 512-token blocks every request starts with


def shared_prefix_trace(n: int = 40, gap: float = 0.5) -> Trace:
    """Requests that all start with the same 4,096 tokens, then two blocks of their own."""
    requests = [Request(arrival=i * gap, prompt_tokens=4700, output_tokens=10, prefix="1",
                        blocks=(*SHARED, 1000 + i, 2000 + i)) for i in range(n)]
    return Trace.of("shared", requests, block_tokens=512)


def run(trace: Trace, routing: str, replicas: int = 4, seed: int = 0) -> Result:
    settings = SimSettings(cold_start=lambda _rng: 30.0, initial_replicas=replicas,
                           routing=routing, seed=seed)
    return simulate(trace, PROFILE, Steps([(0.0, replicas)]), settings)


def hit_ratio(result: Result) -> float:
    return result.prefix_hits / result.prefix_queries


def test_prefix_cache_routing_hits_more_and_answers_sooner_than_round_robin() -> None:
    trace = shared_prefix_trace()
    rr, pc = run(trace, "round-robin"), run(trace, "prefix-cache")
    for result in (rr, pc):  # conservation: every request ends once, all complete
        assert (result.outcome == Outcome.COMPLETED).all()
        assert result.prefix_queries == sum(r.prompt_tokens for r in trace.requests)
        assert 0 < result.prefix_hits < result.prefix_queries
    # Round-robin prefills the shared blocks once per pod, prefix-cache once.
    assert hit_ratio(pc) > hit_ratio(rr)
    assert np.mean(pc.ttft) < np.mean(rr.ttft)
    assert np.percentile(pc.ttft, 99) < np.percentile(rr.ttft, 99)


def test_requests_without_blocks_share_nothing() -> None:
    trace = load("synthetic:steady?rate=4&duration=60&seed=3&prompt_mean=3000&output_mean=20")
    assert trace.block_tokens == 0
    for routing in ("round-robin", "prefix-cache"):
        result = run(trace, routing)
        assert (result.outcome != Outcome.PENDING).all()
        assert (result.outcome == Outcome.COMPLETED).sum() > 0
        assert result.prefix_queries > 0
        assert result.prefix_hits == 0


def test_copies_of_a_trace_with_blocks_share_their_prefixes() -> None:
    # The lab caches by the trace's block ids: the same request twice hits the second time.
    one = Request(arrival=0.0, prompt_tokens=2000, output_tokens=5, blocks=(7, 8, 9, 10))
    again = Request(arrival=5.0, prompt_tokens=2000, output_tokens=5, blocks=(7, 8, 9, 10))
    result = run(Trace.of("twice", [one, again], block_tokens=512), "least-request", replicas=1)
    # Three full blocks of the second prompt were cached (the last, partial one is computed).
    assert result.prefix_hits == 3 * 512
    assert result.ttft[1] < result.ttft[0]


def test_the_router_uses_the_gateways_index_and_forgets_pods() -> None:
    router = Router("prefix-cache", block_tokens=512, rng=random.Random(0))
    pods = [Candidate(key="a", in_flight=0), Candidate(key="b", in_flight=0)]
    hashes = (11, 12, 13)
    first, _ = router.choose(pods, prefix="", hashes=hashes, kv_cache=[0.0, 0.0])
    # The same prefix goes where it went, while that pod is not past the load filter.
    busy = [Candidate(key=c.key, in_flight=1 if i == first else 0) for i, c in enumerate(pods)]
    assert router.choose(busy, prefix="", hashes=hashes, kv_cache=[0.0, 0.0])[0] == first
    assert router.index.pods() == {pods[first].key}
    router.forget(pods[first].key)
    assert router.index.pods() == set()
    with pytest.raises(ValueError, match="one KV-cache usage per candidate"):
        router.choose(pods, prefix="", hashes=hashes, kv_cache=[0.0])


def test_unknown_routing_and_profiles_of_a_config() -> None:
    with pytest.raises(ValueError, match="unknown routing strategy 'fastest'"):
        Router("fastest", block_tokens=0, rng=random.Random(0))
    config = parse_routing_config({"profiles": {"mine": {"scorers": {"prefix": 2, "queue": 1}}}})
    assert "mine" in routings(config)
    assert "mine" not in routings()
    router = Router("mine", block_tokens=512, rng=random.Random(0), config=config)
    assert router.uses_prefix
    with pytest.raises(ValueError, match="block_tokens"):
        Router("prefix-cache", block_tokens=-1, rng=random.Random(0))


def test_backtest_reports_the_hit_ratio_and_takes_a_routing_config(tmp_path: Path) -> None:
    config = tmp_path / "routing.yaml"
    config.write_text("profiles:\n  mine: {scorers: {prefix: 2, queue: 1}}\n")
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(json.dumps({
        "timestamp": 500 * i, "input_length": 1100, "output_length": 4,
        "hash_ids": [1, 2, 100 + i]}) + "\n" for i in range(30)))
    code = main(["backtest", "--trace", str(trace), "--policies", "fixed:replicas=2",
                 "--profile", "gpu-8b", "--routing", "mine", "--routing-config", str(config),
                 "--quiet", "--out", str(tmp_path / "r")])
    assert code == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    row = summary["policies"]["fixed:replicas=2"]
    # Two shared 512-token blocks of each 1,100-token prompt; the first of each pod misses.
    assert 0 < row["prefix_hit_ratio"] < 1024 / 1100
    assert "prefix hit ratio" in (tmp_path / "r" / "report.md").read_text()


def test_backtest_routes_as_the_gateway_does_by_default(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(json.dumps({
        "timestamp": 500 * i, "input_length": 1100, "output_length": 4,
        "hash_ids": [1, 2, 100 + i]}) + "\n" for i in range(10)))
    code = main(["backtest", "--trace", str(trace), "--policies", "fixed:replicas=2",
                 "--quiet", "--out", str(tmp_path / "r")])
    assert code == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["settings"]["routing"] == GatewaySettings().routing


def test_a_bad_routing_config_is_one_line_and_exit_2(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "routing.yaml"
    config.write_text("profiles:\n  mine: {scorers: {speed: 1}}\n")
    code = main(["backtest", "--trace", "synthetic:steady", "--policies", "fixed",
                 "--routing-config", str(config), "--quiet", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2
    assert "profiles.mine.scorers.speed: unknown scorer" in err
    assert err.count("\n") == 1
    code = main(["backtest", "--trace", "synthetic:steady", "--policies", "fixed",
                 "--routing-config", str(tmp_path / "none.yaml"), "--quiet",
                 "--out", str(tmp_path / "r")])
    assert code == 2
    assert "--routing-config" in capsys.readouterr().err


def test_transform_keeps_blocks_for_the_router() -> None:
    trace = transform(shared_prefix_trace(), time_scale=2.0)
    assert trace.block_tokens == 512
    assert all(r.blocks[:8] == SHARED for r in trace.requests)


def test_prefix_routing_through_scale_up_and_down_loses_nothing() -> None:
    # Pods come and go (the router forgets the ones that left); every request ends once.
    trace = transform(load("mooncake-conv"), duration=300)
    settings = SimSettings(cold_start=lambda _rng: 20.0, initial_replicas=2,
                           routing="prefix-cache")
    result = simulate(trace, Profile(name="big", prefill_tokens_per_s=20000.0,
                                     decode_ms_per_token=8.0, decode_ms_per_token_per_seq=0.08,
                                     max_num_seqs=64, kv_cache_tokens=400_000,
                                     max_model_len=131072),
                      Steps([(15.0, 6), (150.0, 1), (240.0, 3)]), settings)
    assert (result.outcome == Outcome.COMPLETED).all()
    assert result.scale_events == 3
    assert 0 < result.prefix_hits < result.prefix_queries


def test_the_router_says_how_much_of_the_prompt_the_chosen_pod_must_prefill() -> None:
    router = Router("least-prefill", block_tokens=512, rng=random.Random(0))
    pods = [Candidate(key="a"), Candidate(key="b")]
    first, prefill = router.choose(pods, prefix="", hashes=(11, 12, 13), kv_cache=[0.0, 0.0],
                                   prompt_tokens=1600)
    assert prefill == 1600  # nothing cached anywhere yet
    # A longer prompt starting with those three blocks: its pod holds 1,536 of its tokens.
    again, prefill = router.choose(pods, prefix="", hashes=(11, 12, 13, 14), kv_cache=[0.0, 0.0],
                                   prompt_tokens=2100)
    assert (again, prefill) == (first, 2100 - 3 * 512)
    # A strategy knows nothing of caches: the whole prompt.
    assert Router("least-request", block_tokens=512, rng=random.Random(0)).choose(
        pods, prefix="", hashes=(11,), kv_cache=[0.0, 0.0], prompt_tokens=700)[1] == 700


def test_fleet_prefill_keeps_a_hit_the_lab_router_would_give_up_once_every_pod_is_behind(
) -> None:
    # Pod a holds the prompt's first three blocks (1,536 of its 2,100 tokens) and has
    # 2,000 tokens ahead; pod b has 1,000 ahead. least-prefill: 2,000 + 564 against
    # 1,000 + 2,100, pod a; with 2,700 ahead of pod a, pod b. fleet-prefill charges pod
    # b the least backlog times the share it would prefill again: 1,000 x 1,536 / 2,100.
    picks = {}
    for routing in ("least-prefill", "fleet-prefill"):
        router = Router(routing, block_tokens=512, rng=random.Random(0))
        empty = [Candidate(key="a", prefill=0), Candidate(key="b", prefill=1)]
        assert router.choose(empty, prefix="", hashes=(11, 12, 13), kv_cache=[0.0, 0.0],
                             prompt_tokens=1600)[0] == 0
        behind = [Candidate(key="a", prefill=2_700), Candidate(key="b", prefill=1_000)]
        picks[routing] = router.choose(behind, prefix="", hashes=(11, 12, 13, 14),
                                       kv_cache=[0.0, 0.0], prompt_tokens=2100)
    assert picks == {"least-prefill": (1, 2100), "fleet-prefill": (0, 2100 - 3 * 512)}


def test_least_prefill_keeps_short_prompts_off_the_pod_prefilling_a_long_one() -> None:
    # A long prompt (0.8 s of prefill), then three short ones that decode for seconds:
    # least-request sends the third to the long one's pod (1 request in flight against
    # 2), where it waits for the long prefill; least-prefill sends it to the other.
    long = Request(arrival=0.0, prompt_tokens=8000, output_tokens=5)
    shorts = [Request(arrival=0.1 * (i + 1), prompt_tokens=100, output_tokens=300)
              for i in range(3)]
    trace = Trace.of("long-then-short", [long, *shorts])
    by_request = run(trace, "least-request", replicas=2)
    by_prefill = run(trace, "least-prefill", replicas=2)
    for result in (by_request, by_prefill):
        assert (result.outcome == Outcome.COMPLETED).all()
    assert max(by_request.ttft[1:]) > 0.5
    assert max(by_prefill.ttft[1:]) < 0.1
    assert by_prefill.ttft[0] == pytest.approx(by_request.ttft[0], abs=0.05)
