"""Keeps each Service's Endpoints and EndpointSlices equal to ``endpoints.build_*``.

Services without a selector are left alone (their Endpoints are the user's).
Any pod change re-syncs the Services of its namespace.
"""

from __future__ import annotations

import asyncio

from localkube.node.client import (
    ENDPOINTS,
    ENDPOINTSLICES,
    ApiClient,
    ApiError,
    JsonObj,
    Resource,
)
from localkube.node.endpoints import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    SERVICE_NAME_LABEL,
    build_endpoints,
    build_slices,
    same_content,
)
from localkube.node.informer import Informer, WorkQueue, key_of


class EndpointsController:
    def __init__(self, api: ApiClient, services: Informer, pods: Informer,
                 endpoints: Informer, slices: Informer) -> None:
        self._api = api
        self._services = services
        self._pods = pods
        self._endpoints = endpoints
        self._slices = slices
        self.queue = WorkQueue()
        services.add_handler(lambda _k, svc: self.queue.add(key_of(svc)))
        pods.add_handler(self._on_pod)
        endpoints.add_handler(lambda _k, ep: self.queue.add(key_of(ep)))
        slices.add_handler(self._on_slice)

    def _on_pod(self, _kind: str, pod: JsonObj) -> None:
        ns = (pod.get("metadata") or {}).get("namespace") or "default"
        for svc in self._services.items():
            if (svc.get("metadata") or {}).get("namespace") == ns:
                self.queue.add(key_of(svc))

    def _on_slice(self, _kind: str, es: JsonObj) -> None:
        meta = es.get("metadata") or {}
        svc = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if svc:
            self.queue.add(f"{meta.get('namespace') or 'default'}/{svc}")

    def _managed_slices(self, ns: str, name: str) -> list[JsonObj]:
        out = []
        for es in self._slices.items():
            meta = es.get("metadata") or {}
            labels = meta.get("labels") or {}
            if (meta.get("namespace") == ns and labels.get(SERVICE_NAME_LABEL) == name
                    and labels.get(MANAGED_BY_LABEL) == MANAGED_BY):
                out.append(es)
        return out

    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        service = self._services.get(key)
        if service is None or not (service.get("spec") or {}).get("selector"):
            if service is None:
                await self._delete(ENDPOINTS, ns, name,
                                   managed=self._endpoints.get(key) is not None)
            for es in self._managed_slices(ns, name):
                await self._delete(ENDPOINTSLICES, ns, str(es["metadata"]["name"]), managed=True)
            return
        pods = list(self._pods.items())
        await self._apply(ENDPOINTS, ns, build_endpoints(service, pods))
        wanted = build_slices(service, pods)
        names = {str(s["metadata"]["name"]) for s in wanted}
        for es in wanted:
            await self._apply(ENDPOINTSLICES, ns, es)
        for es in self._managed_slices(ns, name):
            if es["metadata"]["name"] not in names:
                await self._delete(ENDPOINTSLICES, ns, str(es["metadata"]["name"]), managed=True)

    async def _apply(self, resource: Resource, ns: str, desired: JsonObj) -> None:
        informer = self._endpoints if resource is ENDPOINTS else self._slices
        name = str(desired["metadata"]["name"])
        current = informer.get(f"{ns}/{name}")
        if current is None:
            try:
                await self._api.create(resource, ns, desired)
                return
            except ApiError as exc:
                if exc.status != 409:
                    raise
                current = await self._api.get(resource, ns, name)
        if same_content(current, desired):
            return
        # A merge patch replaces the lists whole and needs no resourceVersion, so a cache
        # that lags our own last write cannot make it conflict.
        body = {k: v for k, v in desired.items() if k not in ("apiVersion", "kind", "metadata")}
        labels: dict[str, str | None] = dict(desired["metadata"]["labels"])
        for key in (current.get("metadata") or {}).get("labels") or {}:
            labels.setdefault(key, None)  # removed from the Service: remove here too
        body["metadata"] = {"labels": labels,
                            "ownerReferences": desired["metadata"]["ownerReferences"]}
        await self._api.patch(resource, ns, name, body)

    async def _delete(self, resource: Resource, ns: str, name: str, *, managed: bool) -> None:
        if not managed:
            return
        try:
            await self._api.delete(resource, ns, name)
        except ApiError as exc:
            if exc.status != 404:
                raise

    async def run(self, stop: asyncio.Event) -> None:
        for informer in (self._services, self._pods, self._endpoints, self._slices):
            await informer.synced.wait()
        await self.queue.run(stop, self.sync, name="endpoints")
