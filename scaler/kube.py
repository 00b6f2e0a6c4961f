"""The Kubernetes calls of the fallback loop, through the official client (synchronous).

Only what the scaler's RBAC allows (k8s/base/rbac-scaler.yaml): list
Deployments and HorizontalPodAutoscalers, get and patch ``deployments/scale``,
create Events, and get/create/update one Lease. Callers on an event loop run
these in a thread. Every failure is a ``KubeError`` (``conflict`` for 409).
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

log = logging.getLogger(__name__)

COMPONENT = "brix-scaler"
MERGE_PATCH = "application/merge-patch+json"
TIMEOUT = 10.0  # seconds for any one API call


class KubeError(Exception):
    """A Kubernetes call failed; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def conflict(self) -> bool:
        return self.status == 409


def connect(kubeconfig: str | None) -> client.ApiClient:
    """An API client: ``kubeconfig``, else ``$KUBECONFIG``, else the in-cluster config."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    try:
        if path:
            api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=path)
            return api
        configuration = client.Configuration()
        config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration)
        return client.ApiClient(configuration)
    except (ConfigException, OSError) as exc:
        where = f"kubeconfig {path}" if path else "the in-cluster config (no --kubeconfig given)"
        raise KubeError(f"cannot load {where}: {exc}") from None


def _fail(what: str, exc: ApiException) -> KubeError:
    reason = exc.reason or ""
    try:
        import json

        body = json.loads(exc.body or "{}")
        reason = body.get("message") or reason
    except ValueError:
        pass
    return KubeError(f"{what}: {exc.status} {reason}".strip(), status=exc.status)


def _call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one API call; every way it can fail becomes a ``KubeError`` saying ``what``."""
    try:
        return fn(*args, _request_timeout=TIMEOUT, **kwargs)
    except ApiException as exc:
        raise _fail(what, exc) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise KubeError(f"{what}: the API server is unreachable: {exc}") from None


def _time(value: datetime.datetime) -> str:
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class DeploymentInfo:
    namespace: str
    name: str
    uid: str
    replicas: int
    labels: dict[str, str]
    annotations: dict[str, str]


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    holder: str
    duration: float
    renew_time: str
    acquire_time: str
    transitions: int
    resource_version: str


class Kube:
    """The calls the loop makes, each raising ``KubeError``."""

    def __init__(self, api: client.ApiClient) -> None:
        self.apps = client.AppsV1Api(api)
        self.autoscaling = client.AutoscalingV2Api(api)
        self.core = client.CoreV1Api(api)
        self.coordination = client.CoordinationV1Api(api)

    # --- workloads ---------------------------------------------------------

    def deployments(self, namespace: str = "") -> list[DeploymentInfo]:
        if namespace:
            found = _call("listing Deployments", self.apps.list_namespaced_deployment, namespace)
        else:
            found = _call("listing Deployments", self.apps.list_deployment_for_all_namespaces)
        out = []
        for d in found.items:
            meta = d.metadata
            replicas = d.spec.replicas if d.spec.replicas is not None else 1
            out.append(DeploymentInfo(
                namespace=meta.namespace, name=meta.name, uid=meta.uid or "",
                replicas=int(replicas), labels=dict(meta.labels or {}),
                annotations=dict(meta.annotations or {})))
        return out

    def hpa_targets(self, namespace: str = "") -> dict[tuple[str, str], str]:
        """(namespace, Deployment name) -> the HPA that targets it (KEDA's included)."""
        what = "listing HorizontalPodAutoscalers"
        api = self.autoscaling
        if namespace:
            found = _call(what, api.list_namespaced_horizontal_pod_autoscaler, namespace)
        else:
            found = _call(what, api.list_horizontal_pod_autoscaler_for_all_namespaces)
        out: dict[tuple[str, str], str] = {}
        for hpa in found.items:
            ref = hpa.spec.scale_target_ref
            if ref is not None and ref.kind == "Deployment":
                out[(hpa.metadata.namespace, ref.name)] = hpa.metadata.name
        return out

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        """Set replicas through the ``deployments/scale`` subresource."""
        _call(f"scaling Deployment {namespace}/{name}",
              self.apps.patch_namespaced_deployment_scale, name, namespace,
              {"spec": {"replicas": replicas}}, _content_type=MERGE_PATCH)

    def event(self, d: DeploymentInfo, *, reason: str, message: str, warning: bool = False,
              instance: str = "") -> None:
        now = _time(datetime.datetime.now(datetime.UTC))
        body: dict[str, Any] = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{d.name}.", "namespace": d.namespace},
            "involvedObject": {"apiVersion": "apps/v1", "kind": "Deployment",
                               "namespace": d.namespace, "name": d.name, "uid": d.uid},
            "reason": reason, "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
            "reportingInstance": instance, "firstTimestamp": now, "lastTimestamp": now,
            "count": 1,
        }
        _call(f"recording an Event on {d.namespace}/{d.name}",
              self.core.create_namespaced_event, d.namespace, body)

    # --- the Lease ---------------------------------------------------------

    def read_lease(self, namespace: str, name: str) -> LeaseRecord | None:
        try:
            lease = _call(f"reading Lease {namespace}/{name}",
                          self.coordination.read_namespaced_lease, name, namespace)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        spec = lease.spec
        return LeaseRecord(
            holder=spec.holder_identity or "",
            duration=float(spec.lease_duration_seconds or 0),
            renew_time=_time(spec.renew_time) if spec.renew_time else "",
            acquire_time=_time(spec.acquire_time) if spec.acquire_time else "",
            transitions=int(spec.lease_transitions or 0),
            resource_version=lease.metadata.resource_version or "",
        )

    def write_lease(self, namespace: str, name: str, *, holder: str, duration: float,
                    acquire_time: str, transitions: int, resource_version: str | None) -> None:
        """Create the Lease (``resource_version`` None) or replace exactly that version."""
        now = _time(datetime.datetime.now(datetime.UTC))
        metadata: dict[str, Any] = {"name": name, "namespace": namespace}
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        body = {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata,
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": max(1, round(duration)),
                     "acquireTime": acquire_time or now, "renewTime": now,
                     "leaseTransitions": transitions},
        }
        what = f"writing Lease {namespace}/{name}"
        if resource_version is None:
            _call(what, self.coordination.create_namespaced_lease, namespace, body)
        else:
            _call(what, self.coordination.replace_namespaced_lease, name, namespace, body)
