"""Optional persistence: the objects in ``STATE_DIR/objects.json``, written after changes.

The file is rewritten whole (atomically, at most once a second while objects
change, and at shutdown), and read at startup: CRDs first, so that their
custom objects find their types. Watches from before a restart get 410.

resourceVersions are never handed out twice, across restarts and crashes
alike: before the store passes the last reserved number, the next block of
``RV_BLOCK`` is recorded (and synced) in ``STATE_DIR/resource-version``, and a
restart counts on from the highest reserved number. A crash loses the changes
of the last second at most (the objects saved last), never the numbering: a
client that saw a later number is answered 410 and lists again.

Without persistence (``--no-persist``) a restart starts empty, and must say so:
its store counts from ``unpersisted_base()``, the microseconds since the epoch,
so every number of an earlier run (which would have had to hand out more than
a million a second to catch up) is below the new one's, and a client resuming
a watch from one is answered 410 and lists again, instead of resuming from a
number the new run handed out for something else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from localkube.api.resources import crd_resource_types

log = logging.getLogger(__name__)

FORMAT = "localkube/v1"
RV_BLOCK = 1000


def unpersisted_base(now: float) -> int:
    """Where a store that keeps nothing on disk counts from, started at ``now`` (epoch s)."""
    return int(now * 1_000_000)


class Persistence:
    def __init__(self, path: Path, server: Any, *, interval: float = 1.0) -> None:
        self.path = path
        self.server = server
        self.interval = interval
        self._dirty = False
        self._task: asyncio.Task[None] | None = None
        self.rv_path = path.with_name("resource-version")
        server.store.on_commit.append(self._mark)
        server.store.reserve_rvs = self._reserve

    def _reserve(self, wanted: int) -> int:
        """Record durably that numbers up to ``wanted + RV_BLOCK - 1`` may be in use."""
        limit = wanted + RV_BLOCK - 1
        self.rv_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.rv_path.with_name(self.rv_path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(f"{limit}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.rv_path)
        directory = os.open(self.rv_path.parent, os.O_RDONLY)  # the rename, durable too
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return limit

    def reserved(self) -> int:
        """The highest resourceVersion a previous run may have handed out (0: none known)."""
        try:
            return int(self.rv_path.read_text(encoding="utf-8").strip() or 0)
        except (OSError, ValueError):
            return 0

    def _mark(self) -> None:
        self._dirty = True

    def load(self) -> int:
        """Restore the objects of a previous run; return how many.

        The store counts on from above every resourceVersion a previous run may
        have handed out.
        """
        self.server.store.set_resource_version(self.reserved())
        if not self.path.exists():
            return 0
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            broken = self.path.with_suffix(".broken.json")
            self.path.replace(broken)
            log.error("could not read %s (%s); kept it as %s and started empty",
                      self.path, exc, broken)
            return 0
        if data.get("format") != FORMAT:
            log.error("%s has format %r, not %r: starting empty", self.path,
                      data.get("format"), FORMAT)
            return 0
        store, registry = self.server.store, self.server.registry
        entries = data.get("objects") or []
        entries.sort(key=lambda e: (e["plural"] != "customresourcedefinitions",))
        count = 0
        for entry in entries:
            obj = entry["object"]
            if entry["plural"] == "customresourcedefinitions":
                registry.set_crd(obj["metadata"]["name"], crd_resource_types(obj))
            rt = registry.any_version(entry["group"], entry["plural"])
            if rt is None:
                log.warning("dropping stored %s.%s %s: the type is no longer served",
                            entry["plural"], entry["group"], obj["metadata"].get("name"))
                continue
            store.restore(rt, obj)
            count += 1
        store.set_resource_version(int(data.get("resourceVersion", 0)))  # keeps the higher
        self._dirty = False
        return count

    def save(self) -> None:
        store = self.server.store
        objects = [{"group": key[0], "plural": key[1], "object": obj}
                   for key, obj in store.snapshot()]
        data = {"format": FORMAT, "resourceVersion": store.rv, "objects": objects}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, self.path)
        self._dirty = False

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self._dirty:
                try:
                    self.save()
                except OSError as exc:
                    log.error("could not save objects to %s: %s", self.path, exc)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._dirty:
            try:
                self.save()
            except OSError as exc:
                log.error("could not save objects to %s: %s", self.path, exc)
