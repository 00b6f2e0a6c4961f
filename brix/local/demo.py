"""``make demo``: while ``make up`` runs, show what brix does.

1. ``kubectl apply`` a LoraAdapter for tiny-llama and wait until it is Ready;
2. ask the same question of the base model and of the adapter, through the
   gateway, and print both answers (they differ);
3. drive load at sim-model and print its replicas as the scaler adds pods,
   then stop and watch them go back down.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from brix.local.overlay import substitute


def _say(line: str) -> None:
    print(f"demo: {line}", flush=True)


def _kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    kubectl = Path(sys.executable).parent / "kubectl"
    result = subprocess.run([str(kubectl) if kubectl.exists() else "kubectl",
                             "--kubeconfig", str(kubeconfig), *args],
                            input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def _chat(gateway: str, model: str, prompt: str) -> str:
    r = httpx.post(f"{gateway}/v1/chat/completions", timeout=120, json={
        "model": model, "max_tokens": 24, "temperature": 0,
        "messages": [{"role": "user", "content": prompt}],
    })
    if r.status_code != 200:
        raise RuntimeError(f"{model}: HTTP {r.status_code}: {r.text}")
    return str(r.json()["choices"][0]["message"]["content"])


def _replicas(kubeconfig: Path, name: str) -> tuple[int, int]:
    dep = json.loads(_kubectl(kubeconfig, "-n", "brix-models", "get", "deploy", name, "-o", "json"))
    return int(dep["spec"].get("replicas", 0)), int(dep["status"].get("readyReplicas", 0) or 0)


async def _load(gateway: str, seconds: float, concurrency: int) -> int:
    done = 0
    deadline = time.monotonic() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            try:
                await client.post(f"{gateway}/v1/completions", json={
                    "model": "sim-model", "prompt": "tell me a long story", "max_tokens": 128})
                done += 1
            except httpx.HTTPError:
                await asyncio.sleep(0.5)

    async with httpx.AsyncClient(timeout=120) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return done


def run(*, root: Path, gateway_url: str, kubeconfig: Path, load_seconds: float) -> int:
    if not kubeconfig.exists():
        print("demo: brix is not running: start `make up` in another terminal first",
              file=sys.stderr)
        return 1
    manifest = substitute((root / "k8s" / "examples" / "tiny-lora-local.yaml").read_text(),
                          {"BRIX_ROOT": str(root)})
    _say("kubectl apply -f k8s/examples/tiny-lora-local.yaml")
    print(_kubectl(kubeconfig, "apply", "-f", "-", stdin=manifest).strip())
    deadline = time.monotonic() + 120
    phase = ""
    while time.monotonic() < deadline:
        obj = json.loads(_kubectl(kubeconfig, "-n", "brix-models", "get", "lora", "tiny-lora-1",
                                  "-o", "json"))
        new = (obj.get("status") or {}).get("phase", "Pending")
        if new != phase:
            _say(f"LoraAdapter tiny-lora-1 is {new}")
            phase = new
        if phase == "Ready":
            break
        time.sleep(1)
    else:
        _say("the adapter did not become Ready: "
             "see `kubectl describe lora tiny-lora-1 -n brix-models`")
        return 1
    print(_kubectl(kubeconfig, "-n", "brix-models", "get", "lora").rstrip())
    prompt = "Write one line about the sea."
    _say(f"tiny-llama  -> {_chat(gateway_url, 'tiny-llama', prompt)!r}")
    _say(f"tiny-lora-1 -> {_chat(gateway_url, 'tiny-lora-1', prompt)!r}")

    _say(f"driving load at sim-model for {load_seconds:.0f}s (32 concurrent requests)")
    before = _replicas(kubeconfig, "sim-model")
    _say(f"sim-model replicas desired/ready: {before[0]}/{before[1]}")

    async def load_and_watch() -> int:
        task = asyncio.create_task(_load(gateway_url, load_seconds, 32))
        seen = before
        while not task.done():
            await asyncio.sleep(3)
            now = await asyncio.to_thread(_replicas, kubeconfig, "sim-model")
            if now != seen:
                _say(f"sim-model replicas desired/ready: {now[0]}/{now[1]}")
                seen = now
        return await task

    served = asyncio.run(load_and_watch())
    _say(f"load stopped after {served} requests; waiting for the scale-down window")
    deadline = time.monotonic() + 180
    seen = _replicas(kubeconfig, "sim-model")
    while time.monotonic() < deadline:
        now = _replicas(kubeconfig, "sim-model")
        if now != seen:
            _say(f"sim-model replicas desired/ready: {now[0]}/{now[1]}")
            seen = now
        if now[0] <= before[0]:
            break
        time.sleep(3)
    _say("done. `kubectl --kubeconfig .brix/kubeconfig -n brix-models describe deploy sim-model` "
         "shows the scaler's Events.")
    return 0
