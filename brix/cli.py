"""The ``brix`` command."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["up"]:
        print("brix up: not there yet (it comes with the one-machine issue)", file=sys.stderr)
        return 2
    print("usage: brix up", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
