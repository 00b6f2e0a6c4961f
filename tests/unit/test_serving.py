"""brix.serving's process-wide settings for servers."""

from __future__ import annotations

import subprocess
import sys


def test_quiet_gc_freezes_what_exists_and_raises_the_young_threshold() -> None:
    # In a fresh interpreter: freezing this test process's heap would outlive the test.
    code = """
import gc
from brix.serving import GC_THRESHOLD, quiet_gc
assert gc.get_freeze_count() == 0
quiet_gc()
print(gc.get_freeze_count(), gc.get_threshold() == GC_THRESHOLD, GC_THRESHOLD[0])
class Cycle:
    pass
c = Cycle(); c.me = c
del c
print(gc.collect())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    frozen, threshold_set, young, collected = int(out[0]), out[1], int(out[2]), int(out[3])
    assert frozen > 1000  # the modules and objects that were there
    assert threshold_set == "True"
    assert young > 700  # above CPython's default
    assert collected >= 1  # a cycle made afterwards is still collected
