"""The gateway's Deployment probes the endpoints that mean what the probes ask.

Readiness is ``/health`` (200 once it can route, 503 before its first list of
Pods, Deployments and LoraAdapters); liveness is ``/healthz`` (the process
answers), so that an API server outage does not get a gateway restarted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]


def gateway_container() -> dict[str, Any]:
    docs = list(yaml.safe_load_all((REPO / "k8s" / "base" / "gateway.yaml").read_text()))
    deployment = next(d for d in docs if d and d.get("kind") == "Deployment")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    found: dict[str, Any] = next(c for c in containers if c["name"] == "gateway")
    return found


def test_readiness_is_health_and_liveness_is_healthz() -> None:
    container = gateway_container()
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    named = {p["name"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["port"] in named
    assert container["livenessProbe"]["httpGet"]["port"] in named


def test_the_probed_paths_are_served_by_the_gateway() -> None:
    from gateway.app import create_app
    from gateway.settings import GatewaySettings
    from gateway.table import RoutingTable

    app = create_app(GatewaySettings(), table=RoutingTable())
    paths = {getattr(r, "path", None) for r in app.routes}
    container = gateway_container()
    assert container["readinessProbe"]["httpGet"]["path"] in paths
    assert container["livenessProbe"]["httpGet"]["path"] in paths
