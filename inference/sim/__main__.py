"""``python -m inference.sim``: see ``inference.sim.main``."""

import sys

from inference.sim import main

if __name__ == "__main__":
    sys.exit(main())
