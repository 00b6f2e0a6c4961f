"""Prefix-cache routing on real vLLM: ``python -m bench.routing.vllm [--sessions 16]``.

Two vLLM replicas on the CPU (the tiny model through ``python -m
inference.engine --backend vllm``, which turns vLLM's prefix caching on; vLLM's
CPU backend uses blocks of 128 tokens) behind one real gateway, and a
multi-turn chat workload (``bench.routing.workloads.chat``: each turn re-sends
the conversation so far, a few shared system prompts) sent once per routing
strategy, each run with its own salt in every word so that no run reuses
another's cache. The hit ratio is vLLM's own: the growth of
``vllm:prefix_cache_hits_total`` over ``vllm:prefix_cache_queries_total``
on both replicas during the run.

Goal (issue 14): with ``prefix-cache`` at least twice round-robin's hit ratio
(printed for ``fleet-prefill``, the gateway's default, and ``least-prefill`` too).
The tiny model's tokenizer is byte-level (about 12 tokens per word of this
workload), so the words per turn are few: the longest conversation stays
within the model's 2,048 tokens.

Beside the measured figures it prints what the workload allows
(``bench.routing.ceiling``, the prompts tokenized as vLLM renders them):
the hit ratio with each conversation kept on one replica, with round-robin's
placement and with random placement. With two replicas whose caches hold the
whole workload, a request lands on its conversation's replica half the time
even at random, so no routing can reach twice random placement's hit ratio.
``--kv-blocks N`` gives each replica a KV cache of N blocks
(``--num-gpu-blocks-override``), less than the workload's working set: a
placement that spreads each conversation over both replicas then makes both
hold all of it and evict, where one that keeps it together lets two caches
hold twice as much; what the workload allows is then computed with LRU
eviction. ``--ceiling-only`` prints those figures without starting vLLM.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.machine import cpu_model
from bench.routing import workloads as wl
from bench.routing.__main__ import pct, prefix_counters, replay, salted, say_failures, ttfts_ms
from bench.routing.ceiling import Prompt, placements
from tests.helpers.gateway import start_gateway
from tests.helpers.procs import ProcessGroup
from tests.helpers.vllm import SERVED_NAME, start_vllm, tiny_model_dir

REPLICAS = 2  # the issue's; --replicas for more
CACHE_AWARE = ("prefix-cache", "least-prefill", "fleet-prefill")
"""The routings whose hit ratio is read against round-robin's."""
STRATEGIES = ("round-robin", "least-request", *CACHE_AWARE)
GOAL = 2.0  # prefix-cache's hit ratio over round-robin's, at least
VLLM_CPU_BLOCK = 128  # vLLM's CPU backend's KV block size (its default there)
MIN_KV_BLOCKS = 16  # one sequence of the tiny model's 2,048 tokens; vLLM refuses fewer


@dataclass(frozen=True, slots=True)
class Run:
    routing: str
    requests: int
    errors: int
    hit_ratio: float
    ttft_p50_ms: float
    ttft_p99_ms: float


@dataclass(frozen=True, slots=True)
class Shape:
    """The multi-turn workload's shape (``workloads.chat``)."""

    sessions: int = 16
    turns: int = 6
    rate: float = 2.0
    replicas: int = REPLICAS
    system_prompts: int = 4
    system_words: int = 12
    turn_words: int = 12
    answer_words: int = 12
    kv_blocks: int | None = None
    """Each replica's KV cache in blocks of ``VLLM_CPU_BLOCK`` tokens; None: vLLM's own
    (far more than the workload needs)."""


def workload(shape: Shape) -> list[wl.Request]:
    return wl.chat(sessions=shape.sessions, turns=shape.turns, rate=shape.rate,
                   system_prompts=shape.system_prompts, system_words=shape.system_words,
                   turn_words=shape.turn_words, answer_words=shape.answer_words, max_tokens=4,
                   salt="")


def allowed(requests: list[wl.Request], model_dir: Path, replicas: int,
            kv_blocks: int | None = None) -> dict[str, float]:
    """The hit ratios the workload allows (``bench.routing.ceiling``) on ``replicas`` with
    caches of ``kv_blocks``, its prompts rendered and tokenized as vLLM does for the tiny
    model."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    prompts = []
    for r in requests:
        text = tok.apply_chat_template(list(r.messages), tokenize=False,
                                       add_generation_prompt=True)
        prompts.append(Prompt(conversation=r.conversation if r.conversation is not None else -1,
                              token_ids=tuple(tok(text, add_special_tokens=False).input_ids)))
    return placements(prompts, replicas=replicas, block_size=VLLM_CPU_BLOCK,
                      cache_blocks=kv_blocks)


def vllm_args(shape: Shape) -> list[str]:
    """The flags each replica's vLLM gets for ``shape``."""
    return [] if shape.kv_blocks is None else ["--num-gpu-blocks-override", str(shape.kv_blocks)]


