"""The parsers of engine output under arbitrary bytes: a clear refusal or a value, no crash.

- the sidecar's reading of an engine's /metrics (``parse_exposition``, then
  ``engine_families``): a dict, or ValueError naming Prometheus text;
- the sidecar's reading of an engine's /v1/models (``parse_models``): a list,
  or ValueError;
- the gateway's reading of a sidecar's /metrics for least-queue
  (``parse_queue``): a pair or None, never an exception;
- the sim's reading of a request body (``protocol.parse``), vLLM's refusals:
  a request, or its ApiError (400).

Inputs: arbitrary bytes decoded as the readers decode them, and a recorded
vLLM exposition cut and spliced at random places.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from gateway.load import parse_queue
from inference.sidecar.engine_client import parse_models
from inference.sidecar.engine_metrics import engine_families, parse_exposition
from inference.sim.errors import ApiError
from inference.sim.protocol import parse

pytestmark = pytest.mark.unit

RECORDED = (Path(__file__).parent / "inference_sidecar" / "data"
            / "vllm_two_engines.prom").read_text()
# 100 examples each in the unit lane; the campaign (make reliability) sets more.
FUZZ = settings(max_examples=int(os.environ.get("BRIX_PARSER_EXAMPLES", "100")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def decoded(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")  # as aiohttp's text() decodes a bad answer


@st.composite
def spliced(draw: st.DrawFn) -> str:
    """The recorded exposition with a random slice replaced by random bytes."""
    start = draw(st.integers(0, len(RECORDED)))
    end = draw(st.integers(start, min(len(RECORDED), start + 200)))
    junk = decoded(draw(st.binary(max_size=64)))
    return RECORDED[:start] + junk + RECORDED[end:]


class _Families(Collector):
    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> Any:
        return iter(self.families)


def _metrics_text_is_read_or_refused(text: str) -> None:
    try:
        samples = parse_exposition(text)
    except ValueError as exc:
        refused: ValueError | None = exc
    else:
        refused = None
    if refused is not None:
        assert "not Prometheus text" in str(refused)
        return
    families = engine_families(samples, model="m", adapters_loaded=1)
    registry = CollectorRegistry()
    registry.register(_Families(families))
    assert b"brix_engine_up" in generate_latest(registry)  # what the sidecar serves renders


@FUZZ
@given(raw=st.binary(max_size=2000))
def test_arbitrary_bytes_as_engine_metrics(raw: bytes) -> None:
    _metrics_text_is_read_or_refused(decoded(raw))


@FUZZ
@given(text=spliced())
def test_a_damaged_vllm_exposition(text: str) -> None:
    _metrics_text_is_read_or_refused(text)
    result = parse_queue(text)
    assert result is None or all(isinstance(v, int) for v in result)


@FUZZ
@given(raw=st.binary(max_size=2000))
def test_arbitrary_bytes_as_sidecar_metrics_for_least_queue(raw: bytes) -> None:
    result = parse_queue(decoded(raw))
    assert result is None or all(isinstance(v, int) for v in result)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["data", "id", "parent", "root", "object", "x"]),
                      inner, max_size=4),
    max_leaves=16,
)


@FUZZ
@given(body=json_values)
def test_arbitrary_json_as_a_model_list(body: Any) -> None:
    try:
        models = parse_models(body)
    except ValueError:
        return
    assert all(isinstance(m.id, str) for m in models)


request_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["model", "prompt", "messages", "role", "content", "max_tokens",
                         "max_completion_tokens", "stream", "n", "stop", "ignore_eos",
                         "temperature", "type", "text", "stream_options"]),
        inner, max_size=6),
    max_leaves=20,
)


def assert_parsed_or_refused(body: Any, kind: str) -> None:
    try:
        parse(body, kind, max_model_len=2048)  # type: ignore[arg-type]
    except ApiError as exc:
        refused: ApiError | None = exc
    else:
        refused = None
    if refused is not None:
        assert 400 <= refused.status < 500
        assert json.dumps(refused.body())  # the answer it becomes is JSON


@FUZZ
@given(body=request_values, kind=st.sampled_from(["chat", "completion"]))
def test_arbitrary_request_bodies_in_the_sim(body: Any, kind: str) -> None:
    assert_parsed_or_refused(body, kind)


@FUZZ
@given(raw=st.binary(max_size=500), kind=st.sampled_from(["chat", "completion"]))
def test_arbitrary_bytes_as_a_request_body_in_the_sim(raw: bytes, kind: str) -> None:
    try:
        body = json.loads(raw)
    except ValueError:
        return  # the app answers 400 before parse (tests/unit/inference_sim)
    assert_parsed_or_refused(body, kind)
