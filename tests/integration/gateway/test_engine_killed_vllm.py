"""A real vLLM engine SIGKILLed under 100 concurrent streams through the real gateway.

The sim's version is ``test_engine_killed.py``; this one runs vLLM (the tiny
model on the CPU) started by brix's entrypoint, and kills it as a crash (or
the OOM killer, or a node's kernel) would: SIGKILL to its whole process group,
the entrypoint, vLLM's API server and its engine core process together. The
same engine is then started again on the same port, as a container restarting
in its pod; a vLLM takes tens of seconds to be ready again, so the gateway's
``--reconnect-hold`` is set above the time a start can take here.

What must hold (docs/RELIABILITY.md):

- no client hangs: each stream ends, with ``[DONE]`` or with an SSE ``error``
  event; only a stream that had already streamed tokens may end with the
  error (the gateway cannot retry what the client has partly seen), so at
  most as many as the engine was running (``--max-num-seqs``);
- the requests that had not started streaming (queued in the killed engine,
  or sent while it was down) are held by the gateway, not answered 502, and
  complete on the restarted engine; the held count goes back to 0.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from typing import Any

import httpx
import psutil
import pytest

from tests.helpers.gateway import start_gateway
from tests.helpers.procs import ProcessGroup, free_port
from tests.helpers.streams import Outcome, run_streams
from tests.helpers.vllm import SERVED_NAME, START_TIMEOUT_S, start_vllm

# The gateway holds for as long as a start may take here; the client's read
# timeout (the hang detector) is above that, so a request the gateway gave up
# on fails the test by its status, and only a stream silent past both fails it
# as a hang. The test's own timeout covers two starts and the streams.
RECONNECT_HOLD_S = START_TIMEOUT_S + 60
READ_TIMEOUT_S = RECONNECT_HOLD_S + 60
pytestmark = [pytest.mark.vllm, pytest.mark.timeout(int(2 * START_TIMEOUT_S + READ_TIMEOUT_S))]

N = 100
# 8 sequences at a time: with vLLM's default (256) the tiny model would run all
# 100 at once and the kill would leave none waiting. 256 tokens each: the tiny
# model makes tokens faster than the gateway and this client pass them on (on
# 2 cores, over 1,000 a second), so with short answers the engine had finished
# most requests while the client still read the first ones, and few were left
# waiting at the kill.
SEQS = 8
ENGINE_FLAGS = ("--max-num-seqs", str(SEQS))
BODY = {"model": SERVED_NAME, "prompt": "The gateway routes every request to",
        "max_tokens": 256, "temperature": 0, "stream": True, "ignore_eos": True}
# Kill while the engine runs a full batch and holds at least this many waiting.
WAITING_AT_KILL = 40
PENDING = re.compile(
    r'^brix_gateway_requests_pending\{model="' + re.escape(SERVED_NAME) + r'"\} (\S+)$', re.M)


def created(o: Outcome) -> int:
    """When the engine took the request (OpenAI's ``created``, whole seconds)."""
    return min(int(e["created"]) for e in o.events if isinstance(e, dict) and "created" in e)


def tokens(events: list[Any]) -> int:
    return sum(isinstance(e, dict) and "choices" in e for e in events)


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running (a zombie, dead and not yet reaped by its new parent, is gone)."""
    left = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                left.append(p)
        except psutil.NoSuchProcess:
            pass
    return left


def engine_gauge(text: str, name: str) -> float:
    m = re.search(r"^vllm:" + name + r"\{[^}]*\} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


async def pending_of(client: httpx.AsyncClient, url: str) -> float:
    m = PENDING.search((await client.get(f"{url}/metrics")).text)
    return float(m.group(1)) if m else 0.0


async def test_one_vllm_killed_and_restarted_holds_the_waiting_requests(
    procs: ProcessGroup,
) -> None:
    port = free_port()
    engine = start_vllm(procs, port=port, extra_args=ENGINE_FLAGS)
    gw = start_gateway(procs, extra_args=[
        "--static-routes", f"{SERVED_NAME}={engine.url}",
        "--reconnect-hold", str(RECONNECT_HOLD_S)])
    leader = psutil.Process(engine.proc.popen.pid)
    group = [leader, *leader.children(recursive=True)]
    # The entrypoint, vLLM's API server and its engine core at least: a kill of the
    # entrypoint alone would leave the engine running, which is no crash.
    assert len(group) >= 3, [p.cmdline() for p in group]
    names = sorted(p.name() for p in group)
    seen: dict[str, float] = {}

    def kill_and_restart() -> None:
        seen["killed_wall"] = time.time()
        engine.proc.signal(signal.SIGKILL)  # the whole process group
        engine.proc.popen.wait(10)
        deadline = time.monotonic() + 30
        while alive(group):
            assert time.monotonic() < deadline, f"still running: {alive(group)}"
            time.sleep(0.05)
        seen["dead"] = time.monotonic()
        again = start_vllm(procs, port=port, extra_args=ENGINE_FLAGS)
        seen["ready"] = time.monotonic()
        seen["pid"] = again.proc.popen.pid
        assert again.url == engine.url

    peak = 0.0
    stop_sampling = asyncio.Event()

    async def sample_pending() -> None:
        nonlocal peak
        async with httpx.AsyncClient(timeout=30) as c:
            while not stop_sampling.is_set():
                peak = max(peak, await pending_of(c, str(gw.url)))
                await asyncio.sleep(0.25)

    at_kill: dict[str, float] = {}

    async def engine_busy() -> bool:
        """A full batch running and a queue: the moment to kill (the engine's own gauges;
        this client reads the streams well behind the tiny model's pace)."""
        async with httpx.AsyncClient(timeout=30) as c:
            text = (await c.get(f"{engine.url}/metrics")).text
        at_kill["running"] = engine_gauge(text, "num_requests_running")
        at_kill["waiting"] = engine_gauge(text, "num_requests_waiting")
        return at_kill["running"] >= SEQS and at_kill["waiting"] >= WAITING_AT_KILL

    sampler = asyncio.create_task(sample_pending())
    began = time.monotonic()
    try:
        outcomes, killed_at = await run_streams(
            str(gw.url), N, kill_and_restart, body=BODY, kill_after=1.0, kill_when=engine_busy,
            read_timeout=READ_TIMEOUT_S)
    finally:
        stop_sampling.set()
        await sampler
    ended = time.monotonic()

    # Nothing refused: every request got its answer's head (none 502 once the engine died).
    assert all(o.status == 200 for o in outcomes), [o.status for o in outcomes]
    broken = [o for o in outcomes if not o.done]
    for o in broken:
        # Each ended with an error event, and only after it had streamed: a request
        # that had not, the gateway held and sent again.
        assert o.error is not None, o.events[-3:]
        assert tokens(o.events) > 0, o.events
    assert 0 < len(broken) <= SEQS, f"{len(broken)} streams broke"
    # Held, then served by the restarted engine: taken by an engine after the kill (the
    # old one was wholly dead before the new one started).
    held = [o for o in outcomes if o.done and created(o) > seen["killed_wall"]]
    assert held, "no request completed on the restarted engine"
    assert seen["pid"] != leader.pid
    assert peak > 0, "the gateway never held a request while the engine was down"
    async with httpx.AsyncClient(timeout=60) as c:
        r = await c.post(f"{gw.url}/v1/completions",
                         json={"model": SERVED_NAME, "prompt": "x", "max_tokens": 1})
        assert r.status_code == 200, r.text
        assert await pending_of(c, str(gw.url)) == 0.0
    done_before = sum(o.done and o.ended_at <= killed_at for o in outcomes)
    last_error = max(o.ended_at for o in broken) - killed_at
    print(f"\nvLLM ({len(group)} processes: {', '.join(names)}) killed "
          f"{killed_at - began:.1f} s in (engine running {at_kill['running']:g}, "
          f"waiting {at_kill['waiting']:g}): "
          f"{done_before} of {N} done before the kill, {len(broken)} "
          f"broken (error event; the last {last_error:.2f} s after the kill), {len(held)} "
          f"held (peak {peak:g}) and completed on the restarted engine; ready again "
          f"{seen['ready'] - killed_at:.1f} s after the kill, the last stream done "
          f"{max(o.ended_at for o in outcomes) - killed_at:.1f} s after it; all in "
          f"{ended - killed_at:.1f} s from the kill")
