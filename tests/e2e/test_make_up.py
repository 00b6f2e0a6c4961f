"""`make up` as a user runs it: in the background, the ready line, a chat
completion through the gateway, SIGTERM, and nothing of it left running."""

from __future__ import annotations

import os
import re
import signal
import time

import httpx
import pytest

from tests.helpers.procs import REPO, ProcessGroup
from tests.helpers.stack import stack_processes

# The stack includes tiny-llama on a real vLLM; `make up` is waited for up to 600 s,
# its answers and its stop up to 390 s more.
pytestmark = [pytest.mark.vllm, pytest.mark.timeout(1200)]


def test_make_up_serves_then_stops_cleanly(procs: ProcessGroup) -> None:
    assert not stack_processes(REPO), "a brix up of this checkout is already running"
    for port in (6443, 9090, 8000):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
    env = {k: v for k, v in os.environ.items() if k != "MAKEFLAGS"}
    proc = procs.start(["make", "up"], name="make-up", env=env,
                       ready=re.compile(r"brix is up: gateway at (?P<url>http://\S+)"),
                       timeout=600)
    assert proc.url == "http://127.0.0.1:8000"
    r = httpx.post(f"{proc.url}/v1/chat/completions", timeout=120, json={
        "model": "sim-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]
    r = httpx.post(f"{proc.url}/v1/chat/completions", timeout=120, json={
        "model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    assert r.status_code == 200, r.text

    proc.signal(signal.SIGTERM)
    proc.popen.wait(120)
    assert "brix up: stopped" in proc.output()
    deadline = time.monotonic() + 30
    while (left := stack_processes(REPO)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"left running: {[p.info['cmdline'] for p in left]}"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{proc.url}/healthz", timeout=1)
