"""Routing benchmark: ``python -m bench.routing [--duration 15] [--write FILE]``.

Results are kept in bench/routing/RESULTS.md (``--write bench/routing/RESULTS.md``).

Four sim replicas (``python -m inference.sim``, with its prefix cache when the
sim has one: ``--enable-prefix-caching`` in its --help) behind one real
gateway (``python -m gateway`` with ``gateway/routing.example.yaml``), and an
open-loop client (aiohttp, streaming chat completions) that sends each
workload of ``bench.routing.workloads`` once per strategy and profile, with the
arrival times the workload gives. Per run: TTFT p50/p90/p99 (first content
chunk), end-to-end p99, throughput (requests and output tokens per second
from the first send to the last answer), errors, and the prefix-cache hit
ratio (the sims' ``vllm:prefix_cache_hits`` over ``_queries``, the run's
increase).

Capacity and rate: the sims prefill ``PREFILL`` tokens per second, so one
replica prefills at most ``PREFILL / mean prompt tokens`` requests per second
when nothing is cached (decoding shares a step with prefill and adds little
at these batch sizes). Each workload's rate is ``--utilisation`` (0.75) of
four times that: three quarters of the fleet's capacity without a cache.

Goals (issue 14): on A (Mooncake, chat), the winning profile's P99 TTFT at
least 79 % below round-robin's and 50 % below least-request's, throughput not
lower; on B (Azure, nothing shared) within 5 % of least-request.

``--floor-only`` starts nothing and prints each workload's TTFT floor: every
request alone on an idle sim whose cache holds every earlier prompt
(``bench.routing.ceiling.ttft_floors``); no routing's percentiles are under it.

Every run has a fleet of its own (the sims and a gateway, started for it),
and within a repeat every routing gets the same requests, words included:
its runs differ only in their routing and the machine's moment. (Until
2026-12-06 one fleet served every run in turn, each run's words salted apart
to keep caches from carrying over; the same routing at two positions of one
invocation then differed in its chat p99 by up to a quarter, more than most
routings differ.) ``--repeat N`` runs each routing N times, each repeat with
other words and the order rotated, and adds each routing's median and range.
``--workload`` picks workloads.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.machine import cpu_model
from bench.routing import workloads as wl
from bench.routing.ceiling import Prompt, ttft_floors
from inference.sim.protocol import render_messages
from inference.sim.settings import SimSettings
from inference.sim.text import text_token_ids
from lab.profiles import Profile, ProfileError
from tests.helpers.gateway import start_gateway
from tests.helpers.procs import REPO, Proc, ProcessGroup
from tests.helpers.sim import start_sim

REPLICAS = 4
PREFILL = 1000.0  # prompt tokens per second per replica
DEFAULT_UTILISATION = 0.75
"""The offered load by default: three quarters of the fleet's prefill capacity."""
DECODE_MS = 10.0
BLOCK_WORDS = 16  # tokens per Mooncake block (512 in the trace): prompts 1/32 as long
OUTPUT_SCALE = 1 / 16
# Azure's prompts are 1/14 of Mooncake's: scaled so both have a few hundred tokens.
AZURE_SCALE = 0.4
AZURE_OUTPUT_SCALE = 1 / 8
# The sims' token budget per step (--max-num-batched-tokens, chunked prefill on as vLLM's
# default): vLLM's 8,192 on an H100 scaled as the Mooncake prompts are (1/32), so a long
# prompt takes as many chunks as it would there.
BUDGET = 256
SIM_BLOCK_SIZE = SimSettings().block_size  # the sims' KV block (their default --block-size)
STRATEGIES = ("round-robin", "random", "least-request", "least-queue", "prefix-affinity")
CONFIG = REPO / "gateway" / "routing.example.yaml"


@dataclass(frozen=True, slots=True)
class Result:
    ok: bool
    """The stream ended with ``[DONE]`` and no error."""
    ttft: float
    """Seconds to the first content token; -1 for an answer with none (a tiny model's few
    tokens can all be pieces of one character, which the engine holds back)."""
    e2e: float
    tokens: int
    end: float
    why: str = ""
    """Why it failed (not ``ok``): the status and body, the error event, or the exception."""


