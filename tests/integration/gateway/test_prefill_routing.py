"""least-prefill and fleet-prefill routing through the real gateway, in front of two sim engines.

A long prompt's prefill is work the gateway has sent to a pod and not yet
seen answered: while it lasts, short requests go to the other pod, even when
that pod already runs more requests (least-request would split them). Once
the long prompt's first token came back, its pod counts as free again.
With both pods behind, fleet-prefill keeps a conversation's turn on the pod
that holds its prefix where least-prefill moves it; a request with no
``x-brix-routing`` header does as fleet-prefill, the gateway's default.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from tests.helpers.gateway import start_gateway
from tests.helpers.procs import ProcessGroup
from tests.helpers.sim import sim_value, start_sim
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.integration

PREFILL_TOKENS_PER_S = 1000
LONG_WORDS = 5000  # about 5 s of prefill at 1,000 tokens a second


@pytest.fixture(scope="module")
def sims(module_procs: ProcessGroup) -> list[str]:
    """The two sims' URLs."""
    procs = [start_sim(module_procs, name="m1", extra_args=(
        "--prefill-tokens-per-s", str(PREFILL_TOKENS_PER_S), "--decode-ms-per-token", "20",
        "--decode-ms-per-token-per-seq", "0", "--max-model-len", "16384")) for _ in range(2)]
    return [str(p.url) for p in procs]


@pytest.fixture(scope="module")
def gw(module_procs: ProcessGroup, sims: list[str]) -> Iterator[httpx.Client]:
    proc = start_gateway(module_procs, extra_args=[
        "--static-routes", ",".join(f"m1={url}" for url in sims)])
    with httpx.Client(base_url=str(proc.url), timeout=60) as client:
        yield client


def chat(text: str, max_tokens: int) -> dict[str, Any]:
    return {"model": "m1", "max_tokens": max_tokens, "stream": True, "ignore_eos": True,
            "messages": [{"role": "user", "content": text}]}


def test_short_requests_are_not_sent_behind_a_long_prefill(gw: httpx.Client) -> None:
    long_pod: list[str] = []
    long_error: list[str] = []
    long_done = threading.Event()

    def send_long() -> None:
        with gw.stream("POST", "/v1/chat/completions",
                       json=chat("word " * LONG_WORDS, max_tokens=2),
                       headers={"x-brix-routing": "least-prefill"}) as r:
            if r.status_code != 200:
                r.read()
                long_error.append(f"{r.status_code}: {r.text}")
                return
            long_pod.append(r.headers["x-brix-pod"])  # its headers come with its first token
            for _ in r.iter_bytes():
                pass
        long_done.set()

    long = threading.Thread(target=send_long)
    long.start()
    short_pods = []
    try:
        with ExitStack() as open_streams:
            # Wait until the gateway has routed the long one (its engine is prefilling it).
            time.sleep(0.5)
            for i in range(4):
                # Each short one keeps decoding (1,000 tokens at 20 ms) while the next is
                # sent, so its pod runs more requests than the long one's.
                r = open_streams.enter_context(gw.stream(
                    "POST", "/v1/chat/completions", json=chat(f"short {i}", max_tokens=1000),
                    headers={"x-brix-routing": "least-prefill"}))
                assert r.status_code == 200
                short_pods.append(r.headers["x-brix-pod"])
            assert not long_done.is_set(), "the long prefill ended before the short ones went"
            long.join(timeout=60)
            assert not long_error
            assert long_pod, "the long request got no answer"
            assert long_pod[0] not in short_pods, (long_pod, short_pods)
            assert len(set(short_pods)) == 1

            # Its prefill done and its answer over, the long one's pod runs nothing: the
            # next request goes there, while the other pod still runs the short ones.
            with gw.stream("POST", "/v1/chat/completions", json=chat("after", max_tokens=2),
                           headers={"x-brix-routing": "least-prefill"}) as r:
                assert r.status_code == 200
                assert r.headers["x-brix-pod"] == long_pod[0]
    finally:
        long.join(timeout=60)


