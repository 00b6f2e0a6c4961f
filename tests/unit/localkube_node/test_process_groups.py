"""Whether a container's process group is gone, with real processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from localkube.node.processes import group_alive

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="process groups read from /proc")

# A subreaper starts a group whose leader leaves an unreaped child behind, kills the
# leader and reaps only it: the group then holds nothing but a zombie, as after an
# engine's SIGKILL when its children are not reaped at once.
ONLY_A_ZOMBIE_LEFT = textwrap.dedent("""
    import ctypes, os, signal, subprocess, sys, time
    from localkube.node.processes import group_alive
    PR_SET_CHILD_SUBREAPER = 36
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    leader = subprocess.Popen([sys.executable, "-c",
        "import os, time\\nif os.fork() == 0:\\n    os._exit(0)\\ntime.sleep(60)"],
        start_new_session=True)
    time.sleep(0.5)  # the child has exited, unreaped by the leader
    alive_with_leader = group_alive(leader.pid)
    os.kill(leader.pid, signal.SIGKILL)
    leader.wait()
    deadline = time.monotonic() + 10
    while group_alive(leader.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        os.killpg(leader.pid, 0)
        signalled = True
    except ProcessLookupError:
        signalled = False
    print(alive_with_leader, group_alive(leader.pid), signalled)
    while True:  # reap the zombie that was reparented here
        try:
            os.wait()
        except ChildProcessError:
            break
""")


def test_a_group_with_a_live_process_is_alive_and_gone_once_it_is_killed() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                            start_new_session=True)
    try:
        assert group_alive(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert not group_alive(proc.pid)


def test_a_group_left_with_only_a_zombie_is_gone() -> None:
    out = subprocess.run([sys.executable, "-c", ONLY_A_ZOMBIE_LEFT], capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()
    alive_with_leader, alive_after, signalled = out
    assert alive_with_leader == "True"
    assert signalled == "True", "the zombie was reaped: the test proves nothing"
    assert alive_after == "False"
