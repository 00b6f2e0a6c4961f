"""Benchmark of the LoRA operator: ``python -m bench.operator [--write bench/operator/RESULTS.md]``.

Everything real, on this machine: localkube with its kubelet running sim
engines and their sidecars as processes, the operator as a process with its
default settings, LoraAdapters created through the API.

- apply -> Ready: one adapter on a model with 3 Ready pods, from the create
  call to ``status.phase == Ready`` with ``ready == 3/3`` (several rounds, each
  with a fresh adapter; the sim loads adapters instantly, so this is the
  operator's own latency plus the sidecars' calls);
- 100 adapters x 10 pods: 100 LoraAdapters created at once on a model with 10
  Ready pods, until every one is Ready 10/10 (and every sidecar lists 100).

Goals (issue 6): apply -> Ready <= 1 s plus the engine's load time;
100 x 10 converge <= 30 s.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import kubernetes

from bench.machine import cpu_model, cpu_seconds
from tests.helpers.localkube import kubectl, start_localkube
from tests.helpers.operator import (
    install_crds,
    make_adapter_dir,
    ready_pods,
    sidecar_url,
    sim_model_yaml,
    start_operator,
    wait_for,
)
from tests.helpers.procs import ProcessGroup

GROUP, VERSION, PLURAL = "brix.dev", "v1alpha1", "loraadapters"


def custom_api(kubeconfig: Path) -> Any:
    cfg = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    return kubernetes.client.CustomObjectsApi(kubernetes.client.ApiClient(cfg))


def adapter(name: str, namespace: str, model: str, source: Path) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LoraAdapter",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"baseModel": model, "source": f"file://{source}"}}


def deploy(kubeconfig: Path, *, namespace: str, model: str, replicas: int, root: Path) -> None:
    kubectl(kubeconfig, "apply", "-f", "-",
            input=f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n")
    kubectl(kubeconfig, "apply", "-f", "-", input=sim_model_yaml(
        model, adapter_root=root, namespace=namespace, replicas=replicas))
    wait_for(lambda: len(ready_pods(kubeconfig, namespace, model)) == replicas,
             what=f"{replicas} Ready pods of {model}", timeout=300, interval=0.5)


def apply_to_ready(kubeconfig: Path, root: Path, rounds: int) -> list[float]:
    ns, model = "bench3", "m3"
    deploy(kubeconfig, namespace=ns, model=model, replicas=3, root=root)
    api = custom_api(kubeconfig)
    times = []
    for i in range(rounds):
        name = f"one-{i}"
        source = make_adapter_dir(root, name)
        t0 = time.perf_counter()
        api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL,
                                            adapter(name, ns, model, source))
        while True:
            status = api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL,
                                                      name).get("status") or {}
            if status.get("phase") == "Ready" and status.get("ready") == "3/3":
                break
            time.sleep(0.01)
        times.append(time.perf_counter() - t0)
        print(f"apply -> Ready 3/3: {times[-1] * 1000:.0f} ms", flush=True)
        api.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    kubectl(kubeconfig, "-n", ns, "delete", "loraadapters", "--all", "--timeout=120s",
            timeout=180)
    kubectl(kubeconfig, "-n", ns, "delete", "deployment", model, "--timeout=120s")
    return times


def many(kubeconfig: Path, root: Path, *, adapters: int, pods: int) -> dict[str, float]:
    ns, model = "bench10", "m10"
    deploy(kubeconfig, namespace=ns, model=model, replicas=pods, root=root)
    api = custom_api(kubeconfig)
    sources = [make_adapter_dir(root, f"a{i:03d}") for i in range(adapters)]
    want = f"{pods}/{pods}"
    t0 = time.perf_counter()
    for i, source in enumerate(sources):
        api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL,
                                            adapter(f"a{i:03d}", ns, model, source))
    created = time.perf_counter() - t0
    while True:
        items = api.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
        ready = sum(1 for o in items if (o.get("status") or {}).get("phase") == "Ready"
                    and (o.get("status") or {}).get("ready") == want)
        if ready == adapters:
            break
        if time.perf_counter() - t0 > 600:
            raise RuntimeError(f"only {ready} of {adapters} Ready after 600 s")
        time.sleep(0.1)
    converged = time.perf_counter() - t0
    print(f"{adapters} x {pods}: created {created:.1f} s, converged {converged:.1f} s", flush=True)
    counts = [len(httpx.get(sidecar_url(p) + "/v1/adapters", timeout=30).json()["data"])
              for p in ready_pods(kubeconfig, ns, model)]
    assert counts == [adapters] * pods, counts
    t1 = time.perf_counter()
    kubectl(kubeconfig, "-n", ns, "delete", "loraadapters", "--all", "--timeout=600s",
            timeout=900)
    deleted = time.perf_counter() - t1
    kubectl(kubeconfig, "-n", ns, "delete", "deployment", model, "--timeout=120s")
    return {"created": created, "converged": converged, "deleted": deleted}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.operator")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--adapters", type=int, default=100)
    parser.add_argument("--pods", type=int, default=10)
    parser.add_argument("--write", type=Path, help="write the results as markdown here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp:
        root = Path(tmp)
        group = ProcessGroup(log_dir=root / "logs")
        try:
            kube, kubeconfig = start_localkube(group, root / "kube", timeout=120)
            install_crds(kubeconfig)
            op = start_operator(group, kubeconfig=kubeconfig, extra_args=())
            adapters_root = root / "adapters"
            adapters_root.mkdir()
            one = apply_to_ready(kubeconfig, adapters_root, args.rounds)
            cpu0 = cpu_seconds(op.popen.pid), cpu_seconds(kube.popen.pid)
            big = many(kubeconfig, adapters_root, adapters=args.adapters, pods=args.pods)
            cpu = (cpu_seconds(op.popen.pid) - cpu0[0], cpu_seconds(kube.popen.pid) - cpu0[1])
        finally:
            group.stop_all()

    lines = [
        "# lora_operator benchmark",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {os.cpu_count()} CPUs (`nproc`), {cpu_model()}, shared with other work",
        "- command: `python -m bench.operator`; localkube with its kubelet, sim engines and "
        "sidecars as processes, the operator with its default settings",
        "",
        "| measure | result | goal |",
        "| --- | --- | --- |",
        f"| apply -> Ready 3/3, one adapter, median of {len(one)} | "
        f"{statistics.median(one) * 1000:.0f} ms | <= 1 s + engine load |",
        f"| apply -> Ready 3/3, max of {len(one)} | {max(one) * 1000:.0f} ms | |",
        f"| {args.adapters} adapters x {args.pods} pods: created through the API | "
        f"{big['created']:.1f} s | |",
        f"| {args.adapters} adapters x {args.pods} pods: all Ready {args.pods}/{args.pods} "
        f"(from the first create) | {big['converged']:.1f} s | <= 30 s |",
        f"| {args.adapters} adapters deleted (`kubectl delete --all`, unloaded everywhere) | "
        f"{big['deleted']:.1f} s | |",
        f"| CPU of the operator / localkube (API and kubelet) over those two | "
        f"{cpu[0]:.1f} s / {cpu[1]:.1f} s | |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        args.write.write_text(text)


if __name__ == "__main__":
    main()
