"""Stopping localkube stops every process it started, children of containers included."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

from kubernetes import client, config

from tests.helpers.localkube import start_localkube
from tests.helpers.procs import Proc, ProcessGroup
from tests.helpers.wait import wait_until


def group_members(pgid: int) -> list[int]:
    """Pids of live (not zombie) processes in process group ``pgid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            out.append(int(entry.name))
    return out


def start_pods(procs: ProcessGroup, state_dir: Path) -> tuple[Proc, list[int]]:
    proc, kubeconfig = start_localkube(procs, state_dir)
    api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    core: Any = client.CoreV1Api(api)
    apps: Any = client.AppsV1Api(api)
    # Each container leaves a child behind in its process group, as shells do.
    script = "sleep 300 & exec python -c 'import time; time.sleep(300)'"
    apps.create_namespaced_deployment("default", {
        "metadata": {"name": "busy"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "busy"}},
                 "template": {"metadata": {"labels": {"app": "busy"}},
                              "spec": {"containers": [
                                  {"name": "a", "image": "unused", "command": ["sh", "-c", script]},
                                  {"name": "b", "image": "unused",
                                   "command": [sys.executable, "-c",
                                               "import time; time.sleep(300)"]}]}}}})

    def leaders() -> list[int] | None:
        pods = core.list_namespaced_pod("default").items
        ids = [int(s.container_id.removeprefix("localkube://")) for p in pods
               for s in p.status.container_statuses or [] if s.state.running]
        return ids if len(ids) == 4 else None
    pids = wait_until(leaders, what="4 running containers")
    wait_until(lambda: all(len(group_members(pid)) >= 1 for pid in pids),
               what="the containers' processes")
    api.close()
    return proc, pids


def test_sigterm_stops_every_process_and_localkube_exits_cleanly(
        procs: ProcessGroup, tmp_path: Path) -> None:
    proc, pids = start_pods(procs, tmp_path / "state")
    members = {pid: group_members(pid) for pid in pids}
    assert sum(len(m) for m in members.values()) >= 6  # the shells' `sleep`s too
    code = proc.stop()
    assert code == 0    # it stopped by itself, not by the harness's SIGKILL
    left = {pid: group_members(pid) for pid in pids}
    assert all(not m for m in left.values()), left


def test_a_killed_localkube_takes_its_containers_with_it(
        procs: ProcessGroup, tmp_path: Path) -> None:
    proc, pids = start_pods(procs, tmp_path / "state")
    os.kill(proc.popen.pid, signal.SIGKILL)
    proc.popen.wait(10)
    # The containers' own processes die with localkube (PR_SET_PDEATHSIG); what a
    # container started in the background is not covered by that.
    wait_until(lambda: all(pid not in group_members(pid) for pid in pids),
               what="every container's main process gone")
    for pid in pids:  # tidy up what the shells left behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
