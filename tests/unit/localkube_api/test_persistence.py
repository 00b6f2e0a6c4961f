"""Persistence of localkube's objects: a restart never hands out a resourceVersion twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from localkube.api.errors import ApiError
from localkube.api.persistence import RV_BLOCK, Persistence
from localkube.api.selectors import FieldSelector, LabelSelector
from localkube.api.server import ApiServer


def server_with_state(path: Path) -> tuple[ApiServer, Persistence]:
    server = ApiServer()
    persistence = Persistence(path / "objects.json", server)
    persistence.load()
    server.bootstrap()
    return server, persistence


def configmap(server: ApiServer, name: str) -> int:
    rt = server.registry.lookup("", "v1", "configmaps")
    assert rt is not None
    obj = server.store.create(rt, {"metadata": {"name": name, "namespace": "default"}})
    return int(obj["metadata"]["resourceVersion"])


async def test_a_crash_between_saves_does_not_reuse_resource_versions(tmp_path: Path) -> None:
    first, persistence = server_with_state(tmp_path)
    configmap(first, "saved")
    persistence.save()
    # Changes after the last save, then a crash (no save at shutdown).
    seen = max(configmap(first, f"lost-{i}") for i in range(5))

    second, _ = server_with_state(tmp_path)
    rt = second.registry.lookup("", "v1", "configmaps")
    assert rt is not None
    assert second.store.find(rt, "default", "saved") is not None
    assert second.store.find(rt, "default", "lost-0") is None  # the last second is lost
    assert configmap(second, "after") > seen
    # A client that saw the lost changes cannot resume from them: it lists again.
    with pytest.raises(ApiError) as info:
        second.store.watch(rt, None, labels=LabelSelector(), fields=FieldSelector(), since=seen)
    assert info.value.code == 410
    await asyncio.sleep(0)


async def test_numbers_are_reserved_a_block_at_a_time(tmp_path: Path) -> None:
    server, persistence = server_with_state(tmp_path)
    last = max(configmap(server, f"c{i}") for i in range(3))
    assert last < RV_BLOCK
    assert persistence.reserved() == RV_BLOCK  # the first block, from 1
    for i in range(RV_BLOCK):
        last = configmap(server, f"d{i}")
    assert persistence.reserved() >= last
    assert persistence.reserved() < last + RV_BLOCK