def say_failures(routing: str, results: list[Result]) -> None:
    """Each failed request's reason, and the answers with no content token (no TTFT), on
    standard error (the table counts the failures)."""
    for r in results:
        if not r.ok:
            print(f"{routing}: a request failed: {r.why}", file=sys.stderr, flush=True)
    if empty := sum(r.ok and r.ttft < 0 for r in results):
        print(f"{routing}: {empty} answer(s) had no content token (no TTFT)", file=sys.stderr,
              flush=True)


def ttfts_ms(results: list[Result]) -> list[float]:
    """The TTFTs, in milliseconds, of the answers that had a content token."""
    return [1000 * r.ttft for r in results if r.ok and r.ttft >= 0]


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


async def one(session: aiohttp.ClientSession, url: str, routing: str, req: wl.Request,
              salt_model: str) -> Result:
    body = {"model": salt_model, "messages": list(req.messages), "max_tokens": req.max_tokens,
            "stream": True, "ignore_eos": True}
    t0 = time.perf_counter()
    ttft = -1.0
    tokens = 0
    done = False
    try:
        async with session.post(f"{url}/v1/chat/completions", json=body,
                                headers={"x-brix-routing": routing}) as r:
            if r.status != 200:
                text = (await r.read()).decode(errors="replace")
                return Result(False, 0, 0, 0, time.perf_counter(), f"HTTP {r.status}: {text}")
            async for line in r.content:
                if done or not line.startswith(b"data: "):
                    continue
                if line.startswith(b"data: [DONE]"):
                    done = True
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    return Result(False, 0, 0, tokens, time.perf_counter(),
                                  f"error event after {tokens} tokens: {chunk['error']}")
                if any(c.get("delta", {}).get("content") for c in chunk.get("choices", ())):
                    tokens += 1
                    if ttft < 0:
                        ttft = time.perf_counter() - t0
    except (aiohttp.ClientError, TimeoutError) as e:
        return Result(False, 0, 0, tokens, time.perf_counter(),
                      f"after {tokens} tokens: {type(e).__name__}: {e}")
    end = time.perf_counter()
    if not done:
        return Result(False, 0, 0, tokens, end, f"the stream ended after {tokens} tokens "
                      "without [DONE]")
    return Result(True, ttft, end - t0, tokens, end)


async def replay(url: str, routing: str, requests: list[wl.Request], model: str,
                 ) -> tuple[list[Result], float]:
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=timeout) as session:
        start = time.perf_counter()
        tasks = []
        for req in requests:
            delay = start + req.at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, url, routing, req, model)))
        results = await asyncio.gather(*tasks)
    return list(results), start


