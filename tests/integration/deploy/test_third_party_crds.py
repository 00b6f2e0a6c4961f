"""The overlays for KEDA and the Prometheus Operator apply to an API server that has
those projects' published CRDs installed (vendored under tests/data/crds/)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.helpers.crds import vendored_crds
from tests.helpers.localkube import kubectl, start_localkube
from tests.helpers.manifests import K8S, render
from tests.helpers.procs import ProcessGroup

pytestmark = pytest.mark.integration

OVERLAYS = ("overlays/keda", "overlays/keda-tls", "overlays/prometheus-operator")
THIRD_PARTY = ("keda.sh", "monitoring.coreos.com")


def test_overlays_apply_against_the_published_crds(procs: ProcessGroup, tmp_path: Path) -> None:
    _, kubeconfig = start_localkube(procs, tmp_path / "state", node=False)
    crds = "---\n".join(yaml.safe_dump(c) for c in vendored_crds())
    kubectl(kubeconfig, "apply", "--server-side", "-f", "-", input=crds)
    kubectl(kubeconfig, "wait", "--for=condition=Established", "--timeout=30s",
            *(f"crd/{c['metadata']['name']}" for c in vendored_crds()))
    for overlay in OVERLAYS:
        kubectl(kubeconfig, "apply", "-k", str(K8S / overlay), timeout=120)
        for obj in render(overlay):
            if obj["apiVersion"].split("/")[0] not in THIRD_PARTY:
                continue
            md = obj["metadata"]
            got = yaml.safe_load(kubectl(kubeconfig, "get", "-n", md["namespace"], "-o", "yaml",
                                         f"{obj['kind'].lower()}.{obj['apiVersion'].split('/')[0]}",
                                         md["name"]).stdout)
            assert got["metadata"]["name"] == md["name"]
            assert got["metadata"].get("labels", {}) == md.get("labels", {})
            # stored as sent, plus the schema's defaults (e.g. KEDA's fallback.behavior)
            assert set(obj["spec"]) <= set(got["spec"]), f"{overlay}: {md['name']}"


def test_a_typo_in_a_third_party_object_is_refused(procs: ProcessGroup, tmp_path: Path) -> None:
    _, kubeconfig = start_localkube(procs, tmp_path / "state", node=False)
    kubectl(kubeconfig, "apply", "-f", "-", input="---\n".join(
        yaml.safe_dump(c) for c in vendored_crds()))
    kubectl(kubeconfig, "wait", "--for=condition=Established", "--timeout=30s",
            "crd/scaledobjects.keda.sh")
    scaled = next(o for o in render("overlays/keda") if o["kind"] == "ScaledObject")
    typo = {**scaled, "metadata": {"name": "typo", "namespace": "default"},
            "spec": {**scaled["spec"], "maxReplicas": 3}}
    out = kubectl(kubeconfig, "apply", "-f", "-", input=yaml.safe_dump(typo), check=False)
    assert out.returncode != 0
    assert 'unknown field "spec.maxReplicas"' in out.stderr
