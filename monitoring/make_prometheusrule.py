"""Render brix's Prometheus rules as a PrometheusRule for the Prometheus Operator.

The rule files in ``monitoring/rules/`` are the source; the PrometheusRule in
``k8s/overlays/prometheus-operator/prometheusrule.yaml`` is made from them:

    python monitoring/make_prometheusrule.py          # write it
    python monitoring/make_prometheusrule.py --check  # exit 1 if it is stale (a test runs this)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = sorted((ROOT / "monitoring" / "rules").glob("*.rules.yml"))
TARGET = ROOT / "k8s" / "overlays" / "prometheus-operator" / "prometheusrule.yaml"

HEADER = (
    "# Made by monitoring/make_prometheusrule.py from monitoring/rules/*.rules.yml:\n"
    "# edit those and run the script; a test fails when this file is stale.\n"
)


def render() -> str:
    groups: list[dict[str, Any]] = []
    for path in RULES:
        groups.extend(yaml.safe_load(path.read_text())["groups"])
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "brix",
            "namespace": "brix-system",
            "labels": {"app.kubernetes.io/part-of": "brix"},
        },
        "spec": {"groups": groups},
    }
    return HEADER + yaml.safe_dump(rule, sort_keys=False, width=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not TARGET.exists() or TARGET.read_text() != text:
            script = Path(__file__).relative_to(ROOT)
            print(f"{TARGET.relative_to(ROOT)} is stale: run python {script}", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
