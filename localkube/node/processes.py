"""Container processes: each one in its own process group, stopped group-wide.

A container's command runs in a new session (so it leads its own process
group); SIGTERM and SIGKILL go to the whole group, so children a container
starts go with it. On Linux each process also gets ``PR_SET_PDEATHSIG``
(SIGKILL): if localkube itself is killed without a chance to clean up, its
direct children die with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG: Final = 1
# How long a SIGKILLed group may take to be gone before the container is counted as
# stopped anyway (a process in uninterruptible sleep cannot be hurried). A large engine
# takes seconds to die: its memory is released before its sockets are closed, and a
# container restarted before then finds its port still bound.
GROUP_GONE_WAIT_SECONDS: Final = 30.0


# Looked up once in localkube's process: between fork and exec the child may only
# do the least possible (other threads' locks are not released there).
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class StartError(Exception):
    """The command could not be started (not found, not executable)."""


def resolve_executable(program: str, env: Mapping[str, str], cwd: Path) -> str:
    if "/" in program:
        path = program if os.path.isabs(program) else str(cwd / program)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
        raise StartError(f'exec: "{program}": no such executable file')
    found = shutil.which(program, path=env.get("PATH", os.defpath))
    if found is None:
        raise StartError(f'exec: "{program}": executable file not found in $PATH')
    return found


async def start(argv: Sequence[str], *, env: Mapping[str, str], cwd: Path,
                log_path: Path) -> asyncio.subprocess.Process:
    """Start ``argv`` with its output appended to ``log_path``."""
    if not argv:
        raise StartError("no command to run")
    program = resolve_executable(argv[0], env, cwd)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        try:
            return await asyncio.create_subprocess_exec(
                program, *argv[1:], env=dict(env), cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
                stdout=log, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
                preexec_fn=_die_with_parent if _PRCTL is not None else None,
            )
        except OSError as exc:
            raise StartError(f"exec {argv[0]}: {exc.strerror or exc}") from exc


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs (zombies, which hold nothing, do not count:
    a signal reaches them, so ``killpg`` alone cannot tell)."""
    proc = Path("/proc")
    if sys.platform == "linux" and proc.is_dir():
        with os.scandir(proc) as entries:
            for entry in entries:
                if not entry.name.isdigit():
                    continue
                try:
                    stat = (proc / entry.name / "stat").read_text()
                except OSError:  # gone meanwhile
                    continue
                fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) "
                if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
                    return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def stop_group(proc: asyncio.subprocess.Process, grace: float) -> int:
    """SIGTERM the group, SIGKILL it after ``grace`` seconds; return the leader's code."""
    pgid = proc.pid
    if proc.returncode is None:
        signal_group(pgid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await proc.wait()
    await reap_group(proc)
    return proc.returncode if proc.returncode is not None else -signal.SIGKILL


async def reap_group(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL whatever is left of the group and wait until none of it is there."""
    pgid = proc.pid
    signal_group(pgid, signal.SIGKILL)
    await proc.wait()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GROUP_GONE_WAIT_SECONDS
    while group_alive(pgid):
        if loop.time() >= deadline:
            log.warning("process group %d still has live processes %.0fs after SIGKILL",
                        pgid, GROUP_GONE_WAIT_SECONDS)
            return
        signal_group(pgid, signal.SIGKILL)
        await asyncio.sleep(0.05)


def exit_code(returncode: int) -> tuple[int, int | None]:
    """(Kubernetes' exitCode, the signal if one ended it) from a returncode."""
    if returncode < 0:
        return 128 - returncode, -returncode
    return returncode, None
