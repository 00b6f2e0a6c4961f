"""localkube node benchmark: how fast Deployments become Ready pods, and at what CPU cost.

    python -m bench.localkube_node [--pods 20] [--rounds 3]
                                   [--record bench/localkube_node/RESULTS.md]

Starts ``python -m localkube --no-persist`` on a free port and, from one client
on the same machine, per round:

- scale up: a Deployment of N pods whose container is ``sleep`` (no probe, so a
  pod is Ready as soon as its process runs) is created; timed until the
  Deployment reports N available replicas (create -> Deployment controller ->
  pods -> kubelet -> processes -> pod status -> Deployment status);
- readiness: the same with ``python -m http.server`` on each pod's address and
  an httpGet readiness probe every second (includes Python's start-up);
- scale down: the Deployment scaled to 0, timed until no pod object is left
  (SIGTERM, process exit, pod removal).

Reported: wall time p50/max over the rounds, and the CPU time localkube's own
process used per pod (the containers' CPU is not included).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config

from bench.localkube.__main__ import cpu_model, cpu_seconds

READY_LINE = "listening on"


def start_localkube(state_dir: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """Start localkube with its output in ``state_dir.parent/localkube.log``."""
    state_dir.parent.mkdir(parents=True, exist_ok=True)
    log = state_dir.parent / "localkube.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "localkube", "--port", "0", "--state-dir", str(state_dir),
             "--no-persist", "--log-level", "WARNING"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if READY_LINE in log.read_text(errors="replace"):
            return proc, state_dir / "kubeconfig"
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"localkube did not start:\n{log.read_text(errors='replace')[-2000:]}")


def deployment(name: str, replicas: int, *, http: bool) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c", "image": "unused"}
    if http:
        container.update(
            command=[sys.executable, "-m", "http.server", "--bind", "$(POD_IP)", "8000"],
            readinessProbe={"httpGet": {"path": "/", "port": 8000}, "periodSeconds": 1})
    else:
        container.update(command=["sleep", "3600"])
    return {"metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"terminationGracePeriodSeconds": 5,
                                           "containers": [container]}}}}


def wait(pred: Any, timeout: float = 300.0) -> float:
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > timeout:
            raise TimeoutError("condition not reached")
        time.sleep(0.02)
    return time.monotonic()


def run(pods: int, rounds: int) -> list[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        proc, kubeconfig = start_localkube(Path(tmp) / "state")
        try:
            api = config.new_client_from_config(config_file=str(kubeconfig))
            core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
            results: dict[str, list[float]] = {"up": [], "ready": [], "down": []}
            cpu: dict[str, list[float]] = {"up": [], "ready": [], "down": []}
            for r in range(rounds):
                for kind, http in (("up", False), ("ready", True)):
                    name = f"{kind}{r}"
                    c0, t0 = cpu_seconds(proc.pid), time.monotonic()
                    apps.create_namespaced_deployment("default", deployment(name, pods, http=http))

                    def available(n: str = name) -> bool:
                        s = apps.read_namespaced_deployment_status(n, "default").status
                        return s is not None and (s.available_replicas or 0) == pods
                    t1 = wait(available)
                    results[kind].append(t1 - t0)
                    cpu[kind].append((cpu_seconds(proc.pid) - c0) / pods)
                    c0, t0 = cpu_seconds(proc.pid), time.monotonic()
                    apps.patch_namespaced_deployment_scale(name, "default",
                                                           {"spec": {"replicas": 0}})
                    t1 = wait(lambda n=name: not core.list_namespaced_pod(
                        "default", label_selector=f"app={n}").items)
                    results["down"].append(t1 - t0)
                    cpu["down"].append((cpu_seconds(proc.pid) - c0) / pods)
                    apps.delete_namespaced_deployment(name, "default")
            api.close()
        finally:
            proc.terminate()
            proc.wait(30)
            warnings = [line for line in (Path(tmp) / "localkube.log").read_text(
                errors="replace").splitlines() if "WARNING" in line or "ERROR" in line]
            if warnings:
                print(f"localkube logged {len(warnings)} warnings/errors, the last:",
                      *warnings[-5:], sep="\n", file=sys.stderr)
    labels = {"up": f"{pods} pods of `sleep` to available (no probe)",
              "ready": f"{pods} pods of `python -m http.server` to available (httpGet probe, 1 s)",
              "down": f"scale {pods} -> 0 until no pod object is left (both kinds)"}
    rows = []
    for kind, times in results.items():
        rows.append((labels[kind],
                     f"p50 {statistics.median(times):.2f} s, max {max(times):.2f} s "
                     f"over {len(times)}; localkube CPU {statistics.median(cpu[kind]) * 1000:.0f}"
                     " ms per pod"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.localkube_node")
    parser.add_argument("--pods", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--record", type=Path, default=None)
    args = parser.parse_args()
    rows = run(args.pods, args.rounds)
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    heading = (f"### {when} — nproc {os.cpu_count()}, {cpu_model()}, Python "
               f"{platform.python_version()}, load average {load:.1f} at the end")
    table = "\n".join(["| measure | result |", "|---|---|",
                       *(f"| {a} | {b} |" for a, b in rows)])
    text = f"{heading}\n\n{table}\n"
    print(text)
    if args.record:
        with args.record.open("a", encoding="utf-8") as out:
            out.write("\n" + text)


if __name__ == "__main__":
    main()
