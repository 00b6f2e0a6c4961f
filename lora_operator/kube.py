"""The few Kubernetes API calls the operator makes itself (Kopf does the watching).

Status patches of LoraAdapter objects and reading the sidecar-token Secret,
with the official client (run in a worker thread: it is synchronous).
Connection: ``--kubeconfig``, else ``$KUBECONFIG``, else in-cluster.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Mapping
from typing import Any

import kubernetes

from brix.contract import LORA_GROUP, LORA_PLURAL, LORA_VERSION

logger = logging.getLogger(__name__)


def api_client(kubeconfig: str | None) -> Any:
    """An ApiClient for the usual connection: explicit file, $KUBECONFIG/~/.kube, in-cluster."""
    configuration = kubernetes.client.Configuration()
    if kubeconfig:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration)
    else:
        try:
            kubernetes.config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration)
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration)
    return kubernetes.client.ApiClient(configuration)


class Kube:
    """Status writes and Secret reads; every method is async (a thread underneath)."""

    def __init__(self, client: Any) -> None:
        self._custom = kubernetes.client.CustomObjectsApi(client)
        self._core = kubernetes.client.CoreV1Api(client)

    async def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> bool:
        """Merge-patch ``status``; False when the object is gone (nothing to report on)."""
        try:
            await asyncio.to_thread(
                self._custom.patch_namespaced_custom_object_status,
                LORA_GROUP, LORA_VERSION, namespace, LORA_PLURAL, name, {"status": dict(status)},
            )
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def ensure_peering(self, name: str, namespaces: list[str]) -> str | None:
        """Create Kopf's peering object(s) named ``name`` if missing; a warning, or None.

        Kopf only patches the object (it never creates it); without it every
        replica would work at once. Cluster-wide operators share a
        ClusterKopfPeering, namespaced ones a KopfPeering per namespace.
        """
        body = {"apiVersion": "kopf.dev/v1", "metadata": {"name": name}}
        calls: list[tuple[Any, tuple[Any, ...]]] = []
        if namespaces:
            for ns in namespaces:
                calls.append((self._custom.create_namespaced_custom_object, (
                    "kopf.dev", "v1", ns, "kopfpeerings", {**body, "kind": "KopfPeering"})))
        else:
            calls.append((self._custom.create_cluster_custom_object, (
                "kopf.dev", "v1", "clusterkopfpeerings",
                {**body, "kind": "ClusterKopfPeering"})))
        for create, args in calls:
            try:
                await asyncio.to_thread(create, *args)
            except kubernetes.client.ApiException as exc:
                if exc.status == 409:
                    continue  # already there
                if exc.status == 404:
                    return ("Kopf's peering CRDs are not installed (k8s/crds/kopf-peering.yaml): "
                            "every replica of the operator will be active")
                return f"cannot create the peering object {name!r}: {exc.status} {exc.reason}"
        return None

    async def read_secret(self, namespace: str, name: str, key: str) -> str | None:
        """The decoded value of ``key`` in a Secret; None when the Secret or key is absent."""
        try:
            secret = await asyncio.to_thread(self._core.read_namespaced_secret, name, namespace)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        data = secret.data or {}
        if key in data:
            return base64.b64decode(data[key]).decode().strip()
        string_data = getattr(secret, "string_data", None) or {}
        value = string_data.get(key)
        return str(value).strip() if value is not None else None
