"""The ``brix`` command: ``brix up`` runs the whole system on this machine,
``brix demo`` shows it working while ``brix up`` runs.

``make up`` and ``make demo`` call these after setting up what is missing.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    """Stop once: later SIGTERM/SIGINT are ignored while the stack stops.

    Under make they come in pairs (a signal to the process group reaches make,
    and make sends it on to its child): a second one must not break off the
    clean-up that the first began.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def up(args: argparse.Namespace) -> int:
    import httpx

    from brix.local import view
    from brix.local.processes import StartError
    from brix.local.stack import Stack, StackConfig, describe

    cfg = StackConfig(root=ROOT, state=ROOT / ".brix", localkube_port=args.localkube_port,
                      prometheus_port=args.prometheus_port, gateway_port=args.gateway_port,
                      skip_models=tuple(args.skip_model), images=args.images)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    if args.images and not _build_images(cfg.skip_models):
        return 1
    stack = Stack(cfg)
    prometheus: httpx.Client | None = None

    def say(line: str) -> None:
        print(f"brix up: {line}", flush=True)

    try:
        stack.start(say)
        stack.wait_ready(say)
        print(f"brix is up: gateway at {cfg.gateway_url}\n{describe(cfg)}\n"
              "Ctrl-C stops everything.", flush=True)
        apps, custom, core = stack.clients()
        prometheus = httpx.Client(base_url=cfg.prometheus_url, timeout=2.0)
        tty = sys.stdout.isatty()
        last = ""
        last_print = 0.0
        while True:
            stack.check_alive()
            try:
                text = view.render(view.gather(apps, custom, core, prometheus),
                                   header=time.strftime("brix %H:%M:%S"))
            except Exception as exc:
                text = f"(view unavailable: {exc})"
            if tty:
                sys.stdout.write("\x1b[H\x1b[2J" + text + "\n\n" + describe(cfg) + "\n")
                sys.stdout.flush()
            elif text.split("\n", 1)[-1] != last.split("\n", 1)[-1] or (
                    time.monotonic() - last_print > 60):
                print(text, flush=True)
                last_print = time.monotonic()
            last = text
            time.sleep(args.interval)
    except KeyboardInterrupt:
        say("stopping")
        return_code = 0
    except StartError as exc:
        print(f"brix up failed: {exc}", file=sys.stderr, flush=True)
        return_code = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if prometheus is not None:
            prometheus.close()
        stack.stop()
    say("stopped")
    return return_code


def _build_images(skip_models: Sequence[str]) -> bool:
    """The images ``brix up --images`` runs (the engine's only with tiny-llama)."""
    from brix.images.builder import ImageError, build_images
    from brix.images.plan import PlanError

    only = ["gateway", "controller", "sidecar", *([] if "tiny-llama" in skip_models
                                                   else ["engine"])]
    try:
        build_images(only, say=lambda line: print(f"brix up: {line}", flush=True))
    except (ImageError, PlanError) as exc:
        print(f"brix up failed: {exc}", file=sys.stderr, flush=True)
        return False
    return True


def demo(args: argparse.Namespace) -> int:
    from brix.local.demo import run

    return run(root=ROOT, gateway_url=f"http://127.0.0.1:{args.gateway_port}",
               kubeconfig=ROOT / ".brix" / "kubeconfig", load_seconds=args.load_seconds)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="brix", description="brix on this machine.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="run localkube, Prometheus and the k8s/ local overlay")
    p_up.add_argument("--localkube-port", type=int, default=6443)
    p_up.add_argument("--prometheus-port", type=int, default=9090)
    p_up.add_argument("--gateway-port", type=int, default=8000)
    p_up.add_argument("--skip-model", action="append", default=[],
                      help="leave out a model Deployment (e.g. tiny-llama for a sim-only stack)")
    p_up.add_argument("--images", action="store_true",
                      help="run the images of docker/ (built first, cached) on localkube's "
                      "podman runtime instead of local processes")
    p_up.add_argument("--interval", type=float, default=2.0, help="seconds between view updates")
    p_up.set_defaults(func=up)
    p_demo = sub.add_parser("demo", help="show adapters and autoscaling while `brix up` runs")
    p_demo.add_argument("--gateway-port", type=int, default=8000)
    p_demo.add_argument("--load-seconds", type=float, default=60.0)
    p_demo.set_defaults(func=demo)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
