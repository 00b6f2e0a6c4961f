"""Downloading an adapter archive: a size cap, and an optional sha256 to match.

The archive is streamed into a file the caller owns (inside a temporary folder it
removes on any failure); nothing here leaves a file behind on its own.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx

from .errors import ApiError


def _too_large(url: str, limit: int) -> ApiError:
    return ApiError(
        413, f"the archive at {url} is larger than the limit of {limit} bytes "
        "(--max-download-bytes)", code="archive_too_large", param="source",
    )


async def download(
    client: httpx.AsyncClient, url: str, dest: Path, *, max_bytes: int,
    sha256: str | None, timeout_s: float,
) -> str:
    """Stream ``url`` into ``dest``; return its sha256 (hex). ApiError on any failure."""
    digest = hashlib.sha256()
    size = 0
    try:
        async with client.stream("GET", url, timeout=timeout_s, follow_redirects=True) as resp:
            if resp.status_code >= 400:
                raise ApiError(
                    400 if resp.status_code < 500 else 502,
                    f"downloading {url} failed: the server answered {resp.status_code}",
                    code="download_failed", param="source",
                )
            declared = resp.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise _too_large(url, max_bytes)
            with dest.open("wb") as out:
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise _too_large(url, max_bytes)
                    digest.update(chunk)
                    out.write(chunk)
    except httpx.TimeoutException:
        raise ApiError(504, f"downloading {url} took longer than {timeout_s:g}s",
                       code="download_timeout", param="source") from None
    except httpx.HTTPError as exc:
        raise ApiError(502, f"downloading {url} failed: {type(exc).__name__}: {exc}",
                       code="download_failed", param="source") from None
    got = digest.hexdigest()
    if sha256 is not None and got != sha256:
        raise ApiError(400, f"the archive at {url} has sha256 {got}, not the expected "
                       f"{sha256}", code="checksum_mismatch", param="sha256")
    return got
