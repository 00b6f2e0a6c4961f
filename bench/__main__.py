"""``make bench``: run every benchmark of brix, one after the other.

Each benchmark is also runnable alone as ``python -m bench.<name>`` and records
its results (with the machine and the date) in ``bench/<name>/RESULTS.md``;
see that file for its options. Run on a quiet machine: timings on a shared one
measure the wait for a CPU.
"""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = ("sim", "sidecar.metrics_latency", "gateway", "gateway.peer", "routing", "scaler",
              "operator", "localkube", "localkube_node", "up", "lab")


def main(argv: list[str]) -> int:
    chosen = argv or list(BENCHMARKS)
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}",
              file=sys.stderr)
        return 2
    failed = []
    for name in chosen:
        print(f"== bench.{name}", flush=True)
        if subprocess.run([sys.executable, "-m", f"bench.{name}"], check=False).returncode:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
