"""``python -m brix.images [--only gateway,sidecar,...]``: build brix's images."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from brix.images.builder import ImageError, build_images
from brix.images.plan import PlanError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m brix.images", description=__doc__)
    parser.add_argument("--only", default="",
                        help="comma-separated components: gateway, sidecar, controller, engine")
    args = parser.parse_args(argv)
    only = [c for c in args.only.split(",") if c]
    started = time.monotonic()
    try:
        built = build_images(only, say=lambda line: print(f"make images: {line}", flush=True))
    except (ImageError, PlanError) as e:
        print(f"make images: {e}", file=sys.stderr)
        return 1
    print(f"make images: {len(built)} image(s) ready in {time.monotonic() - started:.0f}s: "
          f"{' '.join(built)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
