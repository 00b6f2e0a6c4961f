"""The published third-party CRDs vendored under ``tests/data/crds/`` (KEDA, Prometheus
Operator), and the schema of each of their kinds."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

CRD_DIR = Path(__file__).resolve().parents[1] / "data" / "crds"


@functools.cache
def vendored_crds() -> tuple[dict[str, Any], ...]:
    """Every CustomResourceDefinition under ``tests/data/crds/``."""
    out = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                out.append(doc)
    return tuple(out)


def crd_schemas(crds: tuple[dict[str, Any], ...]) -> dict[tuple[str, str], dict[str, Any]]:
    """openAPIV3Schema of each served version, by (apiVersion, kind)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for crd in crds:
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served", True):
                out[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return out
