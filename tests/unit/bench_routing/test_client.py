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
from bench.routing.__main__ import Result, one, say_failures, ttfts_ms
from tests.helpers.aio_server import serve
from tests.helpers.procs import free_port

pytestmark = pytest.mark.unit

CONTENT = {"choices": [{"index": 0, "delta": {"content": "word"}}]}
EMPTY = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
REQUEST = wl.Request(at=0.0, messages=({"role": "user", "content": "hi"},), max_tokens=4,
                     prompt_tokens=2, conversation=0)
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
    async with serve(app) as url, aiohttp.ClientSession() as session:
        return [await one(session, url, case, REQUEST, "m") for case in cases]


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


async def test_a_refused_connection_is_a_failure_that_names_the_exception() -> None:
    async with aiohttp.ClientSession() as session:
        r = await one(session, f"http://127.0.0.1:{free_port()}", "whole", REQUEST, "m")
    assert not r.ok
    assert r.why.startswith("after 0 tokens: ClientConnectorError")


def test_failures_and_answers_without_text_are_said_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    results = [Result(True, 0.1, 0.2, 3, 1.0), Result(True, -1.0, 0.2, 0, 1.0),
               Result(False, 0, 0, 0, 1.0, "HTTP 503: busy")]
    say_failures("least-prefill", results)
    assert capsys.readouterr().err.splitlines() == [
        "least-prefill: a request failed: HTTP 503: busy",
        "least-prefill: 1 answer(s) had no content token (no TTFT)",
    ]
