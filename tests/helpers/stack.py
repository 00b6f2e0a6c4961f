"""The processes of a ``brix up`` of one checkout, found from outside it (tests, bench)."""

from __future__ import annotations

from pathlib import Path

import psutil


def stack_processes(root: Path) -> list[psutil.Process]:
    """Processes of a ``brix up`` run from ``root``: ``brix.cli up`` itself (by its
    working directory), and everything with ``root/.brix`` in its command line or
    in its working directory (localkube runs every pod's processes in a directory of
    its state under ``root/.brix``). The caller and its parents
    (a test run under ``make test``) never count."""
    state = str(root / ".brix")
    me = psutil.Process()
    ours = {me.pid, *(p.pid for p in me.parents())}
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.pid in ours:
            continue
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            if (("brix.cli up" in cmd and proc.cwd() == str(root)) or state in cmd
                    or proc.cwd().startswith(state)):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found
