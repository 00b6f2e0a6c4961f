"""Kopf, a real operator framework, against localkube."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.helpers.localkube import kubectl
from tests.helpers.procs import ProcessGroup
from tests.integration.localkube_api.conftest import Localkube, eventually
from tests.integration.localkube_api.test_kubectl import CRD

OPERATOR = Path(__file__).with_name("kopf_operator.py")
G, V, P = "example.com", "v1", "gadgets"


def test_kopf_handlers_finalizer_and_status(localkube: Localkube, procs: ProcessGroup,
                                            api_client: client.ApiClient) -> None:
    kc = localkube.kubeconfig
    kubectl(kc, "apply", "-f", "-", input=CRD)
    kubectl(kc, "wait", "--for=condition=Established", "crd/gadgets.example.com",
            "--timeout=10s")
    ns = f"kopf-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api_client).create_namespace({"metadata": {"name": ns}})
    operator = procs.start(
        [sys.executable, "-m", "kopf", "run", "--standalone", "--namespace", ns, str(OPERATOR)],
        name="kopf", env={"KUBECONFIG": str(kc)}, ready=None)
    custom = client.CustomObjectsApi(api_client)
    custom.create_namespaced_custom_object(G, V, ns, P, {
        "apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"},
        "spec": {"size": 2}})
    operator.wait_for("created gadget g", timeout=30)

    def status() -> dict[str, Any]:
        obj = custom.get_namespaced_custom_object(G, V, ns, P, "g")
        result: dict[str, Any] = obj.get("status") or {}
        return result

    eventually(lambda: status().get("seen") == 2, timeout=15)
    obj = custom.get_namespaced_custom_object(G, V, ns, P, "g")
    assert obj["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]

    custom.patch_namespaced_custom_object(G, V, ns, P, "g", {"spec": {"size": 5}})
    operator.wait_for("updated gadget g to 5", timeout=30)
    eventually(lambda: status().get("seen") == 5 and status().get("phase") == "Updated",
               timeout=15)

    custom.delete_namespaced_custom_object(G, V, ns, P, "g")
    operator.wait_for("deleted gadget g", timeout=30)

    def gone() -> bool:
        try:
            custom.get_namespaced_custom_object(G, V, ns, P, "g")
        except ApiException as exc:
            return exc.status == 404
        return False

    eventually(gone, timeout=15)
    assert "Traceback" not in operator.output()
