"""The bearer token for the sidecars: explicit (``BRIX_SIDECAR_TOKEN``) or from a Secret.

The Secret is read from the adapter's namespace (where the model's pods and
their Secret live) and cached for ``ttl`` seconds; a 401/403 from a sidecar
drops the cached value so the next call re-reads it (a rotated token).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

SecretReader = Callable[[str, str, str], Awaitable[str | None]]  # (namespace, name, key)


class Tokens:
    def __init__(
        self,
        *,
        explicit: str | None,
        secret_name: str,
        secret_key: str,
        reader: SecretReader | None,  # None: no Secret lookups (explicit token or none)
        ttl: float = 60.0,
    ) -> None:
        self._explicit = explicit
        self._name = secret_name
        self._key = secret_key
        self._reader = reader
        self._ttl = ttl
        self._cache: dict[str, tuple[float, str | None]] = {}

    async def get(self, namespace: str) -> str | None:
        if self._explicit:
            return self._explicit
        if self._reader is None or not self._name:
            return None
        cached = self._cache.get(namespace)
        if cached is not None and time.monotonic() - cached[0] < self._ttl:
            return cached[1]
        try:
            value = await self._reader(namespace, self._name, self._key)
        except Exception as exc:  # RBAC, API down: call the sidecars without a token
            logger.warning("cannot read Secret %s/%s: %s", namespace, self._name, exc)
            value = None
        self._cache[namespace] = (time.monotonic(), value)
        return value

    def invalidate(self, namespace: str) -> None:
        self._cache.pop(namespace, None)
