"""Sync tests beside async ones without a stray event loop.

looptime's plugin asks the loop policy for the current loop around every
test; in a sync test that runs before any async one, that call creates a loop
nobody closes (a ResourceWarning, an error under ``-W error``, in a later
test). Marking "no current loop" once makes that call fail quietly instead.
"""

from __future__ import annotations

import asyncio
import warnings

import pytest


@pytest.fixture(autouse=True, scope="session")
def _no_implicit_event_loop() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_event_loop(None)
