"""The routing benchmark's workloads: shared trace blocks share text, rates are as asked."""

from __future__ import annotations

import itertools
import os

import pytest

from bench.routing import workloads as wl

pytestmark = pytest.mark.unit


def prefix_words(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a.split(), b.split(), strict=False):
        if x != y:
            break
        n += 1
    return n


def leading_shared(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def test_mooncake_blocks_become_shared_text_exactly() -> None:
    rows = wl.load_mooncake()
    reqs = wl.mooncake(rows, n=200, rate=5, block_words=8, output_scale=0.1, salt="s")
    picked = wl.sample_conversations(rows, 200)
    assert len(reqs) == len(picked)
    for i in range(1, len(reqs)):
        for j in range(max(0, i - 20), i):
            blocks = leading_shared(picked[i]["hash_ids"], picked[j]["hash_ids"])
            words = prefix_words(reqs[i].messages[0]["content"], reqs[j].messages[0]["content"])
            assert words == 8 * blocks
    assert all(r.prompt_tokens == 8 * len(p["hash_ids"]) for r, p in zip(reqs, picked,
                                                                         strict=True))


def test_conversations_are_sampled_whole_and_in_time_order() -> None:
    rows = wl.load_mooncake()
    picked = wl.sample_conversations(rows, 100, seed=3)
    assert len(picked) >= 100
    stamps = [r["timestamp"] for r in picked]
    assert stamps == sorted(stamps)
    keys = {tuple(r["hash_ids"][:2]) for r in picked}
    assert sum(1 for r in rows if tuple(r["hash_ids"][:2]) in keys) == len(picked)


@pytest.mark.parametrize("rate", [0.5, 4.0, 30.0])
def test_arrivals_are_rescaled_to_the_rate(rate: float) -> None:
    reqs = wl.azure(wl.load_azure(), n=120, rate=rate, token_scale=0.5, output_scale=0.1,
                    salt="")
    assert reqs[0].at == 0
    assert (len(reqs) - 1) / reqs[-1].at == pytest.approx(rate)
    assert all(a.at <= b.at for a, b in itertools.pairwise(reqs))


def test_azure_requests_share_nothing() -> None:
    reqs = wl.azure(wl.load_azure(), n=50, rate=1, token_scale=0.5, output_scale=0.1, salt="")
    texts = [r.messages[0]["content"] for r in reqs]
    assert all(prefix_words(a, b) == 0 for a in texts for b in texts if a is not b)


def test_chat_turns_grow_their_conversation_and_share_system_prompts() -> None:
    reqs = wl.chat(sessions=6, turns=4, rate=3, system_prompts=2, system_words=50,
                   turn_words=5, answer_words=7, max_tokens=4, salt="")
    assert len(reqs) == 24
    assert (len(reqs) - 1) / reqs[-1].at == pytest.approx(3)
    by_session: dict[str, list[wl.Request]] = {}
    for r in reqs:
        by_session.setdefault(r.messages[1]["content"], []).append(r)
    for turns in by_session.values():
        assert [len(t.messages) for t in turns] == [2, 4, 6, 8]
        for a, b in itertools.pairwise(turns):
            assert b.messages[:len(a.messages)] == a.messages
    systems = {r.messages[0]["content"] for r in reqs}
    assert len(systems) == 2


def test_the_vendored_traces_stay_small() -> None:
    for path in (wl.MOONCAKE, wl.AZURE):
        assert os.path.getsize(path) < 2_000_000
