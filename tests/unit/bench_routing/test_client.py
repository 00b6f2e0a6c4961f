"""The routing benchmark's client: what it counts as a failure, and which answers give a TTFT.

A stand-in server (aiohttp, in this process) answers each case as an engine behind
the gateway could; the benchmark's own client reads it.
"""

from __future__ import annotations

import json

import aiohttp
import pytest
from aiohttp import web

from bench.routing import workloads as wl
from bench.routing.__main__ import Result, one, ttfts_ms
from tests.helpers.aio_server import serve

pytestmark = pytest.mark.unit

CONTENT = {"choices": [{"index": 0, "delta": {"content": "word"}}]}
EMPTY = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
ERROR = {"error": {"message": "upstream failed", "type": "upstream_error"}}


def sse(*events: object) -> bytes:
    return b"".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n".encode()
                    for e in events)


ANSWERS: dict[str, bytes] = {
    "whole": sse(EMPTY, CONTENT, CONTENT, "[DONE]"),
    "no-content": sse(EMPTY, EMPTY, "[DONE]"),
    "cut": sse(EMPTY, CONTENT),
    "error-event": sse(CONTENT, ERROR),
}


async def handler(request: web.Request) -> web.StreamResponse:
    case = request.headers["x-brix-routing"]
    if case == "overloaded":
        return web.json_response({"error": {"message": "busy"}}, status=503)
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    await response.write(ANSWERS[case])
    await response.write_eof()
    return response


async def ask(cases: list[str]) -> list[Result]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    req = wl.Request(at=0.0, messages=({"role": "user", "content": "hi"},), max_tokens=4,
                     prompt_tokens=2, conversation=0)
    async with serve(app) as url, aiohttp.ClientSession() as session:
        return [await one(session, url, case, req, "m") for case in cases]


async def test_what_fails_and_which_answers_have_a_ttft() -> None:
    cases = ["whole", "no-content", "cut", "error-event", "overloaded"]
    whole, empty, cut, error, overloaded = await ask(cases)
    assert (whole.ok, whole.ttft >= 0, whole.tokens) == (True, True, 2)
    # An answer whose tokens held no text is an answer, with no TTFT: not a failure.
    assert (empty.ok, empty.ttft < 0, empty.tokens) == (True, True, 0)
    assert ttfts_ms([whole, empty]) == [1000 * whole.ttft]
    assert [r.ok for r in (cut, error, overloaded)] == [False] * 3
    assert cut.why == "the stream ended after 1 tokens without [DONE]"
    assert "upstream failed" in error.why
    assert overloaded.why.startswith("HTTP 503: ")
    assert "busy" in overloaded.why
