"""``pods/log``: the files the kubelet writes, ``STATE_DIR/logs/<ns>/<pod>/<container>.log``.

Supports ``container``, ``tailLines`` and ``follow`` (until the pod is gone or
the server stops).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from localkube.api import errors

DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"
FOLLOW_POLL_SECONDS = 0.2


def log_path(state_dir: Path, namespace: str, pod: str, container: str) -> Path:
    return state_dir / "logs" / namespace / pod / f"{container}.log"


def pick_container(pod: Mapping[str, Any], asked: str | None) -> str:
    """The container whose log is wanted, or a 400 that says which ones there are."""
    spec = pod.get("spec") or {}
    name = pod["metadata"]["name"]
    names = [str(c.get("name")) for c in spec.get("containers") or []]
    names += [str(c.get("name")) for c in spec.get("initContainers") or []]
    if not asked:
        default = (pod["metadata"].get("annotations") or {}).get(DEFAULT_CONTAINER)
        if default in names:
            return str(default)
        if len(spec.get("containers") or []) == 1:
            return names[0]
        raise errors.bad_request(f"a container name must be specified for pod {name}, "
                                 f"choose one of: [{' '.join(names)}]")
    if asked not in names:
        raise errors.bad_request(f"container {asked} is not valid for pod {name}")
    return asked


def tail(data: bytes, lines: str | None) -> bytes:
    if lines is None or not lines.lstrip("-").isdigit():
        return data
    n = int(lines)
    return b"".join(data.splitlines(keepends=True)[-n:]) if n > 0 else b""


async def serve(
    request: web.Request, pod: Mapping[str, Any], *, state_dir: Path | None,
    same_pod_exists: Callable[[], bool], stopping: asyncio.Event,
) -> web.StreamResponse:
    container = pick_container(pod, request.query.get("container"))
    name, namespace = pod["metadata"]["name"], pod["metadata"]["namespace"]
    if state_dir is None:
        raise errors.bad_request("localkube runs without a state directory: no logs")
    path = log_path(state_dir, namespace, name, container)
    if not path.exists():
        raise errors.bad_request(
            f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating')
    resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await resp.prepare(request)
    data = path.read_bytes()
    await resp.write(tail(data, request.query.get("tailLines")))
    if request.query.get("follow") in ("true", "1"):
        offset = len(data)
        while not stopping.is_set():
            await asyncio.sleep(FOLLOW_POLL_SECONDS)
            with contextlib.suppress(OSError):
                size = path.stat().st_size
                if size > offset:
                    with path.open("rb") as fh:
                        fh.seek(offset)
                        await resp.write(fh.read(size - offset))
                    offset = size
            if not same_pod_exists():
                break
    await resp.write_eof()
    return resp
