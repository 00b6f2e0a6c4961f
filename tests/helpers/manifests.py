"""Rendering brix's kustomize overlays with kubectl (kustomize built in)."""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.helpers.procs import tool

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"

# Every kustomization a user may apply, by path under k8s/.
OVERLAYS = (
    "base",
    "models",
    "overlays/keda",
    "overlays/keda/gpu",
    "overlays/keda-tls",
    "overlays/gpu",
    "overlays/prometheus-operator",
    "overlays/local",
)


def kubectl() -> str:
    return tool("kubectl")


@functools.cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    """The objects ``kubectl kustomize k8s/<overlay>`` renders."""
    out = subprocess.run(
        [kubectl(), "kustomize", str(K8S / overlay)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def pod_templates(objects: tuple[dict[str, Any], ...]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind/name, pod spec) of every workload among ``objects``."""
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]
        elif obj["kind"] == "Pod":
            yield f"Pod/{obj['metadata']['name']}", obj["spec"]
