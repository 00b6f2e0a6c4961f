"""Sim-to-real on the live stack: ``python -m bench.lab.validate_stack [--duration S] --out DIR``.

Starts the stack of ``tests/helpers/lab_stack.py`` on localkube (sim engines with its
``PROFILE`` as pods with their sidecars, the gateway, Prometheus scraping every 2 s,
the scaler's fallback loop every 5 s with a 20 s stabilisation window, queue target 2,
1-4 replicas), then runs ``python -m lab validate --gateway-url ...`` on
``validate-5min`` (all of it unless ``--duration``) with 60 s to settle after it, and
writes ``DIR/validate.json`` (the comparison, with both replica series and each
request's row; the lab on the live loop's passes and Prometheus' scrape phase, and as
``own_clock`` on its own) and ``DIR/profile.json``. The sidecars' readiness is
``/readyz``, as ``k8s/`` deploys them (``--sidecar-readiness /healthz`` leaves it to
the engine). The integration test
``tests/integration/lab/test_validate_stack.py`` runs the same with 90 s of the trace.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lab.cli import main as lab_main
from tests.helpers.lab_stack import LOOP, PROFILE, start_lab_stack
from tests.helpers.procs import ProcessGroup


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lab.validate_stack")
    parser.add_argument("--duration", type=float, default=None, help="trace seconds to keep")
    parser.add_argument("--settle", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=Path(".brix/bench-lab-validate"))
    parser.add_argument("--sidecar-readiness", default="/readyz", choices=["/healthz", "/readyz"],
                        help="the sidecars' readiness path (/readyz: as k8s/ deploys them)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    profile = args.out / "profile.json"
    profile.write_text(json.dumps(PROFILE, indent=2) + "\n")
    procs = ProcessGroup(log_dir=args.out / "logs")
    try:
        stack = start_lab_stack(procs, args.out / "stack", profile=PROFILE, loop=LOOP,
                                sidecar_ready=args.sidecar_readiness)
        cut = ["--duration", f"{args.duration:g}"] if args.duration else []
        return lab_main(["validate", *stack.validate_args(), "--profile", str(profile),
                         "--trace", "validate-5min", *cut, "--settle", f"{args.settle:g}",
                         "--slo-ttft", "2.0", "--out", str(args.out / "validate.json")])
    finally:
        procs.stop_all()


if __name__ == "__main__":
    raise SystemExit(main())
