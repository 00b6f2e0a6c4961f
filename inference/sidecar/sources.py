"""Where an adapter comes from: checking the ``source`` of a load request.

Two kinds of source are accepted, anything else is refused naming its scheme:

- ``file:///dir``: a directory that exists and resolves inside one of the
  configured adapter roots: no ``..`` component, no symlink leading out.
- ``http(s)://host/x.tar.gz`` (or ``.zip``): an archive the sidecar downloads and
  extracts into its cache directory (see ``fetch`` and ``extract``).

Also here: the rules for adapter names and sha256 strings, and the place of a
downloaded adapter in the cache, so that the API validates everything up front.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from .errors import ApiError

ADAPTER_CONFIG = "adapter_config.json"

# Kubernetes object names (LoraAdapter's metadata.name) fit in this, and the name is
# also a directory name in the cache and a path segment of DELETE /v1/adapters/{name}.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class FileSource:
    """An adapter directory on this machine, resolved (symlinks followed)."""

    path: Path


@dataclass(frozen=True, slots=True)
class ArchiveSource:
    """An adapter archive to download."""

    url: str


Source = FileSource | ArchiveSource


def check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ApiError(400, "`name` is required: the adapter's name, as requests will "
                       "use it in `model`", code="invalid_name", param="name")
    if not _NAME.fullmatch(name):
        raise ApiError(
            400, f"adapter name {name!r} is not valid: use letters, digits, '.', '_' and "
            "'-', starting with a letter or digit, at most 253 characters",
            code="invalid_name", param="name",
        )
    return name


def check_sha256(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _SHA256.fullmatch(value.lower()):
        raise ApiError(400, "`sha256` must be 64 hexadecimal digits",
                       code="invalid_sha256", param="sha256")
    return value.lower()


def parse_source(source: object, *, roots: Sequence[str]) -> Source:
    """Check ``source`` and say what it is; ApiError (4xx) when it is not acceptable."""
    if not isinstance(source, str) or not source:
        raise ApiError(400, "`source` is required: a file:// directory or an http(s):// "
                       "archive URL", code="invalid_source", param="source")
    parts = urlsplit(source)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return _file_source(parts.netloc, unquote(parts.path), roots=roots)
    if scheme in ("http", "https"):
        if not parts.hostname:
            raise ApiError(400, f"source {source!r} has no host", code="invalid_source",
                           param="source")
        return ArchiveSource(url=source)
    shown = f"{scheme!r}" if scheme else "none"
    raise ApiError(
        400, f"unsupported source scheme {shown} in {source!r}: use file:// (a directory "
        "inside the adapter roots) or http(s):// (a .tar.gz or .zip archive)",
        code="unsupported_source_scheme", param="source",
    )


def _file_source(netloc: str, raw_path: str, *, roots: Sequence[str]) -> FileSource:
    if netloc not in ("", "localhost"):
        raise ApiError(400, f"file:// sources name a local directory; got host {netloc!r}",
                       code="invalid_source", param="source")
    pure = PurePosixPath(raw_path)
    if not pure.is_absolute():
        raise ApiError(400, f"file:// path {raw_path!r} is not absolute",
                       code="invalid_source", param="source")
    if ".." in pure.parts:
        raise ApiError(400, f"file:// path {raw_path!r} contains '..'",
                       code="path_traversal", param="source")
    if not roots:
        raise ApiError(403, "file:// sources are disabled: the sidecar has no "
                       "--adapter-roots (BRIX_ADAPTER_ROOTS)",
                       code="source_outside_roots", param="source")
    try:
        resolved = Path(raw_path).resolve(strict=True)
    except FileNotFoundError:
        raise ApiError(400, f"file:// path {raw_path!r} does not exist",
                       code="source_not_found", param="source") from None
    except (OSError, RuntimeError) as exc:  # a symlink loop, a permission error
        raise ApiError(400, f"file:// path {raw_path!r} cannot be resolved: {exc}",
                       code="invalid_source", param="source") from None
    real_roots = [Path(r).resolve() for r in roots]
    if not any(resolved.is_relative_to(root) for root in real_roots):
        raise ApiError(
            403, f"file:// path {raw_path!r} resolves to {str(resolved)!r}, outside the "
            f"adapter roots ({', '.join(map(str, real_roots))})",
            code="source_outside_roots", param="source",
        )
    if not resolved.is_dir() or not (resolved / ADAPTER_CONFIG).is_file():
        raise ApiError(400, f"file:// path {raw_path!r} is not an adapter directory "
                       f"(no {ADAPTER_CONFIG})", code="not_an_adapter", param="source")
    return FileSource(path=resolved)


def cache_path(cache_dir: Path, name: str, url: str, sha256: str | None) -> Path:
    """Where the archive ``url`` of adapter ``name`` is extracted: one folder per name
    (removed on unload), one subfolder per (url, sha256)."""
    key = hashlib.sha256(f"{url}\n{sha256 or ''}".encode()).hexdigest()[:16]
    return cache_dir / name / key
