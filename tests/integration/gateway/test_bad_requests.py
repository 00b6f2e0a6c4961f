"""Bad input: each gets a clear error in OpenAI's shape, and nothing else is lost."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.helpers.gateway import start_gateway
from tests.helpers.procs import REPO, Proc, ProcessGroup
from tests.helpers.sim import FAST, start_sim

LIMIT = 2000
GOOD = {"model": "m1", "prompt": "x", "max_tokens": 1}


@pytest.fixture(scope="module")
def engine(module_procs: ProcessGroup) -> Proc:
    return start_sim(module_procs, name="m1", extra_args=FAST)


@pytest.fixture(scope="module")
def gw(module_procs: ProcessGroup, engine: Proc) -> Iterator[httpx.Client]:
    proc = start_gateway(module_procs, extra_args=[
        "--static-routes", f"m1={engine.url}", "--max-body-bytes", str(LIMIT),
        "--hold-models", "cold", "--hold-timeout", "0.2", "--retry-after", "7",
    ])
    with httpx.Client(base_url=str(proc.url), timeout=30) as client:
        yield client


def error_of(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


def v1(client: httpx.Client) -> str:
    return str(client.base_url).rstrip("/") + "/v1"


def still_works(gw: httpx.Client) -> None:
    r = gw.post("/v1/completions", json=GOOD)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe", b'{"model": "m1"'])
def test_malformed_json_is_400(gw: httpx.Client, body: bytes) -> None:
    r = gw.post("/v1/chat/completions", content=body,
                headers={"content-type": "application/json"})
    error = error_of(r, 400)
    assert error["code"] == "invalid_json"
    assert error["type"] == "invalid_request_error"
    assert r.headers["x-request-id"]
    still_works(gw)


def test_a_body_that_is_not_an_object_is_400(gw: httpx.Client) -> None:
    assert error_of(gw.post("/v1/completions", json=["m1"]), 400)["code"] == "invalid_json"


@pytest.mark.parametrize(("body", "code"), [
    ({"prompt": "x"}, "missing_model"),
    ({"model": "", "prompt": "x"}, "missing_model"),
    ({"model": 7, "prompt": "x"}, "invalid_model"),
])
def test_missing_or_bad_model_is_400(gw: httpx.Client, body: dict[str, Any], code: str) -> None:
    error = error_of(gw.post("/v1/completions", json=body), 400)
    assert error["code"] == code
    assert error["param"] == "model"


def test_unknown_model_is_404_model_not_found(gw: httpx.Client) -> None:
    error = error_of(gw.post("/v1/chat/completions", json={"model": "gpt-9", "messages": []}), 404)
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    assert "gpt-9" in error["message"]


def test_a_body_over_the_limit_is_413(gw: httpx.Client) -> None:
    big = {**GOOD, "prompt": "x" * LIMIT}
    assert error_of(gw.post("/v1/completions", json=big), 413)["code"] == "request_too_large"
    # Without a Content-Length (chunked), the limit holds while reading.

    def chunks() -> Iterator[bytes]:
        yield b'{"model": "m1", "prompt": "'
        for _ in range(LIMIT // 100 + 1):
            yield b"y" * 100
        yield b'"}'

    r = gw.post("/v1/completions", content=chunks(), headers={"content-type": "application/json"})
    assert error_of(r, 413)["code"] == "request_too_large"
    still_works(gw)


def test_a_body_just_under_the_limit_goes_through(gw: httpx.Client) -> None:
    body = {**GOOD, "prompt": "x" * (LIMIT - 200)}
    assert gw.post("/v1/completions", json=body).status_code == 200


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/completions"), ("PUT", "/v1/chat/completions"), ("DELETE", "/v1/models"),
    ("POST", "/v1/models"),
])
def test_unsupported_method_is_405(gw: httpx.Client, method: str, path: str) -> None:
    r = gw.request(method, path)
    error_of(r, 405)
    assert r.headers["allow"]


def test_unknown_path_is_404(gw: httpx.Client) -> None:
    error_of(gw.post("/v1/embeddings", json=GOOD), 404)


def test_unknown_routing_strategy_is_400(gw: httpx.Client) -> None:
    r = gw.post("/v1/completions", json=GOOD, headers={"x-brix-routing": "fastest"})
    error = error_of(r, 400)
    assert error["code"] == "invalid_routing"
    assert "fastest" in error["message"]
    for strategy in ("random", "round-robin", "least-request", "least-queue", "prefix-affinity",
                     "prefix-cache"):
        r = gw.post("/v1/completions", json=GOOD, headers={"x-brix-routing": strategy})
        assert r.status_code == 200, (strategy, r.text)


def test_a_model_held_past_its_time_is_503_with_retry_after(gw: httpx.Client) -> None:
    r = gw.post("/v1/completions", json={**GOOD, "model": "cold"})
    error = error_of(r, 503)
    assert error["code"] == "no_ready_endpoint"
    assert r.headers["retry-after"] == "7"


def test_openai_client_sees_the_errors_as_its_own_types(gw: httpx.Client) -> None:
    with openai.OpenAI(base_url=v1(gw), api_key="x", max_retries=0) as client:
        with pytest.raises(openai.NotFoundError):
            client.completions.create(model="nope", prompt="x")
        with pytest.raises(openai.BadRequestError):
            client.completions.create(model="m1", prompt="x",
                                      extra_headers={"x-brix-routing": "bogus"})


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("secret") / "keys"


@pytest.fixture(scope="module")
def keyed(module_procs: ProcessGroup, engine: Proc, keys_file: Path) -> Iterator[httpx.Client]:
    keys = keys_file
    keys.write_text("# mounted from a Secret\nkey-one\n\nkey-two\n")
    proc = start_gateway(module_procs, extra_args=["--static-routes", f"m1={engine.url}",
                                                   "--api-keys-file", str(keys)],
                         env={"BRIX_GATEWAY_API_KEYS": "key-three"})
    with httpx.Client(base_url=str(proc.url), timeout=30) as client:
        yield client


@pytest.mark.parametrize("auth", [None, "Bearer", "Bearer wrong", "Basic key-one", "key-one"])
def test_api_keys_are_required_when_configured(keyed: httpx.Client, auth: str | None) -> None:
    headers = {"authorization": auth} if auth is not None else {}
    for path in ("/v1/completions", "/v1/chat/completions"):
        error = error_of(keyed.post(path, json=GOOD, headers=headers), 401)
        assert error["code"] == "invalid_api_key"
    error_of(keyed.get("/v1/models", headers=headers), 401)


def test_a_configured_key_lets_requests_through(keyed: httpx.Client) -> None:
    for key in ("key-one", "key-two", "key-three"):
        r = keyed.post("/v1/completions", json=GOOD, headers={"authorization": f"Bearer {key}"})
        assert r.status_code == 200, r.text
    assert keyed.get("/healthz").status_code == 200  # probes need no key
    assert keyed.get("/metrics").status_code == 200
    with openai.OpenAI(base_url=v1(keyed), api_key="wrong", max_retries=0) as client, \
            pytest.raises(openai.AuthenticationError):
        client.models.list()
    with openai.OpenAI(base_url=v1(keyed), api_key="key-two",
                       max_retries=0) as client:
        assert [m.id for m in client.models.list()] == ["m1"]


def test_keys_rotated_in_the_mounted_file_apply_without_a_restart(
    keyed: httpx.Client, keys_file: Path,
) -> None:
    def status(key: str) -> int:
        return keyed.post("/v1/completions", json=GOOD,
                          headers={"authorization": f"Bearer {key}"}).status_code

    assert status("key-one") == 200
    new = keys_file.with_name("keys.new")
    new.write_text("key-rotated\n")
    new.replace(keys_file)  # as a Secret volume swaps its files
    deadline = time.monotonic() + 20
    while status("key-rotated") != 200:
        assert time.monotonic() < deadline, "the rotated key was never accepted"
        time.sleep(0.2)
    assert status("key-one") == 401
    assert status("key-three") == 200  # the key from the environment stays


@pytest.mark.parametrize(("args", "message"), [
    (["--static-routes", "m1"], "expected MODEL=URL"),
    (["--services", "m1=svc:http"], "expected SERVICE"),
    (["--routing", "fastest"], "unknown strategy or profile 'fastest'"),
    (["--hold-timeout", "soon"], "expected a number"),
    (["--api-keys-file", "/nonexistent/keys"], "No such file"),
    (["--retries", "-1"], "retries must be >= 0"),
])
def test_bad_configuration_stops_with_one_clear_line(args: list[str], message: str,
                                                     tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--port", "0", "--discovery", "none", *args],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
