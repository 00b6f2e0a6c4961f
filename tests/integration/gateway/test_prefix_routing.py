"""prefix-cache routing through the real gateway, in front of three sim engines.

Requests that share a long prefix go to one pod while it has room; once its
in-flight count is past the profile's load threshold, the next goes to
another. Routing profiles come from a config file; a bad file stops the
gateway with one line naming the key; an unknown profile is a 400.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.helpers.gateway import start_gateway
from tests.helpers.procs import REPO, ProcessGroup
from tests.helpers.sim import slow, start_sim

pytestmark = pytest.mark.integration

FACTOR, SLACK = 1.5, 2.0
CONFIG = {
    "prefix": {"chunk-chars": 64},
    "profiles": {
        "prefix-cache": {"scorers": {"prefix": 1},
                         "filters": {"load": {"factor": FACTOR, "slack": SLACK}}},
        "mine": {"scorers": {"prefix": 2, "running": 1}},
    },
}
SYSTEM = "You are a careful assistant for the brix project. " * 20  # about 1,000 characters


@pytest.fixture(scope="module")
def gw(module_procs: ProcessGroup, tmp_path_factory: pytest.TempPathFactory,
       ) -> Iterator[tuple[httpx.Client, int]]:
    sims = [start_sim(module_procs, name="m1", extra_args=slow(ms_per_token=20))
            for _ in range(3)]
    config = tmp_path_factory.mktemp("routing") / "routing.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    routes = [f"m1={s.url}" for s in sims]
    proc = start_gateway(module_procs, extra_args=[
        "--static-routes", ",".join(routes), "--routing-config", str(config),
    ])
    with httpx.Client(base_url=str(proc.url), timeout=60) as client:
        yield client, len(sims)


def chat(user: str, *, stream: bool = False, max_tokens: int = 2) -> dict[str, Any]:
    return {"model": "m1", "max_tokens": max_tokens, "stream": stream, "ignore_eos": True,
            "messages": [{"role": "system", "content": SYSTEM},
                         {"role": "user", "content": user}]}


def test_a_shared_prefix_stays_on_one_pod(gw: tuple[httpx.Client, int]) -> None:
    client, _ = gw
    pods = []
    for turn in range(8):
        r = client.post("/v1/chat/completions", json=chat(f"question {turn}"),
                        headers={"x-brix-routing": "prefix-cache"})
        assert r.status_code == 200, r.text
        pods.append(r.headers["x-brix-pod"])
    assert len(set(pods)) == 1, pods
    # The same requests by least-request spread over the pods (ties go at random).
    spread = {client.post("/v1/chat/completions", json=chat(f"question {turn}"),
                          headers={"x-brix-routing": "least-request"}).headers["x-brix-pod"]
              for turn in range(12)}
    assert len(spread) > 1


def test_past_its_load_threshold_the_next_request_goes_elsewhere(
    gw: tuple[httpx.Client, int],
) -> None:
    client, n = gw
    # In flight at the preferred pod once k requests are open: k; the filter keeps it
    # while k < FACTOR * (k + 1) / n + SLACK. The first k at which it does not:
    limit = next(k for k in range(1, 100) if not k < FACTOR * (k + 1) / n + SLACK)
    body = chat("a long answer, please", stream=True, max_tokens=300)  # about 6 s each
    pods = []
    with contextlib.ExitStack() as stack:
        for _ in range(limit + 1):
            r = stack.enter_context(client.stream(
                "POST", "/v1/chat/completions", json=body,
                headers={"x-brix-routing": "prefix-cache"}))
            assert r.status_code == 200
            pods.append(r.headers["x-brix-pod"])
    assert len(set(pods[:limit])) == 1, pods
    assert pods[limit] != pods[0], pods


def test_a_profile_from_the_file_is_chosen_by_header(gw: tuple[httpx.Client, int]) -> None:
    client, _ = gw
    r = client.post("/v1/chat/completions", json=chat("hi"), headers={"x-brix-routing": "mine"})
    assert r.status_code == 200, r.text


def test_an_unknown_profile_is_400(gw: tuple[httpx.Client, int]) -> None:
    client, _ = gw
    r = client.post("/v1/chat/completions", json=chat("hi"),
                    headers={"x-brix-routing": "theirs"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "invalid_routing"
    assert "theirs" in error["message"]
    assert "mine" in error["message"]
    assert set(error) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(("config", "message"), [
    ({"profiles": {"p": {"scorers": {"speed": 1}}}}, "profiles.p.scorers.speed: unknown scorer"),
    ({"profiles": {"p": {"scorers": {"queue": -2}}}}, "profiles.p.scorers.queue: must be >= 0"),
    ({"profiles": {"p": {"filters": {"load": {"factor": 2}}}}},
     "profiles.p.scorers: a profile needs at least one scorer"),
])
def test_a_bad_config_stops_the_gateway_with_one_line(
    config: dict[str, Any], message: str, tmp_path: Path,
) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--port", "0", "--discovery", "none",
         "--routing-config", str(path)],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_the_config_file_also_comes_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump({"profiles": {"p": {"scorers": {"lora": -1}}}}))
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--port", "0", "--discovery", "none",
         "--routing", "p"],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
        env={"BRIX_ROUTING_CONFIG": str(path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "profiles.p.scorers.lora: must be >= 0" in result.stderr
