"""``--workers N``: the flag, the supervisor's updates to its workers (gateway.workers)."""

from __future__ import annotations

import asyncio

import pytest

from brix.config import load_settings
from gateway.settings import GatewaySettings
from gateway.shared_load import SharedCounts
from gateway.table import Endpoint, RoutingTable, pod_state
from gateway.workers import (
    RESTART_MAX,
    RESTART_MIN,
    YOUNG,
    Supervisor,
    Update,
    frame,
    read_frame,
    restart_delay,
)

PROG = "python -m gateway"


def settings(*argv: str) -> GatewaySettings:
    return load_settings(GatewaySettings, ["--discovery", "none", *argv], prog=PROG)


def test_one_worker_is_the_default() -> None:
    assert settings().workers == 1
    assert settings("--workers", "3").workers == 3


@pytest.mark.parametrize("value", ["0", "-1"])
def test_workers_below_one_is_one_clear_line(value: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        settings("--workers", value)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"{PROG}: error: workers must be >= 1 (got {value})"


def pod(name: str, ip: str, *, ready: bool = True) -> dict[str, object]:
    return {
        "metadata": {"namespace": "ns", "name": name, "labels": {"brix.dev/model": "m1"}},
        "spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8000}]}]},
        "status": {"phase": "Running", "podIP": ip,
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def supervisor(table: RoutingTable) -> Supervisor:
    sup = Supervisor(settings("--workers", "2"), table=table, watch=False, target="x:y")
    sup.counts = SharedCounts(bytearray(SharedCounts.size(2, 8)), workers=2, capacity=8)
    return sup


def test_an_update_goes_out_only_when_something_changed() -> None:
    table = RoutingTable(static={"s": [Endpoint("s", "http://10.9.9.9:8000")]})
    sup = supervisor(table)
    assert sup.refresh()
    first = sup._update
    assert first is not None
    assert first.version == 1
    assert set(first.columns) == {"http://10.9.9.9:8000"}
    assert first.synced is None
    assert not sup.refresh()  # nothing new
    sup.tracker.queues = {"http://10.9.9.9:8000": (3, 1)}
    assert sup.refresh()  # a poll landed: same table, same version
    assert sup._update is not None
    assert sup._update.version == 1
    assert sup._update.queues == {"http://10.9.9.9:8000": (3, 1)}


def test_a_new_pod_gets_a_column_and_a_new_version() -> None:
    table = RoutingTable()
    sup = supervisor(table)
    sup.refresh()
    state = pod_state(pod("p1", "10.0.0.1"))
    table.upsert("pods", ("ns", "p1"), state)
    assert sup.refresh()
    update = sup._update
    assert update is not None
    assert update.version == 2
    assert update.objects["pods"] == {("ns", "p1"): state}
    assert list(update.columns) == ["http://10.0.0.1:8000"]
    # The same objects, applied to a worker's table, give the same routes.
    mirror = RoutingTable()
    for kind, states in update.objects.items():
        mirror.replace(kind, states)
    assert mirror.route("m1") == table.route("m1")


def test_a_workers_interest_in_queues_wakes_the_poller() -> None:
    sup = supervisor(RoutingTable())
    assert not sup.tracker.queues_wanted.is_set()
    sup.follow_interest()
    assert not sup.tracker.queues_wanted.is_set()  # nobody asked
    sup.counts.want(1, 123.0)
    sup.follow_interest()
    assert sup.tracker.queues_wanted.is_set()
    assert sup.tracker.queues_wanted_at == 123.0


def test_a_frame_reads_back_as_it_was_sent() -> None:
    update = Update(3, {"pods": {}, "deployments": {}, "adapters": {}}, {"u": 0},
                    {"u": (1, 2)}, {"u": 0.5}, frozenset({"pods"}))

    async def roundtrip() -> tuple[object, object]:
        reader = asyncio.StreamReader()
        reader.feed_data(frame(update) + frame("ready"))
        return await read_frame(reader), await read_frame(reader)

    assert asyncio.run(roundtrip()) == (update, "ready")


def test_a_dead_worker_waits_longer_each_time_it_dies_young() -> None:
    assert restart_delay(None, 0.1) == RESTART_MIN  # its first death
    assert restart_delay(RESTART_MIN, 0.1) == 2 * RESTART_MIN
    assert restart_delay(4.0, 0.1) == 8.0
    assert restart_delay(RESTART_MAX, 0.1) == RESTART_MAX  # capped
    assert restart_delay(8.0, YOUNG + 1) == RESTART_MIN  # it lived: start over
