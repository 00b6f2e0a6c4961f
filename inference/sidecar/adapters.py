"""Loading and unloading adapters on the engine: idempotent, one call per name at a time.

- ``load``: already loaded from the same place -> nothing to do (200); loaded from
  another place -> 409; otherwise an archive source is downloaded and extracted
  into the cache (``fetch``, ``extract``) and the engine is asked to load it. On
  any failure the adapter's cache folder is removed: nothing partial stays.
- ``unload``: not loaded -> nothing to do; else the engine unloads it and its
  cache folder (if it came from an archive) is removed.

The engine's /v1/models is the truth about what is loaded (adapters also go away
when the engine restarts); the sidecar only remembers which source it used.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .engine_client import EngineClient, EngineError, EngineRejected, ServedModel
from .errors import ApiError
from .extract import adapter_root, extract_archive, remove_tree
from .fetch import download
from .settings import SidecarSettings
from .sources import (
    ArchiveSource,
    FileSource,
    cache_path,
    check_name,
    check_sha256,
    parse_source,
)

log = logging.getLogger(__name__)

_INCOMING_PREFIX = ".incoming-"


@dataclass(frozen=True, slots=True)
class AdapterInfo:
    name: str
    base_model: str | None
    path: str | None
    source: str | None
    sha256: str | None  # of the archive it came from; None for file:// sources

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "base_model": self.base_model, "path": self.path,
                "source": self.source, "sha256": self.sha256}


@dataclass(frozen=True, slots=True)
class _Origin:
    """What the sidecar remembers of an adapter it loaded."""

    source: str
    sha256: str | None


def engine_api_error(exc: EngineError, *, doing: str) -> ApiError:
    """An engine failure as the API reports it."""
    if isinstance(exc, EngineRejected):
        if exc.status in (404, 405) and exc.message in ("Not Found", "Method Not Allowed"):
            # The route itself is missing: vLLM adds it only with runtime LoRA updating.
            return ApiError(502, f"{doing}: the engine has no runtime LoRA API (start vLLM "
                            "with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True)",
                            code="engine_without_lora")
        if exc.status < 500:
            return ApiError(400, f"{doing}: the engine refused ({exc.status}): {exc.message}",
                            code="engine_rejected")
        return ApiError(502, f"{doing}: the engine failed ({exc.status}): {exc.message}",
                        code="engine_error")
    if getattr(exc, "timed_out", False):
        return ApiError(504, f"{doing}: {exc}", code="engine_timeout")
    return ApiError(503, f"{doing}: {exc}", code="engine_unavailable")


class AdapterManager:
    """The adapter API's logic. ``downloads`` is the HTTP client for archive sources."""

    def __init__(
        self, settings: SidecarSettings, engine: EngineClient, downloads: httpx.AsyncClient,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._downloads = downloads
        self._cache_dir = Path(settings.cache_dir)
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._origins: dict[str, _Origin] = {}

    def prepare_cache(self) -> None:
        """Create the cache folder and remove what an interrupted download left there."""
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        for leftover in self._cache_dir.glob(_INCOMING_PREFIX + "*"):
            log.info("removing an interrupted download: %s", leftover)
            remove_tree(leftover)

    async def _models(self, doing: str) -> list[ServedModel]:
        try:
            return await self._engine.models(timeout_s=self._settings.engine_timeout)
        except EngineError as exc:
            raise engine_api_error(exc, doing=doing) from None

    async def list(self) -> list[AdapterInfo]:
        models = await self._models("listing adapters")
        return [self._info(m.id, m.parent, m.root) for m in models if m.is_adapter]

    def _info(self, name: str, base: str | None, path: str | None) -> AdapterInfo:
        origin = self._origins.get(name)
        return AdapterInfo(name, base, path, origin.source if origin else None,
                           origin.sha256 if origin else None)

    async def load(
        self, name: object, source: object, sha256: object = None,
    ) -> tuple[AdapterInfo, bool]:
        """Load adapter ``name``; return its info and whether this call loaded it."""
        name = check_name(name)
        sha = check_sha256(sha256)
        src = parse_source(source, roots=self._settings.adapter_roots)
        assert isinstance(source, str)  # parse_source checked it
        if isinstance(src, FileSource) and sha is not None:
            raise ApiError(400, "`sha256` applies to http(s) archive sources only",
                           code="invalid_sha256", param="sha256")
        doing = f"loading adapter {name!r}"
        async with self._locks[name]:
            models = await self._models(doing)
            bases = [m.id for m in models if not m.is_adapter]
            base = bases[0] if bases else None
            if name in bases:
                raise ApiError(409, f"{name!r} is the name of the engine's base model",
                               code="name_conflict", param="name")
            if isinstance(src, FileSource):
                path = src.path
            else:
                path = cache_path(self._cache_dir, name, src.url, sha)
            current = next((m for m in models if m.id == name and m.is_adapter), None)
            if current is not None:
                if current.root is None or current.root == str(path):
                    return self._info(name, current.parent, current.root), False
                raise ApiError(
                    409, f"adapter {name!r} is loaded from {current.root}, not from this "
                    "source; unload it first to load another", code="adapter_conflict",
                    param="source",
                )
            try:
                if isinstance(src, ArchiveSource):
                    sha = await self._install_archive(src, path, name=name, sha256=sha)
                await self._engine.load_adapter(name, str(path))
            except BaseException as exc:
                if isinstance(src, ArchiveSource):  # nothing of a failed load stays
                    remove_tree(self._cache_dir / name)
                if isinstance(exc, EngineError):
                    raise engine_api_error(exc, doing=doing) from None
                raise
            self._origins[name] = _Origin(source, sha)
            log.info("loaded adapter %s from %s (%s)", name, source, path)
            return self._info(name, base, str(path)), True

    async def _install_archive(
        self, src: ArchiveSource, target: Path, *, name: str, sha256: str | None,
    ) -> str:
        """Download and extract into a temporary folder, then rename into ``target``;
        return the archive's sha256."""
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"{_INCOMING_PREFIX}{name}-", dir=self._cache_dir))
        try:
            archive = work / "archive"
            got = await download(
                self._downloads, src.url, archive, max_bytes=self._settings.max_download_bytes,
                sha256=sha256, timeout_s=self._settings.download_timeout,
            )
            extracted = work / "extracted"
            extracted.mkdir()
            await asyncio.to_thread(
                extract_archive, archive, extracted,
                max_bytes=self._settings.max_extracted_bytes,
            )
            root = adapter_root(extracted)
            remove_tree(self._cache_dir / name)  # an older copy, not loaded (checked above)
            target.parent.mkdir(parents=True)
            os.rename(root, target)
            return got
        finally:
            remove_tree(work)

    async def unload(self, name: object) -> bool:
        """Unload adapter ``name``; return whether it was loaded."""
        name = check_name(name)
        async with self._locks[name]:
            try:
                await self._engine.unload_adapter(name)
                was_loaded = True
            except EngineRejected as exc:
                mapped = engine_api_error(exc, doing=f"unloading adapter {name!r}")
                if exc.status != 404 or mapped.code == "engine_without_lora":
                    raise mapped from None
                was_loaded = False
            except EngineError as exc:
                raise engine_api_error(exc, doing=f"unloading adapter {name!r}") from None
            remove_tree(self._cache_dir / name)
            self._origins.pop(name, None)
            if was_loaded:
                log.info("unloaded adapter %s", name)
            return was_loaded
