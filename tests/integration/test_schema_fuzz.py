"""schemathesis against the gateway's and the sidecar's OpenAPI documents, through real processes.

Every operation of each document is fuzzed (valid and invalid requests, as
schemathesis generates them) against the running service, with a sim engine
behind it: no answer is a server error (500 or any 5xx with a healthy engine
behind), and every error is in the documented shape, OpenAI's
``{"error": {"message", "type", "param", "code"}}``.

The short run here makes ``FUZZ_EXAMPLES`` (default 40) examples per operation;
the campaign (``make reliability``) sets ``BRIX_FUZZ_EXAMPLES`` so that each
service gets at least 10,000 requests.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from prometheus_client.parser import text_string_to_metric_families
from schemathesis.core.result import Ok

from tests.helpers.gateway import start_gateway
from tests.helpers.procs import Proc, ProcessGroup
from tests.helpers.sidecar import start_sidecar
from tests.helpers.sim import FAST, start_sim

EXAMPLES = int(os.environ.get("BRIX_FUZZ_EXAMPLES", "40"))
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300 + EXAMPLES)]


@pytest.fixture(scope="module")
def engine(module_procs: ProcessGroup) -> Proc:
    return start_sim(module_procs, name="m1", extra_args=FAST)


def assert_documented(response: Any, where: str) -> None:
    status = response.status_code
    assert status < 500, f"{where}: {status} {response.text[:500]}"
    if status >= 400:
        body = response.json()
        assert isinstance(body, dict), f"{where}: {body}"
        assert set(body) == {"error"}, f"{where}: {body}"
        error = body["error"]
        assert {"message", "type", "param", "code"} <= set(error), f"{where}: {body}"
        assert isinstance(error["message"], str), f"{where}: {body}"
        assert error["message"], f"{where}: {body}"


def fuzz_operation(operation: Any, base_url: str, counts: dict[str, int]) -> None:
    label = f"{operation.method.upper()} {operation.path}"

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def one(case: Any) -> None:
        response = case.call(base_url=base_url, timeout=30)
        counts[label] = counts.get(label, 0) + 1
        assert_documented(response, f"{label} {case.body!r:.300}")

    one()


def fuzz(raw: dict[str, Any], base_url: str, counts: dict[str, int]) -> None:
    schema = schemathesis.openapi.from_dict(raw)
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"an operation schemathesis cannot read: {result}"
        fuzz_operation(result.ok(), base_url, counts)


def narrowed(raw: dict[str, Any], model: str) -> dict[str, Any]:
    """The gateway's document, with ``model`` the one served in valid requests (else
    nearly every request would be a 404 and never reach the engine) and ``max_tokens``
    small (else the run is long)."""
    for path in ("/v1/chat/completions", "/v1/completions"):
        body = raw["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        props = body["schema"]["properties"]
        props["model"] = {**props["model"], "enum": [model]}  # invalid ones still come
        props["max_tokens"] = {**props["max_tokens"], "maximum": 16}
    return raw


def answers_by_code(gw: Proc) -> dict[str, float]:
    text = httpx.get(f"{gw.url}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "brix_gateway_requests_total":
                code = sample.labels["code"]
                out[code] = out.get(code, 0) + sample.value
    return out


def test_the_gateway_survives_its_own_schema(module_procs: ProcessGroup, engine: Proc) -> None:
    gw = start_gateway(module_procs, extra_args=["--static-routes", f"m1={engine.url}",
                                                 "--hold-models", "cold",
                                                 "--hold-timeout", "0.1"])
    raw = httpx.get(f"{gw.url}/openapi.json", timeout=10).json()
    assert {"/v1/chat/completions", "/v1/completions"} <= set(raw["paths"])
    counts: dict[str, int] = {}
    fuzz(narrowed(raw, "m1"), str(gw.url), counts)
    print(f"\ngateway: {sum(counts.values())} requests: {counts}")
    assert counts.get("POST /v1/chat/completions", 0) >= EXAMPLES // 2
    # Many went all the way to the engine and back, not only to the gateway's checks.
    answered = answers_by_code(gw)
    print(f"gateway answers by code: {answered}")
    assert answered.get("200", 0) >= EXAMPLES // 4, answered
    assert httpx.post(f"{gw.url}/v1/completions", timeout=10, json={
        "model": "m1", "prompt": "x", "max_tokens": 1}).status_code == 200


def test_the_sidecar_survives_its_own_schema(module_procs: ProcessGroup, engine: Proc,
                                             tmp_path: Path) -> None:
    assert engine.url is not None
    sidecar = start_sidecar(module_procs, engine_url=engine.url,
                            extra_args=("--adapter-roots", str(tmp_path)))
    raw = httpx.get(f"{sidecar.url}/openapi.json", timeout=10).json()
    counts: dict[str, int] = {}
    fuzz(raw, str(sidecar.url), counts)
    print(f"\nsidecar: {sum(counts.values())} requests: {counts}")
    assert counts.get("POST /v1/adapters", 0) >= EXAMPLES // 2
    assert httpx.get(f"{sidecar.url}/healthz", timeout=10).status_code == 200
