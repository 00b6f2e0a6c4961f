"""The official openai package against the gateway, in front of two sim engines."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.gateway import start_gateway
from tests.helpers.procs import Proc, ProcessGroup
from tests.helpers.sim import FAST, start_sim


@dataclass
class Stack:
    gateway: Proc
    engines: list[Proc]
    clients: list[openai.OpenAI] = field(default_factory=list)

    @property
    def url(self) -> str:
        assert self.gateway.url is not None
        return self.gateway.url

    def client(self, routing: str | None = None) -> openai.OpenAI:
        headers = {"x-brix-routing": routing} if routing else None
        client = openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0,
                               default_headers=headers)
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()


@pytest.fixture(scope="module")
def stack(module_procs: ProcessGroup, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    adapter_dir = tmp_path_factory.mktemp("sql-adapter")
    engines = [start_sim(module_procs, name="m1", extra_args=FAST) for _ in range(2)]
    routes: list[str] = []
    for engine in engines:
        r = httpx.post(f"{engine.url}/v1/load_lora_adapter",
                       json={"lora_name": "sql", "lora_path": str(Path(adapter_dir))})
        assert r.status_code == 200, r.text
        routes += ["--static-routes", f"m1={engine.url}", "--static-routes", f"sql={engine.url}"]
    gateway = start_gateway(module_procs, extra_args=routes)
    stack = Stack(gateway, engines)
    yield stack
    stack.close()


def _pods(stack: Stack) -> set[str]:
    return {e.url.removeprefix("http://") for e in stack.engines if e.url}


def test_chat_completion(stack: Stack) -> None:
    raw = stack.client().chat.completions.with_raw_response.create(
        model="m1", messages=[{"role": "user", "content": "Say something."}], max_tokens=5,
    )
    reply = raw.parse()
    assert reply.model == "m1"
    assert reply.choices[0].message.content
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 5
    assert raw.headers["x-brix-pod"] in _pods(stack)
    assert len(raw.headers["x-request-id"]) >= 16


def test_completion(stack: Stack) -> None:
    reply = stack.client().completions.create(model="m1", prompt="Once upon", max_tokens=4)
    assert reply.model == "m1"
    assert reply.choices[0].text
    assert reply.choices[0].finish_reason == "length"


def test_streamed_chat_completion(stack: Stack) -> None:
    stream = stack.client().chat.completions.create(
        model="m1", messages=[{"role": "user", "content": "Count."}], max_tokens=6, stream=True,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].choices[0].finish_reason == "length"


def test_streamed_completion_passes_the_engines_bytes_untouched(stack: Stack) -> None:
    body = {"model": "m1", "prompt": "abc", "max_tokens": 5, "stream": True}
    with httpx.stream("POST", stack.url + "/v1/completions", json=body, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = b"".join(r.iter_raw())
    events = [e for e in raw.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    assert len(events) == 6  # five tokens and [DONE], framed as the engine framed them


def test_adapter_by_name(stack: Stack) -> None:
    client = stack.client()
    reply = client.completions.create(model="sql", prompt="SELECT", max_tokens=3)
    assert reply.model == "sql"
    stream = client.chat.completions.create(
        model="sql", messages=[{"role": "user", "content": "hi"}], max_tokens=3, stream=True)
    models = [c.model for c in stream]
    assert models
    assert set(models) == {"sql"}


def test_models_lists_what_is_routable(stack: Stack) -> None:
    ids = sorted(m.id for m in stack.client().models.list())
    assert ids == ["m1", "sql"]


def test_unknown_model_is_an_openai_not_found(stack: Stack) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        stack.client().completions.create(model="nope", prompt="x", max_tokens=1)
    assert info.value.code == "model_not_found"


def test_round_robin_and_random_use_every_pod(stack: Stack) -> None:
    for strategy in ("round-robin", "random", "least-request"):
        client = stack.client(routing=strategy)
        pods = Counter(
            client.completions.with_raw_response.create(
                model="m1", prompt="x", max_tokens=1).headers["x-brix-pod"]
            for _ in range(12)
        )
        assert set(pods) == _pods(stack), (strategy, pods)
        if strategy == "round-robin":
            assert sorted(pods.values()) == [6, 6]


def test_request_id_is_kept(stack: Stack) -> None:
    r = httpx.post(stack.url + "/v1/completions", headers={"x-request-id": "trace-42"},
                   json={"model": "m1", "prompt": "x", "max_tokens": 1}, timeout=30)
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "trace-42"


def test_request_ids_are_made_when_missing_or_unusable(stack: Stack) -> None:
    ids = []
    for headers in ({}, {}, {"x-request-id": "has space"}, {"x-request-id": "x" * 201}):
        r = httpx.post(stack.url + "/v1/completions", headers=headers,
                       json={"model": "m1", "prompt": "x", "max_tokens": 1}, timeout=30)
        assert r.status_code == 200
        ids.append(r.headers["x-request-id"])
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids), ids
    assert len(set(ids)) == len(ids)


def test_requests_are_counted_by_model_and_code(stack: Stack) -> None:
    def count(code: str) -> float:
        text = httpx.get(stack.url + "/metrics", timeout=10).text
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == "brix_gateway_requests_total"
                   and s.labels == {"model": "m1", "code": code})

    before = count("200")
    client = stack.client()
    for _ in range(3):
        client.completions.create(model="m1", prompt="x", max_tokens=1)
    assert count("200") == before + 3
    text = httpx.get(stack.url + "/metrics", timeout=10).text
    for name in ("brix_gateway_request_duration_seconds_count",
                 "brix_gateway_time_to_first_byte_seconds_count"):
        assert f'{name}{{model="m1"}}' in text


def test_service_mode_sends_a_model_to_its_service_address(procs: ProcessGroup) -> None:
    engine = start_sim(procs, name="llama-70b", extra_args=FAST)
    assert engine.url is not None
    host_port = engine.url.removeprefix("http://")  # a Service's DNS name in a cluster
    gw = start_gateway(procs, extra_args=["--services", f"llama-70b={host_port}"])
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0) as client:
        raw = client.completions.with_raw_response.create(model="llama-70b", prompt="x",
                                                          max_tokens=2)
        assert raw.parse().model == "llama-70b"
        assert raw.headers["x-brix-pod"] == host_port.split(":")[0]
        assert [m.id for m in client.models.list()] == ["llama-70b"]


def test_an_engines_own_error_passes_through_untouched(stack: Stack) -> None:
    engine_url = stack.engines[0].url
    assert engine_url is not None
    body = b'{"model": "m1", "prompt": "x", "max_tokens": 1}'
    direct = httpx.post(f"{engine_url}/v1/completions", content=body,
                        headers={"content-type": "text/plain"}, timeout=30)
    via = httpx.post(f"{stack.url}/v1/completions", content=body,
                     headers={"content-type": "text/plain"}, timeout=30)
    assert direct.status_code >= 400
    assert (via.status_code, via.content) == (direct.status_code, direct.content)
    assert via.headers["x-brix-pod"] in _pods(stack)


def test_prefix_affinity_keeps_a_prompt_prefix_on_one_pod(stack: Stack) -> None:
    client = stack.client(routing="prefix-affinity")
    # Longer than the hashed prefix (256 characters by default), as a shared system prompt is.
    system = {"role": "system", "content": "You are the SQL assistant of ACME. " * 10}

    def pod_for(system_message: dict[str, str], question: str) -> str:
        raw = client.chat.completions.with_raw_response.create(
            model="m1", max_tokens=1,
            messages=[system_message, {"role": "user", "content": question}])  # type: ignore[list-item]
        return raw.headers["x-brix-pod"]

    # One at a time (no load to bound): the same prefix always lands on the same pod.
    assert len({pod_for(system, f"question {i}") for i in range(6)}) == 1
    # Different prefixes spread over the pods.
    homes = {pod_for({"role": "system", "content": f"Persona number {i}."}, "hi")
             for i in range(16)}
    assert homes == _pods(stack)
