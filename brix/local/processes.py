"""Child processes of ``brix up``: started in their own process group, logged to
a file, recorded in a pid file, and stopped (SIGTERM, then SIGKILL) as a group.

A pid file left by an earlier run that was killed outright lets the next run
stop what that one left behind before it starts anything.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


class StartError(Exception):
    """A process exited or did not become ready in time."""


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    pid_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_for_line(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        """Wait until the log has a line matching ``pattern``."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError):
                for line in self.log_path.read_text(errors="replace").splitlines():
                    m = pattern.search(line)
                    if m:
                        return m
            if not self.alive():
                raise StartError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise StartError(f"{self.name} not ready after {timeout:.0f}s:\n{self.tail()}")
            time.sleep(0.2)

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM the group, wait ``grace`` seconds, then SIGKILL what is left."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        self.pid_path.unlink(missing_ok=True)


def start(
    name: str, argv: Sequence[str], *, run_dir: Path, log_dir: Path,
    env: Mapping[str, str] | None = None, cwd: Path | None = None,
) -> Child:
    run_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, cwd=cwd,
            start_new_session=True,
        )
    pid_path = run_dir / f"{name}.pid"
    pid_path.write_text(str(popen.pid))
    return Child(name=name, popen=popen, log_path=log_path, pid_path=pid_path)


def reap_leftovers(run_dir: Path, grace: float = 10.0) -> list[str]:
    """Stop the process groups an earlier run recorded and did not stop; return their names."""
    stopped = []
    for pid_path in sorted(run_dir.glob("*.pid")) if run_dir.is_dir() else []:
        try:
            pgid = int(pid_path.read_text().strip())
        except ValueError:
            pid_path.unlink(missing_ok=True)
            continue
        if _group_alive(pgid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while _group_alive(pgid) and time.monotonic() < deadline:
                time.sleep(0.2)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            stopped.append(pid_path.stem)
        pid_path.unlink(missing_ok=True)
    return stopped


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True
