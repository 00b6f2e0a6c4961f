"""Image build benchmark: each image of docker/ built cold (``--no-cache``), then again
with nothing changed (the layer cache), and its size.

    python -m bench.images [--only gateway,sidecar,controller] [--record bench/images/RESULTS.md]

Uses ``make images``' own code (``brix.images``) for the engine, the base and pip's
settings; ``--no-cache`` rebuilds every layer of an image but keeps the base. The
engine (vLLM) is slow: include it with ``--only ...,engine``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.machine import cpu_model
from brix.images import plan as p
from brix.images.builder import ROOT, Builder, find_tool, manifest_builds


def build_seconds(builder: Builder, build: p.Build, base: str, *, cold: bool) -> float:
    tool = builder.tool
    args = [*tool.argv, "build", "--network", "host", *tool.run_flags, *builder.pip_flags(),
            "--build-arg", f"PYTHON_IMAGE={base}", *(["--target", build.target] if build.target
                                                     else []),
            *(["--no-cache"] if cold else []), "-t", build.tag, "-f", str(ROOT / build.dockerfile),
            str(ROOT)]
    started = time.monotonic()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    return time.monotonic() - started


def size_mb(builder: Builder, tag: str) -> float:
    out = builder.tool.run("image", "inspect", tag).stdout
    return float(json.loads(out)[0]["Size"]) / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.images")
    parser.add_argument("--only", default="gateway,sidecar,controller")
    parser.add_argument("--record", type=Path)
    args = parser.parse_args(argv)
    builder = Builder(find_tool(), say=print)
    builds = manifest_builds([c for c in args.only.split(",") if c])
    base = builder.python_base("python:3.11.7-slim-bookworm")
    rows = []
    for b in builds:
        if b.needs_gpu_base:
            continue
        cold = build_seconds(builder, b, base, cold=True)
        cached = build_seconds(builder, b, base, cold=False)
        rows.append((b.tag, size_mb(builder, b.tag), cold, cached))
        print(f"{b.tag}: {rows[-1][1]:.0f} MB, cold {cold:.0f} s, cached {cached:.1f} s",
              flush=True)
    load = os.getloadavg()[0]
    text = (f"\n## {dt.date.today().isoformat()} — {os.cpu_count()} CPUs, {cpu_model()}, "
            f"{builder.tool.name}\n\n| image | size | cold build | cached build |\n"
            "| --- | ---: | ---: | ---: |\n"
            + "".join(f"| `{t}` | {s:.0f} MB | {c:.0f} s | {k:.1f} s |\n"
                      for t, s, c, k in rows)
            + f"| base `{base}` | {size_mb(builder, base):.0f} MB | | |\n\n"
            f"Load average at the end: {load:.1f} (a shared machine).\n")
    print(text)
    if args.record:
        with args.record.open("a") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
