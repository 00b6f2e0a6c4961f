"""The Python heap of a brix process, as tracemalloc counts it, read from a test.

Run a service through this module to make its heap readable::

    procs.start(["-m", "tests.helpers.heap", "gateway", "--port", "0", ...],
                env={HEAP_FILE_ENV: str(path)})

then ``python_heap(proc, path)``: SIGUSR1 makes the process collect its
garbage and append the bytes tracemalloc counts as live to ``path``. Tracing
starts at the first signal, so the process starts and warms up untraced;
read once before the load to start it.

What this counts is every live allocation made through Python's allocators
(objects, bytes, buffers of the C extensions that use them), not what the C
allocator keeps free: unlike the resident set, it comes back when the memory
does, so it shows a leak of a few hundred bytes per request.
"""

from __future__ import annotations

import gc
import os
import runpy
import signal
import sys
import time
import tracemalloc
from pathlib import Path
from types import FrameType

from tests.helpers.procs import Proc

HEAP_FILE_ENV = "BRIX_TEST_HEAP_FILE"


def _report(_signum: int, _frame: FrameType | None) -> None:
    if not tracemalloc.is_tracing():
        tracemalloc.start()
    gc.collect()
    live, _peak = tracemalloc.get_traced_memory()
    with open(os.environ[HEAP_FILE_ENV], "a", encoding="utf-8") as f:
        f.write(f"{live}\n")


def python_heap(proc: Proc, path: Path, timeout: float = 30.0) -> int:
    """Bytes live on the process' Python heap now (the first call starts tracing)."""
    before = len(path.read_text().splitlines()) if path.exists() else 0
    proc.popen.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) > before:
            return int(lines[before])
        time.sleep(0.05)
    raise AssertionError(f"{proc.name} did not report its heap within {timeout}s")


if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, _report)
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
