"""`brix up --images` (`make up IMAGES=1`) without the real-vLLM model: the local
overlay from the built images on localkube's podman runtime, as a client sees it."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator

import openai
import pytest

from brix.images.builder import ImageError, build_images
from brix.local.stack import Stack
from tests.e2e.conftest import _stack
from tests.helpers.images import podman
from tests.helpers.localkube import kubectl
from tests.helpers.operator import adapter_status, adapter_yaml, wait_for

pytestmark = [pytest.mark.images, pytest.mark.timeout(900)]  # builds images, then the stack


@pytest.fixture(scope="module")
def images_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (make test installs it)")
    try:
        build_images(("gateway", "controller", "sidecar"))
    except ImageError as exc:
        pytest.fail(str(exc))
    yield from _stack(tmp_path_factory.mktemp("brix-images"), skip=("tiny-llama",), images=True)


def test_the_stack_runs_from_images_and_serves(images_stack: Stack) -> None:
    cfg = images_stack.config
    out = subprocess.run([*podman(), "ps", "--format", "json"], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    running = {c["Image"].removeprefix("localhost/") for c in json.loads(out or "[]")
               if any(n.startswith("lk-brix-") for n in c["Names"])}
    assert {"brix/gateway:0.1.0", "brix/controller:0.1.0", "brix/sidecar:0.1.0"} <= running
    client = openai.OpenAI(base_url=f"{cfg.gateway_url}/v1", api_key="unused", max_retries=0)
    answer = client.chat.completions.create(
        model="sim-model", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    assert answer.choices[0].message.content
    # The operator (in its container) loads an adapter from the tiny model's folder into the
    # sim-model pods' sidecars (in theirs), which see it through their hostPath mount.
    source = f"file://{cfg.root}/.brix/models/tiny-llama/adapters/tiny-lora-1"
    kubectl(cfg.kubeconfig, "apply", "-f", "-", input=adapter_yaml(
        "img-lora", base_model="sim-model", source=source, namespace="brix-models"))
    status = wait_for(lambda: (s := adapter_status(cfg.kubeconfig, "brix-models", "img-lora"))
                      .get("phase") == "Ready" and s, what="img-lora Ready", timeout=120,
                      describe=lambda: adapter_status(cfg.kubeconfig, "brix-models", "img-lora"))
    assert status["readyReplicas"] >= 1
    deadline = time.monotonic() + 60
    while True:  # the gateway learns where the adapter is from its status
        try:
            completion = client.completions.create(model="img-lora", prompt="hi", max_tokens=2)
            break
        except openai.NotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    assert completion.model == "img-lora"
