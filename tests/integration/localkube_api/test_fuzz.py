"""Whatever a client sends, the API answers with a Status, never a server error."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.localkube import admin_http
from tests.integration.localkube_api.conftest import Localkube

PATHS = [
    "/api/v1/namespaces/default/pods",
    "/api/v1/namespaces/default/services",
    "/api/v1/namespaces/default/secrets",
    "/api/v1/namespaces/default/configmaps",
    "/api/v1/namespaces",
    "/apis/apps/v1/namespaces/default/deployments",
    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
    "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
]
KEYS = ["metadata", "spec", "status", "data", "stringData", "name", "labels", "selector",
        "template", "containers", "ports", "replicas", "names", "versions", "group", "scope",
        "type", "finalizers", "ownerReferences", "generateName"]
values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70000) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(KEYS), inner, max_size=4),
    max_leaves=12,
)
PATCH_TYPES = ["application/merge-patch+json", "application/strategic-merge-patch+json",
               "application/json-patch+json"]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS), body=values, name=st.text("abc-", min_size=1, max_size=6),
       patch=values, patch_type=st.sampled_from(PATCH_TYPES))
def test_no_body_makes_a_server_error(localkube: Localkube, path: str, body: Any, name: str,
                                      patch: Any, patch_type: str) -> None:
    with admin_http(localkube.kubeconfig) as c:
        if isinstance(body, dict) and isinstance(body.get("metadata"), dict):
            body["metadata"]["name"] = name
        created = c.post(path, content=json.dumps(body),
                         headers={"Content-Type": "application/json"})
        assert created.status_code < 500, created.text
        if created.status_code != 201:
            assert created.json()["kind"] == "Status"
            return
        target = f"{path}/{created.json()['metadata']['name']}"
        patched = c.patch(target, content=json.dumps(patch),
                          headers={"Content-Type": patch_type})
        assert patched.status_code < 500, patched.text
        assert c.delete(target).status_code < 500
        assert c.get("/readyz").text == "ok"
