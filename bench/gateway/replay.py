"""A stand-in upstream for gateway benchmarks: it replays one recorded answer.

``python -m bench.gateway.replay --answer FILE [--delay-ms 0] [--port 0]``
answers every request with the bytes in FILE (a whole HTTP/1.1 response:
status line, headers, body), recorded from a sim engine by ``bench.gateway``,
``--delay-ms`` after the request came (``--spread``: each delay drawn
uniformly from that range around it, so clients that wait for each other do
not move in lockstep). It is not an engine: it reads no body and runs no
model. It serves two measurements the sim cannot serve on a small machine:

- the most requests/s one gateway worker passes: the upstream must cost next
  to nothing, so that the gateway, not the engine beside it on the same CPUs,
  runs out of CPU;
- the latency the gateway adds to answers that take a given time: the sim
  answers at the ends of its batch steps, so its latency moves in steps that
  hide or inflate a difference of a millisecond.

Requests are framed by httptools (uvicorn's parser): keep-alive and
pipelining work as with a real server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
from pathlib import Path

import httptools

from brix.serving import print_ready


class _Replay(asyncio.Protocol):
    def __init__(self, answer: bytes, delay: float, spread: float, rng: random.Random) -> None:
        self.answer = answer
        self.delay = delay
        self.spread = spread
        self.rng = rng
        self.due = 0.0
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a TCP transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n"
                                 b"connection: close\r\n\r\n")
            self.transport.close()

    def on_message_complete(self) -> None:
        if self.delay <= 0:
            self._answer()
            return
        delay = self.delay
        if self.spread:
            delay += self.rng.uniform(-self.spread, self.spread)
        # A pipelining client gets its answers in order: none is due before the last.
        loop = asyncio.get_running_loop()
        self.due = max(self.due, loop.time() + delay)
        loop.call_at(self.due, self._answer)

    def _answer(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.answer)


async def _serve(args: argparse.Namespace, answer: bytes) -> None:
    loop = asyncio.get_running_loop()
    rng = random.Random(args.seed)
    delay, spread = args.delay_ms / 1000, args.spread_ms / 1000
    # uvicorn's backlog: asyncio's default (100) drops the SYNs of a gateway
    # that opens hundreds of connections at once, and each drop costs a second.
    server = await loop.create_server(lambda: _Replay(answer, delay, spread, rng),
                                      args.host, args.port, backlog=2048)
    sock_host, sock_port = server.sockets[0].getsockname()[:2]
    print_ready("replay", "http", sock_host, int(sock_port))
    await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway.replay")
    parser.add_argument("--answer", type=Path, required=True,
                        help="a whole HTTP/1.1 response to send to every request")
    parser.add_argument("--delay-ms", type=float, default=0.0,
                        help="answer this long after each request came")
    parser.add_argument("--spread-ms", type=float, default=0.0,
                        help="draw each delay uniformly from delay +- this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    if args.spread_ms > args.delay_ms:
        parser.error("--spread-ms must not exceed --delay-ms")
    answer = args.answer.read_bytes()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args, answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
