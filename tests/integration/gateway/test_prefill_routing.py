"""least-prefill routing through the real gateway, in front of two sim engines.

A long prompt's prefill is work the gateway has sent to a pod and not yet
seen answered: while it lasts, short requests go to the other pod, even when
that pod already runs more requests (least-request would split them). Once
the long prompt's first token came back, its pod counts as free again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from tests.helpers.gateway import start_gateway
from tests.helpers.procs import ProcessGroup
from tests.helpers.sim import start_sim

pytestmark = pytest.mark.integration

PREFILL_TOKENS_PER_S = 1000
LONG_WORDS = 5000  # about 5 s of prefill at 1,000 tokens a second


@pytest.fixture(scope="module")
def gw(module_procs: ProcessGroup) -> Iterator[httpx.Client]:
    sims = [start_sim(module_procs, name="m1", extra_args=(
        "--prefill-tokens-per-s", str(PREFILL_TOKENS_PER_S), "--decode-ms-per-token", "20",
        "--decode-ms-per-token-per-seq", "0", "--max-model-len", "16384")) for _ in range(2)]
    proc = start_gateway(module_procs, extra_args=[
        "--static-routes", ",".join(f"m1={s.url}" for s in sims)])
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
