"""The engine's HTTP API as the sidecar uses it (vLLM's OpenAI server, or the sim).

Exceptions::

    EngineError                 the engine could not do what was asked
    ├── EngineUnavailable       no answer: connection refused, reset, or timed out
    └── EngineRejected          an HTTP error answer; carries its status and message
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp


class EngineError(Exception):
    """The engine could not do what was asked."""


class EngineUnavailable(EngineError):
    """The engine did not answer (refused, reset, timed out)."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class EngineRejected(EngineError):
    """The engine answered with an HTTP error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"engine answered {status}: {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class ServedModel:
    """One entry of the engine's /v1/models: a base model, or an adapter (``parent`` set)."""

    id: str
    parent: str | None
    root: str | None

    @property
    def is_adapter(self) -> bool:
        return self.parent is not None


def _error_message(status: int, text: str) -> str:
    """The message of an error answer: OpenAI's/vLLM's ``error.message``, else the text."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        return text.strip()[:500] or f"HTTP {status}"
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
        if isinstance(err, str):
            return err
        if isinstance(body.get("message"), str):
            return str(body["message"])
        if isinstance(body.get("detail"), str):
            return str(body["detail"])
    return text.strip()[:500]


def parse_models(body: Any) -> list[ServedModel]:
    """The entries of a /v1/models answer; ValueError when it is not that shape."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise ValueError("not an OpenAI model list")
    out: list[ServedModel] = []
    for item in body["data"]:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise ValueError("model entry without an id")
        parent = item.get("parent")
        root = item.get("root")
        out.append(ServedModel(
            id=item["id"],
            parent=parent if isinstance(parent, str) else None,
            root=root if isinstance(root, str) else None,
        ))
    return out


class EngineClient:
    """Calls the engine over one pool of keep-alive connections; ``aclose()`` at shutdown.

    aiohttp rather than httpx here: a scrape makes two engine calls, and aiohttp
    spends about a third of httpx's CPU time on each (bench/sidecar/RESULTS.md),
    which is what a busy pod's scrape latency is made of. Create it inside the
    running event loop.
    """

    def __init__(
        self, base_url: str, *, metrics_timeout: float, engine_timeout: float,
        ready_timeout: float,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._metrics_timeout = metrics_timeout
        self._engine_timeout = engine_timeout
        self._ready_timeout = ready_timeout
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=32, force_close=False),
            trust_env=False,  # the engine is in this pod: never through a proxy
        )

    async def aclose(self) -> None:
        await self._session.close()

    async def _request(
        self, method: str, path: str, *, timeout_s: float, json_body: Any = None,
    ) -> str:
        """The body of a successful answer, as text."""
        try:
            async with self._session.request(
                method, self.base_url + path, json=json_body,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as response:
                text = await response.text(errors="replace")
                status = response.status
        except TimeoutError as exc:
            raise EngineUnavailable(
                f"the engine at {self.base_url} did not answer {method} {path} "
                f"within {timeout_s:g}s", timed_out=True,
            ) from exc
        except aiohttp.ClientError as exc:
            raise EngineUnavailable(
                f"the engine at {self.base_url} does not answer ({type(exc).__name__}: {exc})"
            ) from exc
        if status >= 400:
            raise EngineRejected(status, _error_message(status, text))
        return text

    async def metrics_text(self) -> str:
        """The engine's Prometheus exposition, as text."""
        return await self._request("GET", "/metrics", timeout_s=self._metrics_timeout)

    async def models(self, *, timeout_s: float | None = None) -> list[ServedModel]:
        """The engine's /v1/models: its base model(s) and loaded adapters."""
        text = await self._request(
            "GET", "/v1/models", timeout_s=timeout_s or self._metrics_timeout
        )
        try:
            return parse_models(json.loads(text))
        except ValueError as exc:  # JSONDecodeError is one
            raise EngineRejected(502, f"unexpected /v1/models answer: {exc}") from exc

    async def adapters(self) -> list[ServedModel]:
        """The adapters loaded now (entries of /v1/models with a parent)."""
        return [m for m in await self.models(timeout_s=self._engine_timeout) if m.is_adapter]

    async def load_adapter(self, name: str, path: str) -> None:
        """vLLM's ``POST /v1/load_lora_adapter``. Raises EngineRejected (400: already
        loaded or a name clash, 404: no adapter at the path, 500: bad weights)."""
        await self._request(
            "POST", "/v1/load_lora_adapter", timeout_s=self._engine_timeout,
            json_body={"lora_name": name, "lora_path": path},
        )

    async def unload_adapter(self, name: str) -> None:
        """vLLM's ``POST /v1/unload_lora_adapter``. Raises EngineRejected (404: not loaded)."""
        await self._request(
            "POST", "/v1/unload_lora_adapter", timeout_s=self._engine_timeout,
            json_body={"lora_name": name},
        )

    async def complete_one_token(self, model: str) -> None:
        """A real, one-token completion: what readiness means for vLLM, whose /health
        answers before it can serve."""
        text = await self._request(
            "POST", "/v1/completions", timeout_s=self._ready_timeout,
            json_body={"model": model, "prompt": "ready?", "max_tokens": 1, "temperature": 0},
        )
        try:
            body = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EngineRejected(502, "the completion answer is not JSON") from exc
        if not isinstance(body, dict) or not body.get("choices"):
            raise EngineRejected(502, "the completion answer has no choices")
