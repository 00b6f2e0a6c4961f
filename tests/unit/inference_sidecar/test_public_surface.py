"""The sidecar package's public surface and its documented HTTP API."""

from __future__ import annotations

import inference.sidecar
from inference.sidecar import SidecarSettings, create_app


def test_all_is_sorted_and_importable() -> None:
    assert inference.sidecar.__all__ == sorted(inference.sidecar.__all__)
    for name in inference.sidecar.__all__:
        assert callable(getattr(inference.sidecar, name))


def test_the_openapi_document_lists_the_design_routes() -> None:
    app = create_app(SidecarSettings(engine_url="http://127.0.0.1:9"))
    doc = app.openapi()
    assert {p: sorted(ops) for p, ops in doc["paths"].items()} == {
        "/healthz": ["get"], "/readyz": ["get"], "/metrics": ["get"],
        "/v1/adapters": ["get", "post"], "/v1/adapters/{name}": ["delete"],
    }
    body = doc["paths"]["/v1/adapters"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["required"] == ["name", "source"]
