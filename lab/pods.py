"""How long a new pod takes to serve: ``--cold-start``, a fixed value or a distribution.

Forms: ``60`` (seconds), ``uniform:40:90``, ``normal:60:10`` (mean, standard
deviation; never below 0), ``lognormal:60:0.3`` (mean, log-space sigma).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

__all__ = ["ColdStart", "parse_cold_start"]

ColdStart = Callable[[random.Random], float]


def parse_cold_start(text: str) -> ColdStart:
    """The sampler a ``--cold-start`` value names; ``ValueError`` with one line otherwise."""
    kind, _, rest = text.partition(":")
    try:
        if not rest:
            value = float(kind)
            if not value >= 0 or math.isinf(value):
                raise ValueError
            return lambda _rng: value
        args = [float(a) for a in rest.split(":")]
    except ValueError:
        raise ValueError(f"--cold-start {text!r}: expected seconds (60), uniform:LO:HI, "
                         "normal:MEAN:SD or lognormal:MEAN:SIGMA") from None
    if len(args) != 2 or any(a < 0 or math.isinf(a) or math.isnan(a) for a in args):
        raise ValueError(f"--cold-start {text!r}: {kind} takes two numbers >= 0")
    a, b = args
    if kind == "uniform" and a <= b:
        return lambda rng: rng.uniform(a, b)
    if kind == "normal":
        return lambda rng: max(0.0, rng.gauss(a, b))
    if kind == "lognormal" and a > 0:
        mu = math.log(a) - b * b / 2
        return lambda rng: rng.lognormvariate(mu, b)
    raise ValueError(f"--cold-start {text!r}: expected seconds (60), uniform:LO:HI (LO <= HI), "
                     "normal:MEAN:SD or lognormal:MEAN:SIGMA (MEAN > 0)")
