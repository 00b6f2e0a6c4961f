"""The LoRA operator (``python -m lora_operator``) and LoraAdapter objects, for tests.

Usage::

    def test_x(procs, tmp_path):
        _, kubeconfig = start_localkube(procs, tmp_path / "kube")
        install_crds(kubeconfig)
        op = start_operator(procs, kubeconfig=kubeconfig)
        kubectl(kubeconfig, "apply", "-f", "-",
                input=adapter_yaml("sql", base_model="m", source="file:///..."))
        wait_for(lambda: phase(kubeconfig, "default", "sql") == "Ready", what="sql Ready")

``op.url`` is the operator's /metrics endpoint. ``sim_model_yaml`` is a
Deployment of sim engines with their sidecars (the kubelet runs them as
processes), whose sidecars accept ``file://`` sources under ``adapter_root``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tests.helpers.localkube import kubectl
from tests.helpers.procs import REPO, Proc, ProcessGroup, free_port

T = TypeVar("T")

CRDS = REPO / "k8s" / "crds"
LORA_CRD = CRDS / "loraadapter.yaml"
PEERING_CRDS = CRDS / "kopf-peering.yaml"

# Short intervals so tests see retries and re-syncs within seconds.
FAST: tuple[str, ...] = (
    "--resync-interval", "5",
    "--backoff-initial", "0.2",
    "--backoff-max", "2",
    "--sidecar-timeout", "10",
    "--delete-timeout", "8",
)


def start_operator(
    procs: ProcessGroup,
    *,
    kubeconfig: Path,
    extra_args: Sequence[str] = FAST,
    env: Mapping[str, str] | None = None,
    standalone: bool = True,
    name: str = "lora-operator",
    timeout: float = 90.0,
) -> Proc:
    """Start the operator against ``kubeconfig``; returns once it printed its ready line."""
    args = ["-m", "lora_operator", "--kubeconfig", str(kubeconfig), "--port", "0",
            "--liveness-port", str(free_port())]
    if standalone:
        args.append("--standalone")
    full_env = {"BIND_HOST": "127.0.0.1", **(env or {})}
    return procs.start([*args, *extra_args], name=name, env=full_env, timeout=timeout)


def install_crds(kubeconfig: Path, *, peering: bool = False) -> None:
    """Apply the LoraAdapter CRD (and Kopf's peering CRDs) and wait until they serve."""
    files = [LORA_CRD, *([PEERING_CRDS] if peering else [])]
    for f in files:
        kubectl(kubeconfig, "apply", "-f", str(f))
    names = ["crd/loraadapters.brix.dev"]
    if peering:
        names += ["crd/clusterkopfpeerings.kopf.dev", "crd/kopfpeerings.kopf.dev"]
    kubectl(kubeconfig, "wait", "--for", "condition=established", "--timeout", "30s", *names)


def adapter_yaml(
    name: str, *, base_model: str, source: str, namespace: str = "default",
    sha256: str | None = None, replicas: int | None = None,
    pod_selector: Mapping[str, Any] | None = None,
) -> str:
    spec: dict[str, Any] = {"baseModel": base_model, "source": source}
    if sha256 is not None:
        spec["sha256"] = sha256
    if replicas is not None:
        spec["replicas"] = replicas
    if pod_selector is not None:
        spec["podSelector"] = dict(pod_selector)
    return yaml.safe_dump({
        "apiVersion": "brix.dev/v1alpha1", "kind": "LoraAdapter",
        "metadata": {"name": name, "namespace": namespace}, "spec": spec,
    })


def get_object(kubeconfig: Path, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    """The object as kubectl sees it; None when it does not exist."""
    result = kubectl(kubeconfig, "get", kind, name, "-n", namespace, "-o", "json", check=False)
    if result.returncode != 0:
        if "NotFound" in result.stderr or "not found" in result.stderr:
            return None
        raise AssertionError(f"kubectl get {kind} {name}: {result.stderr}")
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def adapter_status(kubeconfig: Path, namespace: str, name: str) -> dict[str, Any]:
    obj = get_object(kubeconfig, "loraadapters.brix.dev", namespace, name) or {}
    status: dict[str, Any] = obj.get("status") or {}
    return status


def wait_for(
    check: Callable[[], T | None], *, what: str, timeout: float = 60.0, interval: float = 0.25,
    describe: Callable[[], object] | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"; last seen: {describe()!r}" if describe is not None else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{extra}")
        time.sleep(interval)


def make_adapter_dir(root: Path, name: str, *, rank: int = 8) -> Path:
    """A directory the sidecar and the sim accept as a LoRA adapter (its config only)."""
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank,
        "target_modules": ["q_proj", "v_proj"], "base_model_name_or_path": "sim",
    }))
    return path


