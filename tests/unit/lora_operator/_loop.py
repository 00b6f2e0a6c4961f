"""Running an async test body without pytest-asyncio (see ``in_new_loop``)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any


def in_new_loop(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body in a fresh loop, closed after.

    Not ``asyncio.run``: that also unsets the thread's current loop, which
    pytest-asyncio may have created, and that loop is then reported unclosed.
    """

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(fn(*args, **kwargs))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    return run