def test_a_prompt_whose_client_left_during_prefill_stops_counting(gw: httpx.Client) -> None:
    # The client of a long prompt leaves while its pod prefills it. Were its prefill still
    # counted, that pod would look busy and both short requests below would go to the other
    # one; counted no more, the second goes to the pod the first left idle.
    # The gateway's headers wait for the first token: a read timeout leaves mid-prefill.
    with pytest.raises(httpx.ReadTimeout):
        gw.post("/v1/chat/completions", json=chat("other " * LONG_WORDS, 2), timeout=1.0)
    time.sleep(0.5)
    with ExitStack() as open_streams:
        pods = []
        for i in range(2):
            r = open_streams.enter_context(gw.stream(
                "POST", "/v1/chat/completions", json=chat(f"after {i}", max_tokens=1000)))
            assert r.status_code == 200
            pods.append(r.headers["x-brix-pod"])
        assert pods[0] != pods[1], pods


def stream_pod(gw: httpx.Client, messages: list[dict[str, str]], routing: str | None,
               pods: dict[str, str], key: str) -> None:
    """One chat completion; its pod under ``key`` (or an error) once its first token came.
    ``routing`` None: no ``x-brix-routing`` header, the gateway's default."""
    body = {"model": "m1", "max_tokens": 2, "stream": True, "ignore_eos": True,
            "messages": messages}
    headers = {"x-brix-routing": routing} if routing else {}
    with gw.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
        if r.status_code != 200:
            r.read()
            pods[key] = f"error {r.status_code}: {r.text}"
            return
        pods[key] = r.headers["x-brix-pod"]
        for _ in r.iter_bytes():
            pass


def runs_more_than(sims: list[str], n: int) -> bool:
    """Whether the sims run more than ``n`` requests between them."""
    return sum(sim_value(url, "vllm:num_requests_running") for url in sims) > n


@pytest.mark.parametrize(("routing", "keeps_the_hit"),
                         [("fleet-prefill", True), ("least-prefill", False),
                          pytest.param(None, True, id="the-default-is-fleet-prefill")])
def test_with_both_pods_behind_fleet_prefill_keeps_a_turn_where_its_prefix_is(
    gw: httpx.Client, sims: list[str], routing: str | None, keeps_the_hit: bool,
) -> None:
    # A conversation's first turn (about 2,000 characters) is served on pod A. Then two
    # long prompts: the first starts with that turn (so it goes to A, with some 14,000
    # characters to prefill there), the other shares nothing (so it goes to B: 8,000).
    # While both prefill, the conversation's second turn: least-prefill sends it to B
    # (8,000 + the whole turn against 14,000 + its new part); fleet-prefill charges B the
    # least backlog (8,000) times the share of the turn B would prefill again (~95 %),
    # and keeps it on A.
    label = routing or "default"
    first = [{"role": "user", "content": f"{label} conversation " + "turn " * 1000}]
    pods: dict[str, str] = {}
    stream_pod(gw, first, routing, pods, "first")
    long_a = [*first, {"role": "user", "content": "more " * 7000}]
    long_b = [{"role": "user", "content": f"{label} unrelated " + "other " * 4000}]
    second = [*first, {"role": "user", "content": "and now?"}]
    a = pods["first"]
    wait_until(lambda: not runs_more_than(sims, 0), "both sims idle", interval=0.05)
    threads = []
    # Routed in turn, each once the one before runs on a sim (its backlog counted).
    for n, (key, messages) in enumerate((("long a", long_a), ("long b", long_b),
                                         ("second", second))):
        t = threading.Thread(target=stream_pod, args=(gw, messages, routing, pods, key))
        t.start()
        threads.append(t)
        if n < 2:
            wait_until(functools.partial(runs_more_than, sims, n), f"{key} running",
                       interval=0.05)
    for t in threads:
        t.join(timeout=60)
    assert not [p for p in pods.values() if p.startswith("error")], pods
    assert pods["long a"] == a, pods
    assert pods["long b"] != a, pods
    assert (pods["second"] == a) is keeps_the_hit, pods
