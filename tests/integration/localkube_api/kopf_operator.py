"""A tiny Kopf operator for the localkube tests (run with ``kopf run``).

Creation and updates copy ``spec.size`` into ``status.seen``; deletion logs a
line; the operator's finalizer holds deletion until its delete handler ran.
"""

from __future__ import annotations

from typing import Any

import kopf


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.level = 0
    settings.watching.connect_timeout = 5
    settings.watching.server_timeout = 30


@kopf.on.create("example.com", "v1", "gadgets")
def created(spec: dict[str, Any], patch: kopf.Patch, name: str, **_: Any) -> None:
    patch.status["seen"] = spec.get("size")
    patch.status["phase"] = "Created"
    print(f"created gadget {name}", flush=True)


@kopf.on.update("example.com", "v1", "gadgets", field="spec.size")
def updated(new: Any, patch: kopf.Patch, name: str, **_: Any) -> None:
    patch.status["seen"] = new
    patch.status["phase"] = "Updated"
    print(f"updated gadget {name} to {new}", flush=True)


@kopf.on.delete("example.com", "v1", "gadgets")
def deleted(name: str, **_: Any) -> None:
    print(f"deleted gadget {name}", flush=True)
