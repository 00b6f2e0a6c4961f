"""``lab validate``: replay a trace against live serving and compare with the lab's prediction.

Two forms. Here, the engine-level one (``--engine-url``): the trace's
requests are sent at their arrival times (real time) to an OpenAI-compatible
engine (vLLM or the sim started with the profile's timing), as streamed
completions with token-id prompts of the trace's lengths (no two sharing a
prefix, so no engine's prefix cache makes prefill free) and ``ignore_eos`` so
each produces exactly its output length; their TTFT and end-to-end latency
are measured at the client. The lab simulates the same trace on one replica
of the same profile (``fixed:replicas=1``), and the two are compared: TTFT
p50/p99, e2e p50/p99 and SLO attainment.

The whole-stack form (``--gateway-url``: gateway, Prometheus, the scaler's
fallback loop, pods on localkube) is ``lab.live``; it replays with
``replay`` below.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from lab.calibrate import first_serial, unique_prompt
from lab.engine import Outcome, Result, SimSettings, simulate
from lab.policies.fixed import Fixed
from lab.profiles import Profile
from lab.summary import Slo, met
from lab.traces import Trace

__all__ = ["Comparison", "Replayed", "figures", "measured_figures", "replay", "replay_requests",
           "simulated_figures", "validate"]


@dataclass(frozen=True, slots=True)
class Comparison:
    real: dict[str, float | None]
    sim: dict[str, float | None]

    def ratios(self) -> dict[str, float | None]:
        """sim / real for each figure (None where either is missing or zero)."""
        out: dict[str, float | None] = {}
        for key, real in self.real.items():
            sim = self.sim.get(key)
            out[key] = round(sim / real, 4) if real and sim is not None else None
        return out

    def to_json(self) -> dict[str, Any]:
        return {"real": self.real, "sim": self.sim, "sim_over_real": self.ratios()}


@dataclass(frozen=True, slots=True)
class Replayed:
    """One replayed request as the client saw it."""

    ttft: float
    e2e: float
    pod: str | None
    """The gateway's ``x-brix-pod`` (None from an engine, which does not name itself)."""
    late: float
    """Seconds the client sent it after its arrival time (its own event loop's lag)."""


async def _one(client: httpx.AsyncClient, url: str, model: str, *, prompt: int, output: int,
               delay: float, start: float, serial: int) -> Replayed | None:
    await asyncio.sleep(max(0.0, start + delay - time.perf_counter()))
    sent = time.perf_counter()
    pod: str | None = None
    body = {"model": model, "prompt": unique_prompt(prompt, serial),
            "max_tokens": output, "ignore_eos": True, "stream": True, "temperature": 0}
    first: float | None = None
    try:
        async with client.stream("POST", f"{url}/v1/completions", json=body) as r:
            if r.status_code != 200:
                return None
            pod = r.headers.get("x-brix-pod")
            async for line in r.aiter_lines():
                if first is None and line.startswith("data: ") and line != "data: [DONE]":
                    chunk = json.loads(line[6:])
                    if chunk.get("choices"):
                        first = time.perf_counter() - sent
    except httpx.HTTPError:
        return None
    if first is None:
        return None
    return Replayed(ttft=first, e2e=time.perf_counter() - sent, pod=pod,
                    late=sent - (start + delay))


async def _replay(url: str, model: str, trace: Trace,
                  start: float | None) -> list[Replayed | None]:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=100)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0), limits=limits) as client:
        at = time.perf_counter() + 0.5 if start is None else start
        first = first_serial()
        return await asyncio.gather(*[
            _one(client, url, model, prompt=r.prompt_tokens, output=r.output_tokens,
                 delay=r.arrival, start=at, serial=first + i)
            for i, r in enumerate(trace.requests)])


def replay(url: str, trace: Trace, model: str | None = None,
           start: float | None = None) -> list[tuple[float, float] | None]:
    """(TTFT, e2e) of each request of ``trace`` sent to ``url`` (an engine or the gateway;
    None: failed). ``start``: the ``time.perf_counter()`` of the trace's time 0 (default:
    half a second from now)."""
    return [(r.ttft, r.e2e) if r else None for r in replay_requests(url, trace, model, start)]


def replay_requests(url: str, trace: Trace, model: str | None = None,
                    start: float | None = None) -> list[Replayed | None]:
    """``replay`` with what else the client saw of each request (``Replayed``)."""
    url = url.rstrip("/")
    if model is None:
        r = httpx.get(f"{url}/v1/models", timeout=30.0)
        r.raise_for_status()
        model = str(r.json()["data"][0]["id"])
    # A loop of its own, closed here, that leaves the thread's current loop alone.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_replay(url, model, trace, start))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def figures(ttft: np.ndarray, e2e: np.ndarray, ok: np.ndarray) -> dict[str, float | None]:
    """TTFT and e2e p50/p99 (over the requests that have them) and SLO attainment."""
    def pct(values: np.ndarray, q: float) -> float | None:
        values = values[~np.isnan(values)]
        return round(float(np.percentile(values, q)), 4) if values.size else None

    return {"ttft_p50_s": pct(ttft, 50), "ttft_p99_s": pct(ttft, 99), "e2e_p50_s": pct(e2e, 50),
            "e2e_p99_s": pct(e2e, 99), "slo_attainment": round(float(ok.mean()), 4)}


def measured_figures(measured: Sequence[tuple[float, float] | None],
                     slo: Slo) -> dict[str, float | None]:
    """``figures`` of replayed requests (``replay``): a failed one (None) has no latency
    and misses the SLO."""
    ttft = np.array([m[0] if m else np.nan for m in measured])
    e2e = np.array([m[1] if m else np.nan for m in measured])
    ok = ~np.isnan(ttft) & (np.nan_to_num(ttft, nan=np.inf) <= slo.ttft)
    return figures(ttft, e2e, ok)


def simulated_figures(result: Result, slo: Slo) -> dict[str, float | None]:
    """``figures`` of the lab's run: latencies of the completed requests only."""
    ttft = np.where(result.outcome == Outcome.COMPLETED, result.ttft, np.nan)
    return figures(ttft, result.e2e, met(result, slo))


def validate(url: str, trace: Trace, profile: Profile, slo: Slo,
             measured: Sequence[tuple[float, float] | None] | None = None) -> Comparison:
    """Replay ``trace`` at ``url`` (unless ``measured`` is given) and simulate it; compare."""
    if measured is None:
        measured = replay(url, trace)
    result = simulate(trace, profile, Fixed(replicas=1),
                      SimSettings(cold_start=lambda _rng: 0.0, initial_replicas=1))
    return Comparison(real=measured_figures(measured, slo), sim=simulated_figures(result, slo))
