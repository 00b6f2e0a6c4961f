"""Discovery's list-and-watch loop against a scripted API call (no server).

The kubernetes client's own ``Watch`` runs over a fake API function that
answers lists and watches as the script says: an error in the middle of a
watch resumes from the last version without listing again (nothing known is
dropped); a 410 Gone lists again and replaces the state in one step.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

from kubernetes import client as k8s

from gateway.discovery import Discovery, Source
from gateway.table import RoutingTable


def pod(name: str, rv: int, *, ready: bool = True) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": str(rv),
                     "labels": {"brix.dev/model": "m1"}},
        "spec": {"containers": [{"name": "e", "ports": [{"name": "http",
                                                          "containerPort": 8000}]}]},
        "status": {"phase": "Running", "podIP": f"10.0.0.{rv}",
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


class ListResponse:
    def __init__(self, items: list[dict[str, Any]], rv: int) -> None:
        self.data = json.dumps({"items": items, "metadata": {"resourceVersion": str(rv)}})


class WatchResponse:
    status = 200

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self._events = events

    def stream(self, amt: Any = None, decode_content: bool = False) -> Iterator[bytes]:
        for event in self._events:
            yield (json.dumps(event) + "\n").encode()

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


class ScriptedApi:
    """Answers the calls in order; records (verb, resourceVersion) of each."""

    def __init__(self, table: RoutingTable, loop: asyncio.AbstractEventLoop) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.seen_before_410: list[str] = []
        self.table = table
        self.loop = loop
        self.discovery: Discovery | None = None

    def snapshot(self) -> list[str]:
        async def read() -> list[str]:
            route = self.table.route("m1")
            return sorted(e.name for e in route.endpoints) if route else []
        return asyncio.run_coroutine_threadsafe(read(), self.loop).result(5)

    def list_pods(self, *args: Any, **kwargs: Any) -> Any:
        """List or watch pods (scripted).

        :return: object
        """
        assert kwargs.get("label_selector") == "brix.dev/model"
        verb = "watch" if kwargs.get("watch") else "list"
        self.calls.append((verb, kwargs.get("resource_version")))
        step = len(self.calls)
        if step == 1:
            return ListResponse([pod("p1", 5)], 5)
        if step == 2:
            raise ConnectionResetError("the API server went away")
        if step == 3:
            self.seen_before_410 = self.snapshot()
            return WatchResponse([
                {"type": "ADDED", "object": pod("p2", 6)},
                {"type": "ERROR", "object": {"kind": "Status", "code": 410,
                                             "reason": "Expired", "message": "too old"}},
            ])
        if step == 4:
            return ListResponse([pod("p2", 6), pod("p3", 9)], 9)
        if step == 5:
            return WatchResponse([{"type": "MODIFIED", "object": pod("p3", 10, ready=False)},
                                  {"type": "BOOKMARK", "object": {
                                      "kind": "Pod", "metadata": {"resourceVersion": "12"}}}])
        assert self.discovery is not None
        self.discovery.stop()
        return WatchResponse([])


async def _run_script() -> tuple[ScriptedApi, list[str]]:
    loop = asyncio.get_running_loop()
    table = RoutingTable()
    api = ScriptedApi(table, loop)
    discovery = Discovery(table, loop, k8s.ApiClient(), backoff=0.01, sources=[
        Source("pods", None, api.list_pods, (), "brix.dev/model")])
    api.discovery = discovery
    discovery.start()

    def names() -> list[str]:
        route = table.route("m1")
        return sorted(e.name for e in route.endpoints) if route else []

    for _ in range(500):  # until the script ran out and its last change reached the table
        if len(api.calls) >= 6 and names() == ["p2"]:
            break
        await asyncio.sleep(0.01)
    return api, names()


def test_errors_resume_the_watch_and_410_lists_again() -> None:
    loop = asyncio.new_event_loop()
    try:
        api, final = loop.run_until_complete(_run_script())
    finally:
        loop.close()
    assert api.calls[:6] == [
        ("list", None),
        ("watch", "5"),   # fails: connection reset
        ("watch", "5"),   # resumed from the same version, no new list
        ("list", None),   # after 410 Gone
        ("watch", "9"),
        ("watch", "12"),  # resumed after the bookmark's version
    ]
    # Through the error, what was known stayed known.
    assert api.seen_before_410 == ["p1"]
    # The list after 410 replaced everything: p1 is gone, p3 turned not ready.
    assert final == ["p2"]
