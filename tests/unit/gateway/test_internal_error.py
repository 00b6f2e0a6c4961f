"""The answer the gateway's completion path writes when a call fails before answering.

It is written as raw bytes (no ASGI server in between), so it is read back here by a
real HTTP parser: a well-formed 500 whose body is OpenAI's error shape, as every other
error of the gateway is.
"""

from __future__ import annotations

import json

import h11

from gateway.server import INTERNAL_ERROR


def test_the_internal_error_is_a_well_formed_500_in_openais_shape() -> None:
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="POST", target="/v1/completions",
                          headers=[("host", "gw"), ("content-length", "0")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(INTERNAL_ERROR)
    response = conn.next_event()
    assert isinstance(response, h11.Response)
    assert response.status_code == 500
    headers = dict(response.headers)
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"connection"] == b"close"
    body = b""
    while isinstance(event := conn.next_event(), h11.Data):
        body += event.data
    assert isinstance(event, h11.EndOfMessage)  # the content-length matched the body
    error = json.loads(body)["error"]
    assert error["type"] == "internal_server_error"
    assert error["code"] == "internal_error"
    assert error["message"]
