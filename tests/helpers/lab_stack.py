"""A live brix stack for ``lab validate --gateway-url``: localkube with its node, a Deployment
of sim engines (each pod: the sim with a profile's timing, and the sidecar), the gateway
watching the cluster, a real Prometheus scraping the sidecars (through localkube's HTTP
service discovery) and the gateway, and the scaler's fallback loop with short windows.

Usage::

    stack = start_lab_stack(procs, tmp_path, profile=PROFILE, loop=LOOP)
    main(["validate", "--gateway-url", stack.gateway_url, *stack.validate_args(), ...])
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client, config

from brix.contract import (
    AUTOSCALE_ANNOTATION,
    AUTOSCALE_MAX_ANNOTATION,
    AUTOSCALE_MIN_ANNOTATION,
    AUTOSCALE_TARGET_ANNOTATION,
    MODEL_LABEL,
)
from tests.helpers.gateway import start_gateway
from tests.helpers.localkube import start_localkube
from tests.helpers.procs import ProcessGroup
from tests.helpers.prometheus import start_prometheus
from tests.helpers.scaler import start_scaler

NAMESPACE = "lab"

PROFILE: dict[str, Any] = {
    "name": "sim-stack", "prefill_tokens_per_s": 20000.0, "decode_ms_per_token": 40.0,
    "decode_ms_per_token_per_seq": 0.5, "max_num_seqs": 3, "kv_cache_tokens": 200000,
    "max_model_len": 16384}
"""The pods' timing: about 10 s per answer of validate-5min, 3 at a time, so its rate of
about one request a second needs 3-4 pods: the loop scales while the trace runs."""


@dataclass(frozen=True)
class LoopFlags:
    """The scaler's fallback-loop flags, and the Deployment's autoscale annotations."""

    interval: float = 5.0
    stabilization_window: float = 20.0
    scale_period: float = 5.0
    target: float = 2.0
    min_replicas: int = 1
    max_replicas: int = 4


LOOP = LoopFlags()
"""Loop every 5 s, 20 s stabilisation window, 5 s scale period, queue target 2, 1-4."""


@dataclass(frozen=True)
class LabStack:
    kubeconfig: Path
    gateway_url: str
    prometheus_url: str
    model: str
    loop: LoopFlags
    scrape_interval: float
    hold_timeout: float
    scaler_metrics_url: str

    def validate_args(self) -> list[str]:
        """``lab validate`` flags that describe this stack."""
        loop = self.loop
        return ["--gateway-url", self.gateway_url, "--model", self.model,
                "--kubeconfig", str(self.kubeconfig), "--namespace", NAMESPACE,
                "--loop-interval", str(loop.interval),
                "--stabilization-window", str(loop.stabilization_window),
                "--scale-period", str(loop.scale_period),
                "--scrape-interval", str(self.scrape_interval),
                "--hold-timeout", str(self.hold_timeout), "--routing", "least-request",
                "--prometheus-url", self.prometheus_url,
                "--scaler-metrics-url", self.scaler_metrics_url]


def sim_flags(profile: dict[str, Any]) -> list[str]:
    """The sim engine's flags for a lab profile (its timing, batch, step budget, cache and
    context)."""
    return ["--prefill-tokens-per-s", str(profile["prefill_tokens_per_s"]),
            "--decode-ms-per-token", str(profile["decode_ms_per_token"]),
            "--decode-ms-per-token-per-seq", str(profile["decode_ms_per_token_per_seq"]),
            "--max-num-seqs", str(profile["max_num_seqs"]),
            "--kv-cache-tokens", str(profile["kv_cache_tokens"]),
            "--max-model-len", str(profile["max_model_len"]),
            *([] if profile.get("max_num_batched_tokens") is None
              else ["--max-num-batched-tokens", str(profile["max_num_batched_tokens"])]),
            "--enable-chunked-prefill" if profile.get("enable_chunked_prefill", True)
            else "--no-enable-chunked-prefill",
            "--long-prefill-token-threshold", str(profile.get("long_prefill_token_threshold", 0)),
            "--no-enable-prefix-caching", "--log-level", "warning"]


def deployment(model: str, profile: dict[str, Any], loop: LoopFlags, *,
               sidecar_ready: str = "/readyz") -> dict[str, Any]:
    labels = {MODEL_LABEL: model}
    pod_ip = [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": model, "labels": labels, "annotations": {
            AUTOSCALE_ANNOTATION: "true", "brix.dev/autoscale-signal": "queue",
            AUTOSCALE_TARGET_ANNOTATION: f"{loop.target:g}",
            AUTOSCALE_MIN_ANNOTATION: str(loop.min_replicas),
            AUTOSCALE_MAX_ANNOTATION: str(loop.max_replicas)}},
        "spec": {"replicas": loop.min_replicas, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"terminationGracePeriodSeconds": 30, "containers": [
                {"name": "engine", "image": "brix/engine",
                 "command": [sys.executable, "-m", "inference.sim", "--served-model-name", model,
                             "--port", "8000", *sim_flags(profile)],
                 "env": pod_ip,
                 "ports": [{"name": "http", "containerPort": 8000}],
                 "readinessProbe": {"httpGet": {"path": "/health", "port": "http"},
                                    "periodSeconds": 1}},
                {"name": "sidecar", "image": "brix/sidecar",
                 "command": [sys.executable, "-m", "inference.sidecar",
                             "--engine-url", "http://$(POD_IP):8000", "--port", "8080"],
                 "env": pod_ip,
                 "ports": [{"name": "sidecar", "containerPort": 8080}],
                 "readinessProbe": {"httpGet": {"path": sidecar_ready, "port": "sidecar"},
                                    "periodSeconds": 1}},
            ]},
        }},
    }


def prometheus_config(localkube_url: str, ca: Path, gateway: str,
                      scrape_interval: float) -> dict[str, Any]:
    every = f"{scrape_interval:g}s"
    return {
        "global": {"scrape_interval": every, "evaluation_interval": every},
        "scrape_configs": [
            {"job_name": "brix-sidecars", "scrape_interval": every,
             "http_sd_configs": [{"url": f"{localkube_url}/localkube/v1/prometheus-sd",
                                  "tls_config": {"ca_file": str(ca)}, "refresh_interval": "1s"}],
             "relabel_configs": [
                 {"source_labels": ["__meta_kubernetes_pod_labelpresent_brix_dev_model",
                                    "__meta_kubernetes_pod_container_port_name"],
                  "regex": "true;sidecar", "action": "keep"},
                 {"source_labels": ["__meta_kubernetes_pod_ready"], "regex": "true",
                  "action": "keep"},
                 {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                 {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"}]},
            {"job_name": "brix-gateway", "scrape_interval": every,
             "static_configs": [{"targets": [gateway]}]},
        ],
    }


def start_lab_stack(procs: ProcessGroup, workdir: Path, *, profile: dict[str, Any],
                    loop: LoopFlags, model: str = "lab-sim", scrape_interval: float = 2.0,
                    hold_timeout: float = 60.0, sidecar_ready: str = "/readyz") -> LabStack:
    """Start the stack and return once the model answers through the gateway.

    ``sidecar_ready``: the sidecar's readiness path, ``/readyz`` as the manifests of
    ``k8s/`` (``/healthz`` leaves readiness to the engine's ``/health``). Before the
    sidecar's readiness stopped sending a completion once its engine had served, a full
    batch made ``/readyz`` miss the kubelet's 1 s probe timeout and took busy pods out
    of routing; bench/lab/RESULTS.md has that run.
    """
    workdir = workdir.resolve()  # Prometheus reads the CA path from its own directory
    _, kubeconfig = start_localkube(procs, workdir / "kube")
    api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    try:
        client.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})
        client.AppsV1Api(api).create_namespaced_deployment(
            NAMESPACE, deployment(model, profile, loop, sidecar_ready=sidecar_ready))
        server = api.configuration.host
    finally:
        api.close()
    gw = start_gateway(procs, kubeconfig=kubeconfig, extra_args=[
        "--routing", "least-request", "--hold-timeout", f"{hold_timeout:g}"])
    assert gw.url is not None
    _, prom = start_prometheus(procs, workdir / "prometheus", prometheus_config(
        server, kubeconfig.parent / "tls" / "ca.crt", gw.url.removeprefix("http://"),
        scrape_interval))
    scaler = start_scaler(procs, prometheus_url=prom, mode="loop", extra_args=[
        "--kubeconfig", str(kubeconfig), "--namespace", NAMESPACE,
        "--lease-namespace", NAMESPACE, "--lease-duration", "3", "--cache-ttl", "0",
        "--loop-interval", f"{loop.interval:g}",
        "--stabilization-window", f"{loop.stabilization_window:g}",
        "--scale-period", f"{loop.scale_period:g}"])
    deadline = time.monotonic() + 120
    while True:
        try:
            r = httpx.post(f"{gw.url}/v1/completions", timeout=30,
                           json={"model": model, "prompt": "x", "max_tokens": 1})
            if r.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{model} did not answer through the gateway in 120 s")
        time.sleep(0.5)
    return LabStack(kubeconfig=kubeconfig, gateway_url=gw.url, prometheus_url=prom, model=model,
                    loop=loop, scrape_interval=scrape_interval, hold_timeout=hold_timeout,
                    scaler_metrics_url=f"{scaler.http_url}/metrics")
