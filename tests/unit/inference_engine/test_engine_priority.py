"""On CPU the entrypoint makes vLLM's engine processes nicer than its API server: the
process tree read from /proc, and real processes made nicer, threads included."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from inference.engine import descendants, lower_priority, nicer_engine, parent_pid

# A stand-in for vLLM's server: it starts a child (its "engine core") that runs a second
# thread and a grandchild of its own, prints their pids, and waits.
TREE = """
import subprocess, sys, threading, time
if sys.argv[1:] == ["leaf"]:
    time.sleep(60)
elif sys.argv[1:] == ["engine"]:
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
    print(subprocess.Popen([sys.executable, sys.argv[0], "leaf"]).pid, flush=True)
    time.sleep(60)
else:
    engine = subprocess.Popen([sys.executable, sys.argv[0], "engine"], stdout=subprocess.PIPE,
                              text=True)
    print(engine.pid, engine.stdout.readline().strip(), flush=True)
    time.sleep(60)
"""


def nice_of(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


def threads(pid: int) -> list[int]:
    return [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[int, int, int]]:
    """(server, engine, leaf) pids of a running process tree."""
    script = tmp_path / "tree.py"
    script.write_text(TREE)
    server = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        assert server.stdout is not None
        engine, leaf = (int(p) for p in server.stdout.readline().split())
        deadline = time.monotonic() + 10
        while len(threads(engine)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        yield server.pid, engine, leaf
    finally:
        os.killpg(server.pid, 9)
        server.wait()
        assert server.stdout is not None
        server.stdout.close()


def test_the_parent_pid_is_read_past_a_name_with_spaces_and_parentheses() -> None:
    assert parent_pid("4242 (VLLM::Engine (x) y) S 17 4242 4242 0 -1 4194560") == 17
    assert parent_pid("1 (init) S 0 1 1 0 -1") == 0


def test_descendants_are_every_process_below_nearest_first() -> None:
    parents = {10: 1, 11: 10, 12: 10, 13: 11, 20: 1, 21: 20}
    assert descendants(parents, 10) == [11, 12, 13]
    assert descendants(parents, 13) == []
    assert descendants(parents, 99) == []


def test_every_process_under_the_server_and_each_thread_is_made_nicer(
    tree: tuple[int, int, int],
) -> None:
    server, engine, leaf = tree
    before = nice_of(server)
    target = min(19, before + 5)
    changed = lower_priority(server, target)
    assert {pid for pid, _ in changed} == {engine, leaf}
    assert all(name for _, name in changed)  # each named, as the log line says it
    assert len(threads(engine)) >= 2
    assert {nice_of(t) for p in (engine, leaf) for t in threads(p)} == {target}
    assert nice_of(server) == before  # the server itself keeps its priority


def test_a_process_nicer_already_is_left_as_it_is(tree: tuple[int, int, int]) -> None:
    server, engine, leaf = tree
    base = nice_of(server)
    os.setpriority(os.PRIO_PROCESS, leaf, min(19, base + 8))
    changed = lower_priority(server, min(19, base + 3))
    assert leaf not in {pid for pid, _ in changed}
    assert nice_of(leaf) == min(19, base + 8)
    assert {nice_of(t) for t in threads(engine)} == {min(19, base + 3)}


def test_the_engine_processes_made_nicer_are_named_on_one_line(
    tree: tuple[int, int, int], capsys: pytest.CaptureFixture[str],
) -> None:
    server, engine, leaf = tree
    nice = min(19, nice_of(server) + 2)
    nicer_engine(server, nice)
    (line,) = capsys.readouterr().err.splitlines()
    assert f"vLLM's engine processes at nice {nice}, below its API server" in line
    assert f"{engine} (" in line
    assert f"{leaf} (" in line
    nicer_engine(server, nice)  # nothing left to change: said so
    assert "no process under vLLM's server" in capsys.readouterr().err


def test_without_proc_to_read_vllm_is_left_as_it_started(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    nicer_engine(os.getpid(), 19, proc=tmp_path / "no-proc")
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("brix-engine: could not set vLLM's engine processes at nice 19")
    assert "no-proc" in line  # what could not be read
