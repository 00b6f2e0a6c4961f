"""Waiting for a condition in tests: poll until it holds, fail naming what was awaited."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_until(probe: Callable[[], T | None], what: str, *, timeout: float = 30.0,
               interval: float = 0.2) -> T:
    """Call ``probe`` every ``interval`` seconds until it returns something truthy, and
    return that. A probe that raises AssertionError counts as not yet; past ``timeout``
    the wait fails with ``what`` and the last value (or assertion) seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
        except AssertionError as exc:
            last = exc
        else:
            if last:
                found: T = last
                return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}; last seen: {last!r}")
        time.sleep(interval)
