"""Keep an engine busy: ``concurrency`` streaming completions in a loop, for ``duration`` s.

``python -m bench.sidecar.load --url URL --model NAME --concurrency 200 --duration 30``
Prints one line with the requests and tokens it completed.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx


async def _worker(client: httpx.AsyncClient, url: str, model: str, stop_at: float,
                  counts: list[int], max_tokens: int) -> None:
    body = {"model": model, "prompt": "benchmark the sidecar", "max_tokens": max_tokens,
            "ignore_eos": True, "stream": True}
    while time.monotonic() < stop_at:
        async with client.stream("POST", f"{url}/v1/completions", json=body) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    counts[1] += 1
        counts[0] += 1


async def run(url: str, model: str, concurrency: int, duration: float, max_tokens: int) -> None:
    counts = [0, 0]
    stop_at = time.monotonic() + duration
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        print("load started", flush=True)
        await asyncio.gather(*(_worker(client, url, model, stop_at, counts, max_tokens)
                               for _ in range(concurrency)))
    print(f"load done: {counts[0]} requests, {counts[1]} stream chunks", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--max-tokens", type=int, default=64)
    a = p.parse_args()
    asyncio.run(run(a.url, a.model, a.concurrency, a.duration, a.max_tokens))


if __name__ == "__main__":
    main()