def prefix_counters(sims: list[Proc]) -> tuple[float, float]:
    """(hits, queries) summed over the sims, in tokens (0, 0 where the sim has none)."""
    hits = queries = 0.0
    for sim in sims:
        text = httpx.get(f"{sim.url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name in ("vllm:prefix_cache_hits_total", "vllm:prefix_cache_hits"):
                    hits += s.value
                elif s.name in ("vllm:prefix_cache_queries_total", "vllm:prefix_cache_queries"):
                    queries += s.value
    return hits, queries


def sim_has_prefix_cache() -> bool:
    out = subprocess.run([sys.executable, "-m", "inference.sim", "--help"], capture_output=True,
                         text=True, check=True, cwd=REPO).stdout
    return "--enable-prefix-caching" in out


def profiles() -> list[str]:
    from gateway.routing_config import load_routing_config

    return list(load_routing_config(CONFIG).profiles)


def _at_rate(make: Callable[[int, float], list[wl.Request]], fleet: float,
             duration: float) -> list[wl.Request]:
    """Requests at ``fleet`` prompt tokens per second for about ``duration`` seconds.

    The rate follows from the mean prompt of the requests themselves, so a
    first guess is refined twice (the sample changes with the count).
    """
    reqs = make(50, 1.0)
    for _ in range(3):
        rate = fleet / wl.mean_prompt_tokens(reqs)
        reqs = make(max(10, round(rate * duration)), rate)
    return reqs


WORKLOADS = {"mooncake": "A: Mooncake conversation", "chat": "A: multi-turn chat",
             "azure": "B: Azure conversation"}
"""``--workload``'s names for the workloads, and the names the tables give them."""


def _makers() -> dict[str, Callable[[int, float], list[wl.Request]]]:
    """Each workload's request maker (``n`` requests at ``rate``), by ``WORKLOADS`` name;
    a trace is read once, when its workload is first made."""
    turns = 6
    mooncake_rows = functools.cache(wl.load_mooncake)
    azure_rows = functools.cache(wl.load_azure)
    return {
        "mooncake": lambda n, rate: wl.mooncake(
            mooncake_rows(), n=n, rate=rate, block_words=BLOCK_WORDS,
            output_scale=OUTPUT_SCALE, salt=""),
        "chat": lambda n, rate: wl.chat(
            sessions=max(2, round(n / turns)), turns=turns, rate=rate, system_prompts=4,
            system_words=400, turn_words=40, answer_words=60, max_tokens=16, salt=""),
        "azure": lambda n, rate: wl.azure(
            azure_rows(), n=n, rate=rate, token_scale=AZURE_SCALE,
            output_scale=AZURE_OUTPUT_SCALE, salt=""),
    }


def build_workloads(duration: float, utilisation: float,
                    only: Sequence[str] | None = None) -> dict[str, list[wl.Request]]:
    """Each workload's requests for about ``duration`` seconds at its rate, by the name the
    tables give it (those of ``only``, ``WORKLOADS``' short names, if given)."""
    fleet = REPLICAS * PREFILL * utilisation  # prompt tokens per second the fleet is offered
    makers = _makers()
    return {WORKLOADS[k]: _at_rate(makers[k], fleet, duration) for k in only or WORKLOADS}


def salted(requests: list[wl.Request], salt: str) -> list[wl.Request]:
    """The same requests with every word prefixed by ``salt``: other words of the same
    lengths, which share no prompt text with another salt's."""
    return [wl.Request(at=r.at, max_tokens=r.max_tokens, prompt_tokens=r.prompt_tokens,
                       conversation=r.conversation,
                       messages=tuple({"role": m["role"], "content": " ".join(
                           salt + w for w in m["content"].split())} for m in r.messages))
            for r in requests]


def sim_profile(*, chunked: bool, budget: int | None) -> Profile:
    """The benchmark's sims as a timing profile (``lab.profiles``): what ``sim_args`` starts
    them with, and what the TTFT floors step through. ``ProfileError`` for settings vLLM
    (and the sim) would refuse."""
    return Profile(name="bench-routing-sim", prefill_tokens_per_s=PREFILL,
                   decode_ms_per_token=DECODE_MS, decode_ms_per_token_per_seq=0.05,
                   max_num_seqs=SimSettings().max_num_seqs, kv_cache_tokens=65536,
                   max_model_len=16384, max_num_batched_tokens=budget,
                   enable_chunked_prefill=chunked)


def sim_args(profile: Profile, *, cache: bool) -> list[str]:
    """``python -m inference.sim``'s flags for a sim of ``profile`` (prefix caching if
    ``cache``; the sims' own default number of sequences)."""
    return ["--prefill-tokens-per-s", str(profile.prefill_tokens_per_s),
            "--decode-ms-per-token", str(profile.decode_ms_per_token),
            "--decode-ms-per-token-per-seq", str(profile.decode_ms_per_token_per_seq),
            "--max-model-len", str(profile.max_model_len),
            "--kv-cache-tokens", str(profile.kv_cache_tokens), "--log-level", "warning",
            *(["--enable-prefix-caching"] if cache else []),
            "--enable-chunked-prefill" if profile.enable_chunked_prefill
            else "--no-enable-chunked-prefill",
            *(["--max-num-batched-tokens", str(profile.max_num_batched_tokens)]
              if profile.max_num_batched_tokens is not None else [])]


def floors(duration: float, utilisation: float, profile: Profile,
           workloads: Sequence[str] | None = None) -> list[str]:
    """Each workload's TTFT floor (``bench.routing.ceiling.ttft_floors``) on sims of
    ``profile``: no routing's p50, p90 or p99 is under these; nothing is started."""
    lines = ["| workload | requests | floor p50 ms | floor p90 ms | floor p99 ms | floor max ms "
             "| longest prompt (tokens) |", "|---|---|---|---|---|---|---|"]
    for name, requests in build_workloads(duration, utilisation, workloads).items():
        prompts = [Prompt(conversation=r.conversation or 0,
                          token_ids=text_token_ids(render_messages(list(r.messages))))
                   for r in requests]
        best = [t * 1e3 for t in ttft_floors(prompts, profile, block_size=SIM_BLOCK_SIZE)]
        lines.append(f"| {name} | {len(requests)} | {pct(best, 50):.0f} | {pct(best, 90):.0f} "
                     f"| {pct(best, 99):.0f} | {max(best):.0f} "
                     f"| {max(len(p.token_ids) for p in prompts)} |")
    return lines


def schedule(strategies: Sequence[str], repeats: int) -> list[tuple[int, str]]:
    """The runs of one workload in order, as (repeat, routing): each repeat rotates the
    order by one, so that over ``len(strategies)`` repeats every routing runs once at
    every position (no routing always meets the machine at the same point of its drift)."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    out: list[tuple[int, str]] = []
    for rep in range(repeats):
        k = rep % len(strategies)
        out += [(rep, s) for s in [*strategies[k:], *strategies[:k]]]
    return out


@dataclass(frozen=True, slots=True)
class Measured:
    workload: str
    routing: str
    ttft_p50_ms: float
    ttft_p99_ms: float
    hit_ratio: float | None


def spread(runs: Sequence[Measured]) -> list[str]:
    """Per workload and routing over its repeats: the median and the range of the TTFT
    p99, the median p50 and hit ratio (markdown rows, in the order first run)."""
    groups: dict[tuple[str, str], list[Measured]] = {}
    for m in runs:
        groups.setdefault((m.workload, m.routing), []).append(m)
    lines = ["| workload | routing | runs | TTFT p99 ms, median [range] | TTFT p50 ms, median "
             "| hit ratio, median |", "|---|---|---|---|---|---|"]
    for (workload, routing), ms in groups.items():
        p99 = [m.ttft_p99_ms for m in ms]
        hits = [m.hit_ratio for m in ms if m.hit_ratio is not None]
        lines.append(f"| {workload} | {routing} | {len(ms)} | {statistics.median(p99):.0f} "
                     f"[{min(p99):.0f}-{max(p99):.0f}] "
                     f"| {statistics.median(m.ttft_p50_ms for m in ms):.0f} "
                     f"| {f'{statistics.median(hits):.2f}' if hits else 'n/a'} |")
    return lines


@contextmanager
def fleet(log_dir: Path, sim_flags: Sequence[str]) -> Iterator[tuple[list[Proc], str]]:
    """A fresh fleet for one run: the sims and a gateway in front of them (its URL);
    stopped on exit. Nothing of a run (caches, the gateway's index and tie-breaks) is
    left for the next."""
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = ProcessGroup(log_dir)
    try:
        sims = [start_sim(procs, name="m1", extra_args=sim_flags) for _ in range(REPLICAS)]
        gw = start_gateway(procs, extra_args=[
            "--static-routes", ",".join(f"m1={s.url}" for s in sims),
            "--routing-config", str(CONFIG), "--log-level", "warning", "--seed", "1",
        ])
        assert gw.url
        yield sims, gw.url
    finally:
        procs.stop_all()


def run(duration: float, utilisation: float, only: list[str] | None, profile: Profile,
        workloads: Sequence[str] | None = None, repeats: int = 1) -> list[str]:
    cache = sim_has_prefix_cache()
    args = sim_args(profile, cache=cache)
    strategies = only or [*STRATEGIES, *profiles()]
    loads = build_workloads(duration, utilisation, workloads)
    lines = [f"- sims: {REPLICAS} x `python -m inference.sim {' '.join(args)}`; "
             f"prefix cache in the sim: {'yes' if cache else 'no (the sim has none yet)'}",
             f"- rates: {utilisation:.0%} of the fleet's prefill capacity without a cache; "
             f"{duration:g} s of arrivals per run"
             + "; every run on a fleet of its own, started for it"
             + (f"; each routing {repeats} times, the order rotated each time" if repeats > 1
                else ""), ""]
    measured: list[Measured] = []
    head = ("| workload | routing | requests | rate req/s | TTFT p50 ms | TTFT p90 ms "
            "| TTFT p99 ms | e2e p99 ms | throughput req/s | output tok/s | hit ratio "
            "| errors |")
    lines += [head, "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    log_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-routing-{os.getpid()}"
    for n, (name, requests) in enumerate(loads.items()):
        rate = (len(requests) - 1) / max(1e-9, requests[-1].at)
        for rep, routing in schedule(strategies, repeats):
            # Within a repeat every routing gets the same words; another repeat, others.
            reqs = salted(requests, f"r{n}p{rep}")
            with fleet(log_dir / f"{n}-{rep}-{routing}", args) as (sims, url):
                results, start = asyncio.run(replay(url, routing, reqs, "m1"))
                hits, queries = prefix_counters(sims)
            ok = [r for r in results if r.ok]
            say_failures(routing, results)
            span = max((r.end for r in ok), default=start) - start
            ttft = ttfts_ms(results)
            measured.append(Measured(name, routing, pct(ttft, 50), pct(ttft, 99),
                                     hits / queries if queries else None))
            label = routing if repeats == 1 else f"{routing} #{rep + 1}"
            lines.append(
                f"| {name} | {label} | {len(results)} | {rate:.2f} | {pct(ttft, 50):.0f} "
                f"| {pct(ttft, 90):.0f} | {pct(ttft, 99):.0f} "
                f"| {pct([1000 * r.e2e for r in ok], 99):.0f} "
                f"| {len(ok) / span if span > 0 else 0:.2f} "
                f"| {sum(r.tokens for r in ok) / span if span > 0 else 0:.0f} "
                f"| {f'{hits / queries:.2f}' if queries else 'n/a'} "
                f"| {len(results) - len(ok)} |")
            print(lines[-1], flush=True)
    if repeats > 1:
        lines += ["", "Over the repeats:", "", *spread(measured)]
    return lines


def command_line(args: argparse.Namespace) -> str:
    """The command that gives these results: every setting that changes them."""
    words = ["python -m bench.routing", f"--duration {args.duration:g}"]
    if args.utilisation != DEFAULT_UTILISATION:
        words.append(f"--utilisation {args.utilisation:g}")
    if args.no_chunked_prefill:
        words.append("--no-chunked-prefill")
    words.append(f"--max-num-batched-tokens {args.max_num_batched_tokens}")
    words += [f"--routing {r}" for r in args.routing or ()]
    words += [f"--workload {w}" for w in args.workload or ()]
    if args.repeat != 1:
        words.append(f"--repeat {args.repeat}")
    return " ".join(words)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.routing", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=15.0,
                        help="Seconds of arrivals per workload and strategy.")
    parser.add_argument("--utilisation", type=float, default=DEFAULT_UTILISATION,
                        help="Offered load as a share of the fleet's prefill capacity.")
    parser.add_argument("--routing", action="append",
                        help="Only these strategies or profiles (repeatable).")
    parser.add_argument("--workload", action="append", choices=sorted(WORKLOADS),
                        help="Only these workloads (repeatable; default: all three).")
    parser.add_argument("--repeat", type=int, default=1,
                        help="Run each routing this many times, rotating their order each "
                        "time, and add each one's median and range.")
    parser.add_argument("--write", type=Path, help="Write the results (markdown) here.")
    parser.add_argument("--max-num-batched-tokens", type=int, default=BUDGET,
                        help="The sims' token budget per step (0: the sims' default, vLLM's).")
    parser.add_argument("--floor-only", action="store_true",
                        help="Print each workload's TTFT floor (every request alone on an idle "
                        "sim holding every earlier prompt) and start nothing.")
    parser.add_argument("--no-chunked-prefill", action="store_true",
                        help="The sims prefill each prompt whole (with no budget given, "
                        "vLLM's rule makes the budget the longest prompt).")
    args = parser.parse_args(argv)
    if args.max_num_batched_tokens < 0:
        parser.error("--max-num-batched-tokens must be >= 0")
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    try:
        profile = sim_profile(chunked=not args.no_chunked_prefill,
                              budget=args.max_num_batched_tokens or None)
    except ProfileError as e:
        parser.error(str(e))
    if args.floor_only:
        print("\n".join(floors(args.duration, args.utilisation, profile, args.workload)))
        return 0
    started = datetime.datetime.now(datetime.UTC)
    load = os.getloadavg()[0]
    table = run(args.duration, args.utilisation, args.routing, profile, args.workload,
                args.repeat)
    text = "\n".join([
        "# Routing benchmark", "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC",
        f"- machine: {os.cpu_count()} CPUs, {cpu_model()}; load average {load:.1f} when it "
        f"started, {os.getloadavg()[0]:.1f} at the end (the machine is shared)",
        f"- command: `{command_line(args)}`", "", *table, ""])
    print(text)
    if args.write:
        notes = ""
        if args.write.exists() and "<!-- notes -->" in args.write.read_text():
            notes = args.write.read_text().split("<!-- notes -->", 1)[1]
        args.write.write_text(text + "\n<!-- notes -->" + notes if notes else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
