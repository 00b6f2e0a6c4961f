"""`make up` as a user runs it: in the background, the ready line, a chat
completion through the gateway, SIGTERM, and nothing of it left running; and
`make up IMAGES=1` the same way, every pod a podman container from its image."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import httpx
import pytest

from localkube.node.runtime import POD_LABEL
from tests.helpers.images import ENGINE_IMAGE, engine_images, podman
from tests.helpers.localkube import kubectl
from tests.helpers.operator import adapter_status, adapter_yaml, wait_for
from tests.helpers.procs import REPO, Proc, ProcessGroup
from tests.helpers.stack import stack_processes

# The stack includes tiny-llama on a real vLLM; `make up` is waited for up to 600 s,
# its answers and its stop up to 390 s more.
pytestmark = [pytest.mark.vllm, pytest.mark.timeout(1200)]


def start_make_up(procs: ProcessGroup, *make_args: str) -> Proc:
    assert not stack_processes(REPO), "a brix up of this checkout is already running"
    for port in (6443, 9090, 8000):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
    env = {k: v for k, v in os.environ.items() if k != "MAKEFLAGS"}
    proc = procs.start(["make", "up", *make_args], name="make-up", env=env,
                       ready=re.compile(r"brix is up: gateway at (?P<url>http://\S+)"),
                       timeout=600)
    assert proc.url == "http://127.0.0.1:8000"
    return proc


def both_models_answer(url: str) -> None:
    r = httpx.post(f"{url}/v1/chat/completions", timeout=120, json={
        "model": "sim-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]
    r = httpx.post(f"{url}/v1/chat/completions", timeout=120, json={
        "model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    assert r.status_code == 200, r.text


def stop_and_check_nothing_is_left(proc: Proc) -> None:
    proc.signal(signal.SIGTERM)
    proc.popen.wait(120)
    assert "brix up: stopped" in proc.output()
    deadline = time.monotonic() + 30
    while (left := stack_processes(REPO)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"left running: {[p.info['cmdline'] for p in left]}"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{proc.url}/healthz", timeout=1)


def test_make_up_serves_then_stops_cleanly(procs: ProcessGroup) -> None:
    proc = start_make_up(procs)
    assert proc.url is not None
    both_models_answer(proc.url)
    stop_and_check_nothing_is_left(proc)


def localkube_podman(kind: str) -> list[dict[str, object]]:
    """The podman containers (``ps``) or pods (``pod``) that localkube's runtime made."""
    argv = ([*podman(), "ps", "--all"] if kind == "ps" else [*podman(), "pod", "ls"])
    out = subprocess.run([*argv, "--filter", f"label={POD_LABEL}", "--format", "json"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return list(json.loads(out or "[]"))


@pytest.mark.images
@pytest.mark.timeout(2400)  # with BRIX_ENGINE_IMAGE=1 on a fresh machine: the engine's build
def test_make_up_from_images_serves_then_stops_cleanly(procs: ProcessGroup) -> None:
    # `make up IMAGES=1` builds what is missing itself; built here first, so that its
    # ready line is waited for as long as plain `make up`'s.
    built = engine_images("gateway", "controller", "sidecar")
    assert not localkube_podman("ps"), "localkube's podman containers are already running"
    proc = start_make_up(procs, "IMAGES=1")
    assert proc.url is not None
    running = {str(c["Image"]).removeprefix("localhost/") for c in localkube_podman("ps")
               if c.get("State") == "running"}
    assert running == set(built) == {ENGINE_IMAGE, "brix/gateway:0.1.0", "brix/controller:0.1.0",
                                     "brix/sidecar:0.1.0"}
    both_models_answer(proc.url)
    # The operator (in its container) has the sidecar (in its own) load one of the tiny
    # model's adapters into vLLM (in its own); the gateway then routes to it.
    kubeconfig = REPO / ".brix" / "kubeconfig"
    source = f"file://{REPO}/.brix/models/tiny-llama/adapters/tiny-lora-1"
    kubectl(kubeconfig, "apply", "-f", "-", input=adapter_yaml(
        "tiny-lora-1", base_model="tiny-llama", source=source, namespace="brix-models"))
    wait_for(lambda: adapter_status(kubeconfig, "brix-models", "tiny-lora-1").get("phase")
             == "Ready", what="tiny-lora-1 Ready", timeout=180,
             describe=lambda: adapter_status(kubeconfig, "brix-models", "tiny-lora-1"))
    deadline = time.monotonic() + 60
    while True:  # the gateway learns where the adapter is from its status
        r = httpx.post(f"{proc.url}/v1/completions", timeout=120, json={
            "model": "tiny-lora-1", "prompt": "hi", "max_tokens": 2})
        if r.status_code != 404 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "tiny-lora-1"
    stop_and_check_nothing_is_left(proc)
    assert localkube_podman("ps") == []
    assert localkube_podman("pod") == []
