"""The Deployment controller: Deployments -> Pods, and Deployment status.

There are no ReplicaSets in localkube: the controller creates a Deployment's
pods itself, named ``<deployment>-<pod-template-hash>-<suffix>``, labelled with
the template's hash and owned (``ownerReferences``, controller) by the
Deployment. What to create and delete is decided by ``rollout.plan``; this
module gathers the pods from the caches and applies the plan.

Caches lag behind writes, so each create and delete is remembered until the
pod watch shows it (the sample-controller's "expectations"); a Deployment with
unobserved writes is not planned again until they show, or after a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Final

from localkube.node.client import DEPLOYMENTS, PODS, ApiClient, ApiError, JsonObj
from localkube.node.informer import Informer, WorkQueue, key_of
from localkube.node.podstatus import now_rfc3339
from localkube.node.rollout import HASH_LABEL, deployment_status, plan

log = logging.getLogger(__name__)

EXPECTATION_TIMEOUT_SECONDS: Final = 30.0


@dataclass
class _Expectations:
    created: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    deadline: float = 0.0


def controller_uid(obj: JsonObj, kind: str) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == kind:
            return str(ref.get("uid", ""))
    return None


def controller_name(obj: JsonObj, kind: str) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == kind:
            return str(ref.get("name", ""))
    return None


def pod_for(deployment: JsonObj, pod_hash: str) -> JsonObj:
    """A new pod from the Deployment's template."""
    meta = deployment.get("metadata") or {}
    template = (deployment.get("spec") or {}).get("template") or {}
    tmeta = template.get("metadata") or {}
    labels = {**(tmeta.get("labels") or {}), HASH_LABEL: pod_hash}
    pod_meta: JsonObj = {
        "generateName": f"{meta.get('name')}-{pod_hash}-",
        "namespace": meta.get("namespace") or "default",
        "labels": labels,
        "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "Deployment", "name": meta.get("name"),
            "uid": meta.get("uid"), "controller": True, "blockOwnerDeletion": True,
        }],
    }
    if tmeta.get("annotations"):
        pod_meta["annotations"] = dict(tmeta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta,
            "spec": dict(template.get("spec") or {})}


class DeploymentController:
    def __init__(self, api: ApiClient, deployments: Informer, pods: Informer) -> None:
        self._api = api
        self._deployments = deployments
        self._pods = pods
        self.queue = WorkQueue()
        self._expect: dict[str, _Expectations] = {}
        deployments.add_handler(lambda _kind, obj: self.queue.add(key_of(obj)))
        pods.add_handler(self._on_pod)

    def _on_pod(self, _kind: str, pod: JsonObj) -> None:
        owner = controller_name(pod, "Deployment")
        if owner:
            ns = (pod.get("metadata") or {}).get("namespace") or "default"
            self.queue.add(f"{ns}/{owner}")

    def _owned(self, deployment: JsonObj) -> list[JsonObj]:
        meta = deployment.get("metadata") or {}
        uid, ns = meta.get("uid"), meta.get("namespace") or "default"
        return [p for p in self._pods.items()
                if (p.get("metadata") or {}).get("namespace") == ns
                and controller_uid(p, "Deployment") == uid]

    def _waiting(self, key: str, ns: str) -> bool:
        exp = self._expect.get(key)
        if exp is None:
            return False
        if time.monotonic() > exp.deadline:
            self._expect.pop(key, None)
            return False
        exp.created = {n for n in exp.created if self._pods.get(f"{ns}/{n}") is None}
        exp.deleted = {n for n in exp.deleted
                       if (p := self._pods.get(f"{ns}/{n}")) is not None
                       and not (p.get("metadata") or {}).get("deletionTimestamp")}
        if exp.created or exp.deleted:
            self.queue.add_after(key, max(0.05, exp.deadline - time.monotonic()))
            return True
        self._expect.pop(key, None)
        return False

    async def sync(self, key: str) -> None:
        deployment = self._deployments.get(key)
        if deployment is None:
            self._expect.pop(key, None)
            return
        meta = deployment.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return
        ns = str(meta.get("namespace") or "default")
        if self._waiting(key, ns):
            return
        pods = self._owned(deployment)
        step = plan(deployment, pods, now=time.time())
        exp = _Expectations(deadline=time.monotonic() + EXPECTATION_TIMEOUT_SECONDS)
        for _ in range(step.create):
            created = await self._api.create(PODS, ns, pod_for(deployment, step.template_hash))
            exp.created.add(str((created.get("metadata") or {}).get("name", "")))
        for name in step.delete:
            try:
                await self._api.delete(PODS, ns, name)
                exp.deleted.add(name)
            except ApiError as exc:
                if exc.status != 404:
                    raise
        if exp.created or exp.deleted:
            self._expect[key] = exp
        await self._write_status(deployment, pods)
        if step.requeue_after is not None:
            self.queue.add_after(key, step.requeue_after)

    async def _write_status(self, deployment: JsonObj, pods: list[JsonObj]) -> None:
        meta = deployment.get("metadata") or {}
        status = deployment_status(deployment, pods, now=time.time(), now_text=now_rfc3339())
        current: dict[str, Any] = deployment.get("status") or {}
        if all(current.get(k) == v for k, v in status.items()):
            return
        try:
            await self._api.patch(DEPLOYMENTS, meta.get("namespace"), str(meta.get("name")),
                                  {"status": status}, subresource="status")
        except ApiError as exc:
            if exc.status != 404:
                raise

    async def run(self, stop: asyncio.Event) -> None:
        await self._deployments.synced.wait()
        await self._pods.synced.wait()
        await self.queue.run(stop, self.sync, name="deployments")