def sim_model_yaml(
    model: str, *, adapter_root: Path, replicas: int = 1, namespace: str = "default",
    token_secret: str | None = None, extra_labels: Mapping[str, str] | None = None,
) -> str:
    """A Deployment of sim engines with sidecars, labelled ``brix.dev/model: <model>``."""
    labels = {"brix.dev/model": model, **(extra_labels or {})}
    pod_ip = {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
    sidecar_env: list[dict[str, Any]] = [
        pod_ip,
        {"name": "BRIX_ADAPTER_ROOTS", "value": str(adapter_root)},
        {"name": "BRIX_CACHE_DIR", "value": str(adapter_root / ".cache")},
    ]
    if token_secret:
        sidecar_env.append({"name": "BRIX_SIDECAR_TOKEN", "valueFrom": {
            "secretKeyRef": {"name": token_secret, "key": "token"}}})
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": model, "namespace": namespace, "labels": {"brix.dev/model": model}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"brix.dev/model": model}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {
                            "name": "engine",
                            "command": ["python", "-m", "inference.sim", "--served-model-name",
                                        model, "--port", "8000", "--prefill-tokens-per-s",
                                        "1000000", "--decode-ms-per-token", "1",
                                        "--decode-ms-per-token-per-seq", "0"],
                            "env": [pod_ip],
                            "ports": [{"name": "http", "containerPort": 8000}],
                            "readinessProbe": {"httpGet": {"path": "/health", "port": "http"},
                                               "periodSeconds": 1},
                        },
                        {
                            "name": "sidecar",
                            "command": ["python", "-m", "inference.sidecar", "--engine-url",
                                        "http://$(POD_IP):8000", "--port", "8080"],
                            "env": sidecar_env,
                            "ports": [{"name": "sidecar", "containerPort": 8080}],
                            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "sidecar"},
                                               "periodSeconds": 1},
                        },
                    ],
                },
            },
        },
    }
    return yaml.safe_dump(deployment)


def ready_pods(kubeconfig: Path, namespace: str, model: str) -> list[dict[str, Any]]:
    """The Ready pods of ``model`` (not being deleted), sorted by name."""
    out = kubectl(kubeconfig, "get", "pods", "-n", namespace, "-l", f"brix.dev/model={model}",
                  "-o", "json").stdout
    pods = []
    for pod in json.loads(out)["items"]:
        conditions = pod.get("status", {}).get("conditions") or []
        if pod["metadata"].get("deletionTimestamp"):
            continue
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            pods.append(pod)
    return sorted(pods, key=lambda p: p["metadata"]["name"])


def sidecar_url(pod: Mapping[str, Any]) -> str:
    return f"http://{pod['status']['podIP']}:8080"


def core_api(kubeconfig: Path) -> Any:
    """A CoreV1Api of the ``kubernetes`` client for ``kubeconfig``."""
    import kubernetes

    cfg = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    return kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(cfg))


def register_pod(
    api: Any, *, namespace: str, name: str, model: str, sidecar_port: int,
    ready: bool = True, ip: str = "127.0.0.1", labels: Mapping[str, str] | None = None,
) -> None:
    """A Pod object for processes the test runs itself (localkube without its node).

    The pod names ``sidecar_port`` as its container port ``sidecar``; its status
    says Running at ``ip`` and Ready (or not).
    """
    api.create_namespaced_pod(namespace, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"brix.dev/model": model, **(labels or {})}},
        "spec": {"containers": [
            {"name": "engine", "image": "brix/sidecar:0.1.0",
             "ports": [{"name": "http", "containerPort": 8000}]},
            {"name": "sidecar", "image": "brix/sidecar:0.1.0",
             "ports": [{"name": "sidecar", "containerPort": sidecar_port}]},
        ]},
    })
    set_pod_ready(api, namespace=namespace, name=name, ready=ready, ip=ip)


def set_pod_ready(api: Any, *, namespace: str, name: str, ready: bool,
                  ip: str = "127.0.0.1") -> None:
    api.patch_namespaced_pod_status(name, namespace, {"status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }})
