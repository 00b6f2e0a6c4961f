"""``python -m inference.sidecar``."""

import sys

from inference.sidecar import main

if __name__ == "__main__":
    sys.exit(main())
