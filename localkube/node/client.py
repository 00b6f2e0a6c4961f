"""A small async Kubernetes REST client for the node's controllers (aiohttp).

The controllers are clients of the API like any other: they speak the standard
REST conventions (list + watch from a resourceVersion, merge patches to the
``status`` subresource, DELETE with ``gracePeriodSeconds`` and preconditions)
and never import the API server's modules.

Errors::

    ApiError            any non-2xx answer (``status``, ``reason``, ``message``)
    └── WatchExpired    410 Gone on a watch: relist and watch again
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import yaml

JsonObj = dict[str, Any]

MERGE_PATCH: Final = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH: Final = "application/strategic-merge-patch+json"


@dataclass(frozen=True, slots=True)
class Resource:
    """Where a kind lives in the REST tree."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
        if subresource:
            base += f"/{subresource}"
        return base


PODS: Final = Resource("", "v1", "pods", "Pod")
SERVICES: Final = Resource("", "v1", "services", "Service")
ENDPOINTS: Final = Resource("", "v1", "endpoints", "Endpoints")
CONFIGMAPS: Final = Resource("", "v1", "configmaps", "ConfigMap")
SECRETS: Final = Resource("", "v1", "secrets", "Secret")
EVENTS: Final = Resource("", "v1", "events", "Event")
DEPLOYMENTS: Final = Resource("apps", "v1", "deployments", "Deployment")
ENDPOINTSLICES: Final = Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")


class ApiError(Exception):
    """The API answered with an error ``Status``."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class WatchExpired(ApiError):
    """The resourceVersion to resume from is older than the server's history."""


def token_from_kubeconfig(path: Path) -> str | None:
    """The bearer token of the current context's user, if the kubeconfig has one."""
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return None
    current = cfg.get("current-context")
    user_name = None
    for ctx in cfg.get("contexts") or []:
        if ctx.get("name") == current:
            user_name = (ctx.get("context") or {}).get("user")
    for user in cfg.get("users") or []:
        if user.get("name") == user_name:
            token = (user.get("user") or {}).get("token")
            return str(token) if token else None
    return None


class ApiClient:
    """Async access to one API server. Use as ``async with ApiClient(url) as api``."""

    def __init__(self, base_url: str, *, token: str | None = None,
                 ca_file: Path | None = None) -> None:
        self._base = base_url.rstrip("/")
        self._ssl = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ApiClient:
        self._session = aiohttp.ClientSession(
            headers=self._headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            connector=aiohttp.TCPConnector(limit=32, ssl=self._ssl or True),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("ApiClient used outside 'async with'")
        return self._session

    async def _request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                       body: Any = None, content_type: str = "application/json",
                       seconds: float = 30.0) -> JsonObj:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        async with self.session.request(
            method, self._base + path, params=params or None, data=data, headers=headers,
            timeout=aiohttp.ClientTimeout(total=seconds),
        ) as resp:
            text = await resp.text()
            if resp.status >= 400:
                raise _error(resp.status, text)
            return json.loads(text) if text else {}

    async def get(self, res: Resource, namespace: str | None, name: str) -> JsonObj:
        return await self._request("GET", res.path(namespace, name))

    async def list(self, res: Resource, namespace: str | None = None, *,
                   label_selector: str | None = None) -> JsonObj:
        params = {"labelSelector": label_selector} if label_selector else None
        return await self._request("GET", res.path(namespace), params=params, seconds=60.0)

    async def create(self, res: Resource, namespace: str | None, body: JsonObj, *,
                     name: str | None = None, subresource: str | None = None) -> JsonObj:
        """POST an object (or, with ``name`` and ``subresource``, to a subresource)."""
        return await self._request("POST", res.path(namespace, name, subresource), body=body)

    async def patch(self, res: Resource, namespace: str | None, name: str, body: JsonObj, *,
                    subresource: str | None = None, content_type: str = MERGE_PATCH) -> JsonObj:
        return await self._request("PATCH", res.path(namespace, name, subresource), body=body,
                                   content_type=content_type)

    async def replace(self, res: Resource, namespace: str | None, name: str,
                      body: JsonObj) -> JsonObj:
        return await self._request("PUT", res.path(namespace, name), body=body)

    async def delete(self, res: Resource, namespace: str | None, name: str, *,
                     grace_period_seconds: int | None = None,
                     uid: str | None = None) -> JsonObj:
        body: JsonObj = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        if uid is not None:
            body["preconditions"] = {"uid": uid}
        return await self._request("DELETE", res.path(namespace, name), body=body)

    async def watch(self, res: Resource, namespace: str | None = None, *,
                    resource_version: str | None, timeout_seconds: int = 300,
                    ) -> AsyncIterator[tuple[str, JsonObj]]:
        """Yield ``(type, object)`` events until the server ends the stream.

        Raises ``WatchExpired`` when the resourceVersion is too old (as a 410
        answer or as an ERROR event carrying a 410 Status).
        """
        params = {"watch": "true", "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(timeout_seconds)}
        if resource_version:
            params["resourceVersion"] = resource_version
        async with self.session.get(
            self._base + res.path(namespace), params=params,
            timeout=aiohttp.ClientTimeout(total=timeout_seconds + 30, sock_connect=10),
        ) as resp:
            if resp.status >= 400:
                raise _error(resp.status, await resp.text())
            buf = b""
            async for chunk in resp.content.iter_any():
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        yield _event(line)
            if buf.strip():
                yield _event(buf)


def _event(line: bytes) -> tuple[str, JsonObj]:
    event = json.loads(line)
    kind, obj = str(event.get("type", "")), event.get("object") or {}
    if kind == "ERROR":
        raise _status_error(obj)
    return kind, obj


def _error(status: int, text: str) -> ApiError:
    try:
        body = json.loads(text)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    body.setdefault("code", status)
    return _status_error(body)


def _status_error(status_obj: JsonObj) -> ApiError:
    code = int(status_obj.get("code") or 500)
    reason = str(status_obj.get("reason") or "")
    message = str(status_obj.get("message") or "")
    cls = WatchExpired if code == 410 else ApiError
    return cls(code, reason, message)


async def wait_for_api(api: ApiClient, stop: asyncio.Event, *, interval: float = 0.2) -> bool:
    """Wait until ``/version`` answers (the server may still be starting); False if stopped."""
    while not stop.is_set():
        try:
            await api._request("GET", "/version", seconds=5.0)
            return True
        except (aiohttp.ClientError, TimeoutError, ApiError, ValueError):
            pass
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await stop.wait()
    return False
