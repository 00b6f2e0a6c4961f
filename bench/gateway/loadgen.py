"""A small asyncio load generator, run as its own process (not the gateway's code path).

It speaks HTTP/1.1 over raw asyncio streams (keep-alive, chunked bodies) so
that the client costs little next to what it measures. Two modes, each
printing one JSON object on stdout:

- ``stream``: ``--concurrency`` connections each send streaming completions
  back to back for ``--duration`` seconds; reports time to the first body
  byte (TTFB) and to the end of each stream.
- ``mix``: non-streaming completions, a share ``--long-share`` of them long
  (``--long-tokens``), the rest short; reports latency per class. With
  ``--routing`` the requests carry ``x-brix-routing``.

Usage: ``python -m bench.gateway.loadgen stream --url http://127.0.0.1:8000 ...``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from urllib.parse import urlsplit


class Conn:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, path: str, body: bytes, headers: dict[str, str],
                      ) -> tuple[int, float, float]:
        """(status, seconds to the first body byte, seconds to the end)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head = (f"POST {path} HTTP/1.1\r\nhost: {self.host}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n{extra}\r\n").encode()
        start = time.perf_counter()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("closed")
        status = int(status_line.split()[1])
        length = None
        chunked = False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        first = None
        if chunked:
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readline()
                    break
                await self.reader.readexactly(size)
                if first is None:
                    first = time.perf_counter() - start
                await self.reader.readexactly(2)
        elif length:
            await self.reader.readexactly(1)
            first = time.perf_counter() - start
            await self.reader.readexactly(length - 1)
        end = time.perf_counter() - start
        return status, first if first is not None else end, end

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50_ms": pct(values, 50) * 1000, "p99_ms": pct(values, 99) * 1000,
            "max_ms": (max(values) if values else float("nan")) * 1000}


async def run_stream(args: argparse.Namespace) -> dict[str, object]:
    url = urlsplit(args.url)
    body = json.dumps({"model": args.model, "prompt": "Tell me a story.", "stream": True,
                       "max_tokens": args.tokens, "ignore_eos": True}).encode()
    ttfb: list[float] = []
    total: list[float] = []
    errors = 0
    deadline = time.perf_counter() + args.duration

    async def worker() -> None:
        nonlocal errors
        conn = Conn(url.hostname or "127.0.0.1", url.port or 80)
        try:
            while time.perf_counter() < deadline:
                try:
                    status, first, end = await conn.request("/v1/completions", body, {})
                except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError):
                    errors += 1
                    conn.close()
                    conn = Conn(url.hostname or "127.0.0.1", url.port or 80)
                    continue
                if status != 200:
                    errors += 1
                    continue
                ttfb.append(first)
                total.append(end)
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    return {"ttfb": summary(ttfb), "total": summary(total), "errors": errors}


async def run_mix(args: argparse.Namespace) -> dict[str, object]:
    url = urlsplit(args.url)
    rng = random.Random(args.seed)
    headers = {"x-brix-routing": args.routing} if args.routing else {}
    latency: dict[str, list[float]] = {"short": [], "long": []}
    errors = 0
    deadline = time.perf_counter() + args.duration

    async def worker() -> None:
        nonlocal errors
        conn = Conn(url.hostname or "127.0.0.1", url.port or 80)
        try:
            while time.perf_counter() < deadline:
                kind = "long" if rng.random() < args.long_share else "short"
                tokens = args.long_tokens if kind == "long" else args.tokens
                body = json.dumps({"model": args.model, "prompt": f"req {rng.random()}",
                                   "max_tokens": tokens, "ignore_eos": True}).encode()
                try:
                    status, _first, end = await conn.request("/v1/completions", body, headers)
                except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError):
                    errors += 1
                    conn.close()
                    conn = Conn(url.hostname or "127.0.0.1", url.port or 80)
                    continue
                if status != 200:
                    errors += 1
                    continue
                latency[kind].append(end)
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    return {"short": summary(latency["short"]), "long": summary(latency["long"]),
            "all": summary(latency["short"] + latency["long"]), "errors": errors}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway.loadgen")
    parser.add_argument("mode", choices=["stream", "mix"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", default="m1")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--long-tokens", type=int, default=200)
    parser.add_argument("--long-share", type=float, default=0.1)
    parser.add_argument("--routing", default=None)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    run = run_stream if args.mode == "stream" else run_mix
    print(json.dumps(asyncio.run(run(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
