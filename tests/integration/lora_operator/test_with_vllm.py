"""With a real vLLM (CPU, the tiny model): an applied LoraAdapter is actually served.

The pod is registered with localkube (no node) and backed by a vLLM started
through ``inference.engine`` and a sidecar; the operator loads the adapter
through the sidecar. A greedy completion by the adapter's name must differ
from the base model's, and after ``kubectl delete`` the name is gone.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from tests.helpers.localkube import kubectl, start_localkube
from tests.helpers.operator import (
    adapter_status,
    adapter_yaml,
    core_api,
    install_crds,
    register_pod,
    start_operator,
    wait_for,
)
from tests.helpers.procs import ProcessGroup, free_port
from tests.helpers.sidecar import start_sidecar
from tests.helpers.vllm import TINY_ADAPTERS, start_vllm

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]

PROMPT = "The operator keeps every adapter"


def greedy(url: str, model: str) -> str:
    api = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)
    out = api.completions.create(model=model, prompt=PROMPT, max_tokens=16, temperature=0)
    return out.choices[0].text


def test_an_applied_adapter_is_served_and_deleting_it_unloads_it(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    engine = start_vllm(procs)
    port = free_port()
    start_sidecar(procs, engine_url=engine.url, extra_args=(
        "--port", str(port), "--adapter-roots", str(engine.model_dir / "adapters")))
    _, kubeconfig = start_localkube(procs, tmp_path / "kube", node=False)
    install_crds(kubeconfig)
    register_pod(core_api(kubeconfig), namespace="default", name="tiny-0",
                 model=engine.served_name, sidecar_port=port)
    start_operator(procs, kubeconfig=kubeconfig,
                   extra_args=("--load-timeout", "300", "--sidecar-timeout", "60",
                               "--resync-interval", "5"))

    name = TINY_ADAPTERS[0]
    base = greedy(engine.url, engine.served_name)
    kubectl(kubeconfig, "apply", "-f", "-", input=adapter_yaml(
        name, base_model=engine.served_name, source=f"file://{engine.adapters[name]}"))
    wait_for(lambda: adapter_status(kubeconfig, "default", name).get("phase") == "Ready",
             what=f"{name} Ready", timeout=300,
             describe=lambda: adapter_status(kubeconfig, "default", name))
    assert greedy(engine.url, name) != base

    kubectl(kubeconfig, "delete", "lora", name, "--timeout=300s")
    models = httpx.get(f"{engine.url}/v1/models", timeout=30).json()["data"]
    assert name not in {m["id"] for m in models}
    assert greedy(engine.url, engine.served_name) == base
