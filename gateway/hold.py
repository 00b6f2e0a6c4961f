"""Holding requests for a model that exists but has no ready pod (scale from zero).

A held request is counted in ``brix_gateway_requests_pending{model}`` (the
scaler reads it to scale the model's Deployment up from zero) and goes on the
moment the routing table has a ready endpoint for it: the table sets an event
at every change, and each held request re-reads its route then.
"""

from __future__ import annotations

import asyncio
import time

from prometheus_client import Gauge

from gateway.table import Route, RoutingTable


async def wait_for_route(
    table: RoutingTable, name: str, *, hold_seconds: float, pending: Gauge,
) -> Route | None:
    """The route for ``name`` once it has endpoints; None after ``hold_seconds``.

    While waiting the request counts in ``pending`` under the base model's name
    (an adapter's requests wait for its base model's pods).
    """
    route = table.route(name)
    if route is not None:
        return route
    gauge = pending.labels(table.base_model(name))
    gauge.inc()
    deadline = time.monotonic() + hold_seconds
    try:
        while True:
            changed = table.changed()
            route = table.route(name)
            if route is not None:
                return route
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                async with asyncio.timeout(left):
                    await changed.wait()
            except TimeoutError:
                return table.route(name)
    finally:
        gauge.dec()
