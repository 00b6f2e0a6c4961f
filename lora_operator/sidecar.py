"""The sidecars' management API, as the operator calls it (httpx, async).

``GET /v1/adapters``, ``POST /v1/adapters {"name", "source", "sha256"?}``,
``DELETE /v1/adapters/{name}`` at each pod's IP and its ``sidecar`` port
(DESIGN.md), with a bearer token when one is configured.

Every failure is a :class:`SidecarError` whose ``kind`` says what to do::

    SidecarError
    ├── kind "unreachable"   connection refused, timeout, 5xx: retry with backoff
    ├── kind "unauthorized"  401/403: the token is wrong; re-read it, retry with backoff
    └── kind "refused"       another 4xx: the request is wrong (a bad source); report it
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import httpx

from lora_operator.model import FailureKind, Loaded, PodInfo, parse_adapter_list


class SidecarError(Exception):
    """A sidecar call that did not succeed; ``kind`` classifies it (see the module doc)."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind
        self.message = message


def _error_text(response: httpx.Response) -> str:
    """The message of an error answer: OpenAI's shape, FastAPI's ``detail``, or the text."""
    try:
        body: Any = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
        if "detail" in body:
            return str(body["detail"])
        if body.get("message"):
            return str(body["message"])
    text = response.text.strip()
    return text[:500] if text else response.reason_phrase


class Sidecars:
    """HTTP clients for the sidecars: one small pool per pod, ``max_concurrent`` calls in all.

    One pool per pod rather than one shared pool: httpcore matches queued
    requests to connections by scanning its whole pool, which grows
    quadratically costly with hundreds of calls spread over many pods. Each pod
    gets at most ``per_pod`` calls at once (the rest wait here, not in the pool),
    which also keeps one sidecar from being flooded.
    """

    def __init__(
        self,
        *,
        timeout: float,
        max_concurrent: int,
        load_timeout: float | None = None,  # None: ``timeout``
        per_pod: int = 8,
        transport: httpx.AsyncBaseTransport | None = None,  # None except in tests
    ) -> None:
        self._timeout = timeout
        self._load_timeout = load_timeout or timeout
        self._per_pod = per_pod
        self._transport = transport
        self._clients: dict[tuple[str, int], tuple[httpx.AsyncClient, asyncio.Semaphore]] = {}
        self._slots = asyncio.Semaphore(max_concurrent)

    def _client(self, pod: PodInfo) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        key = (str(pod.ip), pod.port)
        found = self._clients.get(key)
        if found is None:
            client = httpx.AsyncClient(
                timeout=httpx.Timeout(self._timeout, connect=min(self._timeout, 5.0)),
                limits=httpx.Limits(max_connections=self._per_pod,
                                    max_keepalive_connections=self._per_pod),
                transport=self._transport,
                trust_env=False,  # pod IPs are never reached through a proxy
            )
            found = self._clients[key] = (client, asyncio.Semaphore(self._per_pod))
        return found

    async def forget(self, pod: PodInfo) -> None:
        """Close the pool of a pod that is gone."""
        found = self._clients.pop((str(pod.ip), pod.port), None)
        if found is not None:
            await found[0].aclose()

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for client, _ in clients.values():
            await client.aclose()

    async def _call(
        self, method: str, pod: PodInfo, path: str, *, token: str | None,
        body: dict[str, Any] | None = None, seconds: float | None = None,
    ) -> httpx.Response:
        if not pod.ip:
            raise SidecarError("unreachable", "the pod has no IP yet")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        url = pod.sidecar_url + path
        client, pod_slots = self._client(pod)
        seconds = seconds or self._timeout
        limit = httpx.Timeout(seconds, connect=min(seconds, 5.0))
        try:
            async with self._slots, pod_slots:
                try:
                    response = await client.request(method, url, json=body, headers=headers,
                                                    timeout=limit)
                except httpx.RemoteProtocolError:
                    # A kept-alive connection the sidecar closed as we reused it. Every
                    # call of this API is idempotent, so one more try is safe.
                    response = await client.request(method, url, json=body, headers=headers,
                                                    timeout=limit)
        except httpx.TimeoutException:
            raise SidecarError(
                "unreachable", f"{method} {url}: no answer within {seconds:g}s") from None
        except httpx.HTTPError as exc:
            raise SidecarError("unreachable", f"{method} {url}: {exc or type(exc).__name__}"
                               ) from None
        except RuntimeError as exc:  # its pool was closed under it: the pod is gone
            raise SidecarError("unreachable", f"{method} {url}: {exc}") from None
        if response.status_code in (401, 403):
            raise SidecarError("unauthorized", f"{method} {url}: {response.status_code} "
                               f"{_error_text(response)}")
        if response.status_code >= 500:
            raise SidecarError("unreachable", f"{method} {url}: {response.status_code} "
                               f"{_error_text(response)}")
        return response

    async def list(self, pod: PodInfo, *, token: str | None) -> tuple[Loaded, ...]:
        """The adapters the pod's sidecar says are loaded."""
        response = await self._call("GET", pod, "/v1/adapters", token=token)
        if response.status_code != 200:
            raise SidecarError("unreachable", f"GET /v1/adapters: {response.status_code} "
                               f"{_error_text(response)}")
        try:
            return parse_adapter_list(response.json())
        except ValueError as exc:
            raise SidecarError("unreachable", f"GET /v1/adapters: bad answer: {exc}") from None

    async def load(
        self, pod: PodInfo, *, name: str, source: str, sha256: str | None, token: str | None,
    ) -> None:
        """Load ``name`` from ``source`` (idempotent on the sidecar's side)."""
        body: dict[str, Any] = {"name": name, "source": source}
        if sha256:
            body["sha256"] = sha256
        response = await self._call("POST", pod, "/v1/adapters", token=token, body=body,
                                    seconds=self._load_timeout)
        if response.status_code >= 400:
            raise SidecarError("refused", _error_text(response))

    async def unload(self, pod: PodInfo, *, name: str, token: str | None) -> None:
        """Unload ``name``; an adapter that is not there counts as unloaded."""
        response = await self._call(
            "DELETE", pod, f"/v1/adapters/{quote(name, safe='')}", token=token)
        if response.status_code >= 400 and response.status_code != 404:
            raise SidecarError("refused", _error_text(response))
