"""The whole `local` overlay with tiny-llama on a real vLLM: adapters end to end."""

from __future__ import annotations

import json

import httpx
import pytest

from brix.local.overlay import substitute
from brix.local.stack import Stack
from tests.e2e.test_sim_stack import eventually
from tests.helpers.localkube import kubectl
from tests.helpers.procs import REPO

# The module's stack waits up to 420 s to be ready, its steps up to 450 s more.
pytestmark = [pytest.mark.vllm, pytest.mark.timeout(1200)]

PROMPT = "Write one line about the sea."


def _complete(stack: Stack, model: str) -> tuple[int, str, str]:
    r = httpx.post(f"{stack.config.gateway_url}/v1/completions", timeout=120, json={
        "model": model, "prompt": PROMPT, "max_tokens": 16, "temperature": 0})
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    text = body.get("choices", [{}])[0].get("text", "") if r.status_code == 200 else r.text
    return r.status_code, text, r.headers.get("x-brix-pod", "")


def _lora(stack: Stack) -> dict[str, object]:
    out = kubectl(stack.config.kubeconfig, "-n", "brix-models", "get", "lora", "tiny-lora-1",
                  "-o", "json").stdout
    return dict(json.loads(out))


def test_adapter_applied_with_kubectl_is_served_and_survives_pod_loss(full_stack: Stack) -> None:
    kc = full_stack.config.kubeconfig
    manifest = substitute((REPO / "k8s" / "examples" / "tiny-lora-local.yaml").read_text(),
                          {"BRIX_ROOT": str(REPO)})
    kubectl(kc, "apply", "-f", "-", input=manifest)
    eventually(lambda: (_lora(full_stack).get("status") or {}).get("phase") == "Ready",
               timeout=120, what="tiny-lora-1 Ready")

    code, base_text, _ = _complete(full_stack, "tiny-llama")
    assert code == 200, base_text
    code, lora_text, pod = eventually(
        lambda: (r := _complete(full_stack, "tiny-lora-1"))[0] == 200 and r,
        timeout=30, what="the gateway to route tiny-lora-1")
    assert lora_text != base_text, "the adapter's output is the base model's"
    assert pod

    # Lose the engine pod: the Deployment replaces it, the operator reloads the
    # adapter there, and the gateway serves both names again.
    pods = json.loads(kubectl(kc, "-n", "brix-models", "get", "pods", "-l",
                              "brix.dev/model=tiny-llama", "-o", "json").stdout)["items"]
    (old,) = pods
    kubectl(kc, "-n", "brix-models", "delete", "pod", old["metadata"]["name"], "--wait=false")

    def replacement_serves() -> bool:
        status = _lora(full_stack).get("status") or {}
        loaded = {p["name"] for p in status.get("loadedPods", [])}  # type: ignore[attr-defined]
        if status.get("phase") != "Ready" or old["metadata"]["name"] in loaded or not loaded:
            return False
        return _complete(full_stack, "tiny-lora-1")[0] == 200

    eventually(replacement_serves, timeout=300, every=2.0,
               what="the adapter reloaded on the replacement pod and served")
    code, again, pod = _complete(full_stack, "tiny-lora-1")
    assert code == 200
    assert again == lora_text, "the same seeded adapter gives the same text on the new pod"
    assert pod != old["metadata"]["name"]
    code, base_again, _ = _complete(full_stack, "tiny-llama")
    assert (code, base_again) == (200, base_text)
