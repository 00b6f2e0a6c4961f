"""``python -m lab``: the scaling lab's command line (see ``lab.cli``)."""

from lab.cli import main

raise SystemExit(main())
