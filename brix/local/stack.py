"""``brix up``: the whole system on one machine.

Starts localkube (its kubeconfig under ``.brix/``), Prometheus from Debian's
package (config from ``monitoring/prometheus/prometheus-local.yml``, finding
pods through localkube's HTTP service discovery), then applies the ``local``
overlay of ``k8s/``: the gateway, the LoRA operator, the scaler (fallback
loop), ``tiny-llama`` (a real vLLM on the CPU), ``sim-model`` (simulated,
autoscaled 1..6 on its queue) and ``sim-slo`` (the same, on the SLO policy).
Every process runs in its own process group and is stopped on Ctrl-C or
SIGTERM; pid files let the next run clean up after a run that was killed
outright. Each run starts from an empty cluster state.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from brix.local import overlay, processes
from brix.serving import READY_PATTERN


@dataclass(frozen=True, kw_only=True)
class StackConfig:
    """Where ``brix up`` puts things and which ports it takes."""

    root: Path                     # the project directory (has k8s/, monitoring/)
    state: Path                    # .brix/: kubeconfig, logs, localkube and Prometheus data
    localkube_port: int = 6443
    prometheus_port: int = 9090
    gateway_port: int = 8000
    # Leave out objects (tests drop the real-vLLM model for a fast stack).
    skip_models: tuple[str, ...] = ()
    ready_timeout: float = 600.0   # vLLM's start on a CPU dominates
    # From the images (make images) on localkube's podman runtime, instead of processes.
    images: bool = False
    audit: bool = False            # localkube's audit log at audit_log (tests compare RBAC)

    @property
    def audit_log(self) -> Path:
        return self.state / "localkube" / "audit.jsonl"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"


def _tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise processes.StartError(f"{name} is not installed: run `make up`, which sets it up")
    return found


IMAGE_USER = 10001
"""The user the images run as (docker/Dockerfile.*, the manifests' runAsUser)."""


def _writable_by_images(path: Path) -> None:
    """A folder the sidecars write into from their containers (they run as IMAGE_USER)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(path, IMAGE_USER, IMAGE_USER)
    else:
        path.chmod(0o777)


@dataclass
class Stack:
    config: StackConfig
    children: list[processes.Child] = field(default_factory=list)

    @property
    def run_dir(self) -> Path:
        return self.config.state / "run"

    @property
    def log_dir(self) -> Path:
        return self.config.state / "logs"

    # --- start ---------------------------------------------------------------

    def start(self, say: Any = print) -> None:
        cfg = self.config
        cfg.state.mkdir(parents=True, exist_ok=True)
        left = processes.reap_leftovers(self.run_dir)
        if left:
            say(f"stopped what an earlier run left running: {', '.join(left)}")
        for stale in ("localkube", "prometheus"):
            shutil.rmtree(cfg.state / stale, ignore_errors=True)
        if cfg.images:  # the overlay's sidecars cache adapters there
            _writable_by_images(cfg.root / ".brix" / "adapter-cache")
        try:
            self._start_localkube(say)
            self._start_prometheus(say)
            self._apply(say)
        except BaseException:
            self.stop()
            raise

    def _start_localkube(self, say: Any) -> None:
        cfg = self.config
        say(f"starting localkube on 127.0.0.1:{cfg.localkube_port}")
        child = processes.start(
            "localkube",
            [sys.executable, "-m", "localkube", "--port", str(cfg.localkube_port),
             "--state-dir", str(cfg.state / "localkube"), "--no-persist",
             *(["--runtime", "podman"] if cfg.images else []),
             *(["--audit-log", str(cfg.audit_log)] if cfg.audit else [])],
            run_dir=self.run_dir, log_dir=self.log_dir, cwd=cfg.root,
        )
        self.children.append(child)
        child.wait_for_line(READY_PATTERN, timeout=60)
        shutil.copyfile(cfg.state / "localkube" / "kubeconfig", cfg.kubeconfig)

    def _prometheus_config(self) -> Path:
        cfg = self.config
        src = cfg.root / "monitoring" / "prometheus" / "prometheus-local.yml"
        prom = yaml.safe_load(src.read_text())
        prom["rule_files"] = [str((src.parent / p).resolve()) for p in prom.get("rule_files", [])]
        for job in prom["scrape_configs"]:
            for sd in job.get("http_sd_configs", []):
                sd["url"] = sd["url"].replace(":6443/", f":{cfg.localkube_port}/")
                # localkube serves HTTPS with its own CA (made before Prometheus starts)
                sd.setdefault("tls_config", {})["ca_file"] = str(
                    cfg.state / "localkube" / "tls" / "ca.crt")
        out = cfg.state / "prometheus.yml"
        out.write_text(yaml.safe_dump(prom, sort_keys=False))
        return out

    def _start_prometheus(self, say: Any) -> None:
        cfg = self.config
        binary = shutil.which("prometheus")
        if binary is None:
            raise processes.StartError(
                "Prometheus is missing: run 'apt-get install prometheus' (Debian's package)")
        say(f"starting Prometheus on 127.0.0.1:{cfg.prometheus_port}")
        child = processes.start(
            "prometheus",
            [binary, f"--config.file={self._prometheus_config()}",
             f"--storage.tsdb.path={cfg.state / 'prometheus'}",
             f"--web.listen-address=127.0.0.1:{cfg.prometheus_port}",
             "--storage.tsdb.retention.time=1d", "--log.level=warn"],
            run_dir=self.run_dir, log_dir=self.log_dir,
        )
        self.children.append(child)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{cfg.prometheus_url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if not child.alive() or time.monotonic() > deadline:
                raise processes.StartError(f"Prometheus did not start:\n{child.tail()}")
            time.sleep(0.2)

    def render(self) -> list[dict[str, Any]]:
        cfg = self.config
        objects = overlay.render(
            cfg.root / "k8s" / "overlays" / ("local-images" if cfg.images else "local"),
            kubectl=_tool("kubectl"),
            values={"BRIX_ROOT": str(cfg.root), "PROMETHEUS_URL": cfg.prometheus_url},
        )
        objects = overlay.select(objects, lambda o: o["metadata"].get("name") in cfg.skip_models)
        for obj in objects:
            if obj["kind"] == "Deployment" and obj["metadata"]["name"] == "brix-gateway":
                for c in obj["spec"]["template"]["spec"]["containers"]:
                    for p in c.get("ports", []):
                        if "hostPort" in p:
                            p["hostPort"] = cfg.gateway_port
        return objects

    def _apply(self, say: Any) -> None:
        say(f"applying k8s/overlays/{'local-images' if self.config.images else 'local'}")
        overlay.apply(self.render(), kubectl=_tool("kubectl"), kubeconfig=self.config.kubeconfig)

    # --- readiness -----------------------------------------------------------

    def deployments(self) -> list[tuple[str, str, int, int]]:
        """(namespace, name, ready, desired) of every Deployment."""
        api = self.clients()[0]
        # A Deployment just created has no status until its controller writes one.
        return [(d.metadata.namespace, d.metadata.name,
                 (d.status.ready_replicas if d.status else None) or 0,
                 d.spec.replicas or 0) for d in api.list_deployment_for_all_namespaces().items]

    def wait_ready(self, say: Any = print) -> None:
        """Wait until every Deployment has its replicas ready and the gateway answers."""
        deadline = time.monotonic() + self.config.ready_timeout
        last = ""
        while True:
            self.check_alive()
            pending = [f"{ns}/{name} {r}/{d}" for ns, name, r, d in self.deployments() if r < d]
            gateway_ok = False
            with contextlib.suppress(httpx.HTTPError):
                gateway_ok = httpx.get(f"{self.config.gateway_url}/healthz",
                                       timeout=1).status_code == 200
            if not pending and gateway_ok:
                return
            text = "waiting for: " + (", ".join(pending) or "the gateway")
            if text != last:
                say(text)
                last = text
            if time.monotonic() > deadline:
                raise processes.StartError(f"not ready after {self.config.ready_timeout:.0f}s: "
                                           f"{text}; logs in {self.log_dir}")
            time.sleep(1)

    def check_alive(self) -> None:
        for child in self.children:
            if not child.alive():
                raise processes.StartError(f"{child.name} exited:\n{child.tail()}")

    def clients(self) -> tuple[Any, Any, Any]:
        from kubernetes import client, config

        api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.config.kubeconfig))
        return (client.AppsV1Api(api_client), client.CustomObjectsApi(api_client),
                client.CoreV1Api(api_client))

    # --- stop ----------------------------------------------------------------

    def stop(self) -> None:
        """Stop everything, localkube first (it stops every pod's processes)."""
        for child in self.children:
            child.stop(grace=30.0)
        self.children.clear()


def describe(cfg: StackConfig) -> str:
    kubeconfig = os.path.relpath(cfg.kubeconfig, Path.cwd())
    return (
        f"gateway      {cfg.gateway_url}  (OpenAI API: /v1/chat/completions, /v1/models)\n"
        f"Prometheus   {cfg.prometheus_url}\n"
        f"kubectl      kubectl --kubeconfig {kubeconfig} get deploy,pods,lora -A\n"
        f"logs         {os.path.relpath(cfg.state / 'logs', Path.cwd())}/ and "
        f"kubectl logs -n brix-models deploy/sim-model -c engine"
    )