def measure(shape: Shape, log_dir: Path,
            strategies: tuple[str, ...] = STRATEGIES) -> list[Run]:
    """Start the replicas and the gateway, replay the workload per strategy, stop them."""
    requests = workload(shape)
    procs = ProcessGroup(log_dir)
    runs = []
    try:
        engines = [start_vllm(procs, extra_args=vllm_args(shape)) for _ in range(shape.replicas)]
        gw = start_gateway(procs, extra_args=[
            "--static-routes", ",".join(f"{SERVED_NAME}={e.url}" for e in engines),
            "--log-level", "warning", "--seed", "1",
        ])
        assert gw.url
        for k, routing in enumerate(strategies):
            h0, q0 = prefix_counters([e.proc for e in engines])
            results, _ = asyncio.run(replay(gw.url, routing, salted(requests, f"v{k}"),
                                            SERVED_NAME))
            h1, q1 = prefix_counters([e.proc for e in engines])
            ok = [r for r in results if r.ok]
            say_failures(routing, results)
            ttft = ttfts_ms(results)
            runs.append(Run(routing=routing, requests=len(results),
                            errors=len(results) - len(ok),
                            hit_ratio=(h1 - h0) / (q1 - q0) if q1 > q0 else float("nan"),
                            ttft_p50_ms=pct(ttft, 50), ttft_p99_ms=pct(ttft, 99)))
            print(runs[-1], file=sys.stderr, flush=True)
    finally:
        procs.stop_all()
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.routing.vllm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    d = Shape()
    parser.add_argument("--sessions", type=int, default=d.sessions)
    parser.add_argument("--turns", type=int, default=d.turns)
    parser.add_argument("--rate", type=float, default=d.rate, help="requests per second in all")
    parser.add_argument("--replicas", type=int, default=d.replicas,
                        help="vLLM replicas (each takes about 3 GB and a CPU)")
    parser.add_argument("--system-prompts", type=int, default=d.system_prompts,
                        help="distinct system prompts, shared by the sessions in turn")
    parser.add_argument("--system-words", type=int, default=d.system_words)
    parser.add_argument("--turn-words", type=int, default=d.turn_words)
    parser.add_argument("--answer-words", type=int, default=d.answer_words)
    parser.add_argument("--kv-blocks", type=int, default=None,
                        help=f"each replica's KV cache in blocks of {VLLM_CPU_BLOCK} tokens "
                             "(default: vLLM's own, which holds the whole workload)")
    parser.add_argument("--ceiling-only", action="store_true",
                        help="print what the workload allows; start no engine")
    args = parser.parse_args(argv)
    if args.sessions < 1 or args.turns < 2 or not args.rate > 0 or args.replicas < 1:
        parser.error("need --sessions >= 1, --turns >= 2, --rate > 0 and --replicas >= 1")
    if min(args.system_prompts, args.system_words, args.turn_words, args.answer_words) < 1:
        parser.error("need --system-prompts, --system-words, --turn-words, --answer-words >= 1")
    if args.kv_blocks is not None and args.kv_blocks < MIN_KV_BLOCKS:
        parser.error(f"need --kv-blocks >= {MIN_KV_BLOCKS} (the tiny model's 2,048 tokens)")
    shape = Shape(sessions=args.sessions, turns=args.turns, rate=args.rate, replicas=args.replicas,
                  system_prompts=args.system_prompts, system_words=args.system_words,
                  turn_words=args.turn_words, answer_words=args.answer_words,
                  kv_blocks=args.kv_blocks)
    command = (f"`python -m bench.routing.vllm --replicas {shape.replicas} "
               f"--sessions {shape.sessions} --turns {shape.turns} "
               f"--rate {shape.rate:g} --system-prompts {shape.system_prompts} --system-words "
               f"{shape.system_words} --turn-words {shape.turn_words} --answer-words "
               f"{shape.answer_words}"
               + ("" if shape.kv_blocks is None else f" --kv-blocks {shape.kv_blocks}") + "`")
    ceiling = allowed(salted(workload(shape), "v0"), tiny_model_dir(), shape.replicas,
                      shape.kv_blocks)
    limits = ", ".join(f"{k} {v:.3f}" for k, v in ceiling.items())
    if args.ceiling_only:
        print(f"- {command}: hit ratios the workload allows on {shape.replicas} replicas: "
              f"{limits}; "
              f"conversations kept together over round-robin "
              f"{ceiling['sticky'] / ceiling['round-robin']:.2f}, over random "
              f"{ceiling['sticky'] / ceiling['random']:.2f}")
        return 0
    started = datetime.datetime.now(datetime.UTC)
    load = os.getloadavg()[0]
    log_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-routing-vllm-{os.getpid()}"
    log_dir.mkdir(parents=True, exist_ok=True)
    runs = measure(shape, log_dir)
    print(f"- date: {started:%Y-%m-%d %H:%M} UTC; machine: {os.cpu_count()} CPUs, "
          f"{cpu_model()}; load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} "
          "at the end")
    print(f"- command: {command}")
    print(f"- what the workload allows (hit ratio, computed, not measured): {limits}")
    print("")
    print("| routing | requests | errors | hit ratio (vLLM) | TTFT p50 ms | TTFT p99 ms |")
    print("|---|---|---|---|---|---|")
    for r in runs:
        print(f"| {r.routing} | {r.requests} | {r.errors} | {r.hit_ratio:.3f} | "
              f"{r.ttft_p50_ms:.0f} | {r.ttft_p99_ms:.0f} |")
    by = {r.routing: r.hit_ratio for r in runs}
    print("")
    for name in CACHE_AWARE:
        ratio = by[name] / by["round-robin"] if by["round-robin"] > 0 else float("inf")
        print(f"{name} / round-robin hit ratio: {ratio:.3f} (goal >= {GOAL:g}: "
              f"{'met' if ratio >= GOAL else 'not met'})")
    print(f"The workload allows {ceiling['sticky'] / ceiling['round-robin']:.2f} over "
          f"round-robin's placement, {ceiling['sticky'] / ceiling['random']:.2f} over random "
          "placement.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
