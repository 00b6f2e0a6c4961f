"""Start real server processes for tests and wait for their ready line.

Every brix server prints ``<name> listening on <scheme>://host:port`` once it
accepts connections (``brix.serving.READY_PATTERN``); ``start`` waits for that
line, or for any other pattern given, and returns the URL it names. Output goes
to a log file per process; it is shown in the error when a process dies early.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from brix.serving import READY_PATTERN

REPO = Path(__file__).resolve().parents[2]


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (good enough for tests on loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    url: str | None = None
    _lines: list[str] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _reader: threading.Thread | None = None

    def output(self) -> str:
        with self._cond:
            return "".join(self._lines)

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float = 60.0) -> re.Match[str]:
        """Wait until a line of output matches ``pattern``; fail if the process exits first."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self._lines[seen:]:
                    m = rx.search(line)
                    if m:
                        return m
                seen = len(self._lines)
                if self.popen.poll() is not None and not self._reader_alive():
                    raise RuntimeError(
                        f"{self.name} exited with {self.popen.returncode} before "
                        f"{rx.pattern!r}; output:\n{''.join(self._lines)[-4000:]}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{self.name}: no {rx.pattern!r} within {timeout}s; output:\n"
                        f"{''.join(self._lines)[-4000:]}"
                    )
                self._cond.wait(min(left, 0.2))

    def _reader_alive(self) -> bool:
        return self._reader is not None and self._reader.is_alive()

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM the process group, then SIGKILL after ``timeout``; return the exit code."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        else:
            # The leader is gone; make sure nothing of its group lingers.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGKILL)
        return self.popen.returncode


class ProcessGroup:
    """Processes started for one test (or one fixture scope)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[Proc] = []

    def start(
        self,
        args: Sequence[str],
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        ready: str | re.Pattern[str] | None = READY_PATTERN,
        timeout: float = 60.0,
        cwd: Path | None = None,
    ) -> Proc:
        """Start ``args`` (``python -m x`` when args[0] is a module path given as ``-m``).

        ``ready`` is the pattern to wait for; the ``url`` group of a match, if
        any, becomes ``Proc.url``. ``ready=None`` returns at once.
        """
        name = name or Path(args[1] if args[0] == "-m" else args[0]).name
        argv = [sys.executable, *args] if args[0] == "-m" else list(args)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}-{len(self.procs)}.log"
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        popen = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=full_env, cwd=cwd or REPO, start_new_session=True,
        )
        proc = Proc(name=name, popen=popen, log_path=log_path)

        def pump() -> None:
            assert popen.stdout is not None
            with log_path.open("w", encoding="utf-8") as log:
                for raw in popen.stdout:
                    line = raw.decode("utf-8", "replace")
                    log.write(line)
                    log.flush()
                    with proc._cond:
                        proc._lines.append(line)
                        proc._cond.notify_all()
            popen.stdout.close()  # at EOF; else a ResourceWarning fails the test run
            with proc._cond:
                proc._cond.notify_all()

        reader = threading.Thread(target=pump, name=f"log-{name}", daemon=True)
        proc._reader = reader
        reader.start()
        self.procs.append(proc)
        if ready is not None:
            m = proc.wait_for(ready, timeout)
            proc.url = m.groupdict().get("url")
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()


def tool(name: str) -> str:
    """The path of a command-line tool: the virtual environment's first, then $PATH."""
    import shutil

    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed: `make test` sets it up")
    return found
