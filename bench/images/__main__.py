"""Image build benchmark: each image of docker/ built as ``make images`` builds it, three
ways, and its size.

    python -m bench.images [--only gateway,sidecar,controller] [--no-cold]
                           [--record bench/images/RESULTS.md]

- cold: every layer rebuilt (``--no-cache``; the base is kept);
- after a source change: a new file under ``brix/`` (the shared core every image
  copies; removed afterwards), so only the layers after the dependency layer run;
- nothing changed: ``make images`` again, which finds the image's label matching
  its inputs and does not call the builder.

Uses ``make images``' own code (``brix.images``). The engine (vLLM) is slow: include
it with ``--only ...,engine``, and ``--no-cold`` to leave out its 12-minute cold build.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

from bench.machine import cpu_model
from brix.images import plan as p
from brix.images.builder import ROOT, Builder, find_tool, manifest_builds

TOUCHED = ROOT / "brix" / "_bench_source_change.py"


def build_seconds(builder: Builder, build: p.Build) -> float:
    started = time.monotonic()
    assert builder.build([build]) == [build.tag], build
    return time.monotonic() - started


def size_mb(builder: Builder, tag: str) -> float:
    out = builder.tool.run("image", "inspect", tag).stdout
    return float(json.loads(out)[0]["Size"]) / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.images")
    parser.add_argument("--only", default="gateway,sidecar,controller")
    parser.add_argument("--no-cold", action="store_true", help="leave out the cold builds")
    parser.add_argument("--record", type=Path)
    args = parser.parse_args(argv)
    tool = find_tool()
    cached = Builder(tool, say=lambda _line: None)
    cold = Builder(tool, say=lambda _line: None, no_cache=True)
    builds = [b for b in manifest_builds([c for c in args.only.split(",") if c])
              if not b.needs_gpu_base]
    rows = []
    for b in builds:
        first = None if args.no_cold else build_seconds(cold, b)
        TOUCHED.write_text(f"# a source change for bench.images, {time.time()}\n")
        try:
            changed = build_seconds(cached, b)
        finally:
            TOUCHED.unlink()
        build_seconds(cached, b)  # back to the tree as it is
        again = build_seconds(cached, b)
        rows.append((b.tag, size_mb(cached, b.tag), first, changed, again))
        print(f"{b.tag}: {rows[-1][1]:.0f} MB, cold {first or 0:.0f} s, after a source change "
              f"{changed:.0f} s, nothing changed {again:.1f} s", flush=True)
    base = cached.python_base("python:3.11.7-slim-bookworm")
    load = os.getloadavg()[0]
    text = (f"\n## {dt.date.today().isoformat()} — {os.cpu_count()} CPUs, {cpu_model()}, "
            f"{tool.name}\n\n| image | size | cold build | after a source change | "
            "nothing changed |\n| --- | ---: | ---: | ---: | ---: |\n"
            + "".join(f"| `{t}` | {s:.0f} MB | {'-' if c is None else f'{c:.0f} s'} "
                      f"| {k:.0f} s | {a:.1f} s |\n" for t, s, c, k, a in rows)
            + f"| base `{base}` | {size_mb(cached, base):.0f} MB | | | |\n\n"
            f"Load average at the end: {load:.1f} (a shared machine).\n")
    print(text)
    if args.record:
        with args.record.open("a") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
