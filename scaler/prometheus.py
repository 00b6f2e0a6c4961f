"""Asking Prometheus, with a short cache shared by every caller.

``MetricsSource`` runs the queries of ``scaler.signals`` through
``prometheus-api-client`` (synchronous, so in a worker thread, with a timeout)
and caches each answer for ``cache_ttl`` seconds (about one scrape interval:
fresher answers cannot hold newer data). Concurrent callers of one query share
one request (single flight), so 1,000 ScaledObjects over 50 models cost at
most 50 queries per interval. Failures are cached for a shorter while so an
unreachable Prometheus is not hammered.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from scaler.signals import (
    DataError,
    ModelSample,
    PrometheusError,
    SignalError,
    SourceKey,
    model_query,
    read_model_sample,
    read_query_value,
)
from scaler.slo_signal import SloSample, read_slo_sample, slo_query

log = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(slots=True)
class _Entry:
    task: asyncio.Task[Any]
    done_at: float | None = None
    failed: bool = False


class MetricsSource:
    """Measures models and raw queries in Prometheus, cached per query."""

    def __init__(
        self,
        default_url: str,
        *,
        timeout: float = 3.0,
        cache_ttl: float = 5.0,
        error_ttl: float = 1.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._default_url = default_url.rstrip("/")
        self._timeout = timeout
        self._ttl = cache_ttl
        self._error_ttl = min(error_ttl, cache_ttl)
        self._clock = clock
        self._clients: dict[str, PrometheusConnect] = {}
        self._cache: dict[Hashable, _Entry] = {}

    # --- public ------------------------------------------------------------

    async def model_sample(self, key: SourceKey, *, max_age: float | None = None) -> ModelSample:
        """Every part of a model's signals (``key.model`` set).

        ``max_age`` asks for an answer fresher than the cache interval.
        """
        assert key.model is not None
        model, namespace = key.model, key.namespace

        async def fetch() -> ModelSample:
            result = await self._query(key.address, model_query(namespace, model))
            return read_model_sample(result, model=model, namespace=namespace)

        sample: ModelSample = await self._cached(key, fetch, max_age)
        return sample

    async def query_value(self, key: SourceKey, *, max_age: float | None = None) -> float:
        """The single value of a raw query (``key.query`` set)."""
        assert key.query is not None
        query = key.query

        async def fetch() -> float:
            return read_query_value(await self._query(key.address, query), query=query)

        value: float = await self._cached(key, fetch, max_age)
        return value

    async def slo_sample(self, key: SourceKey, attainment: float, *,
                         max_age: float | None = None) -> SloSample:
        """The load of an ``slo`` trigger on ``key.model`` (``scaler.slo_signal``)."""
        assert key.model is not None
        model, query = key.model, slo_query(key.namespace, key.model, attainment)

        async def fetch() -> SloSample:
            return read_slo_sample(await self._query(key.address, query), model=model)

        sample: SloSample = await self._cached(("slo", key, attainment), fetch, max_age)
        return sample

    def url_for(self, address: str | None) -> str:
        return address or self._default_url

    # --- cache -------------------------------------------------------------

    async def _cached(self, key: Hashable, fetch: Callable[[], Coroutine[Any, Any, Any]],
                      max_age: float | None = None) -> Any:
        now = self._clock()
        entry = self._cache.get(key)
        if entry is not None and entry.done_at is not None:
            ttl = self._error_ttl if entry.failed else self._ttl
            if max_age is not None:
                ttl = min(ttl, max_age)
            if now - entry.done_at >= ttl:
                entry = None
        if entry is None:
            self._prune(now)
            entry = _Entry(asyncio.create_task(fetch(), name=f"prometheus {key}"))
            self._cache[key] = entry

            def finished(task: asyncio.Task[Any], entry: _Entry = entry) -> None:
                entry.done_at = self._clock()
                entry.failed = task.cancelled() or task.exception() is not None

            entry.task.add_done_callback(finished)
        # shield: a caller that gives up (a cancelled RPC) does not cancel the shared query.
        return await asyncio.shield(entry.task)

    def _prune(self, now: float) -> None:
        if len(self._cache) < 4096:
            return
        for key, entry in list(self._cache.items()):
            if entry.done_at is not None and now - entry.done_at >= self._ttl:
                del self._cache[key]

    # --- Prometheus --------------------------------------------------------

    def _client(self, url: str) -> PrometheusConnect:
        client = self._clients.get(url)
        if client is None:
            # No retries: the answer is wanted within the timeout, and the cache
            # (plus KEDA's own polling) is the retry.
            client = PrometheusConnect(url=url, timeout=self._timeout,
                                       retry=Retry(total=0, raise_on_status=False))
            self._clients[url] = client
        return client

    async def _query(self, address: str | None, promql: str) -> Any:
        url = self.url_for(address)
        client = self._client(url)
        try:
            return await asyncio.to_thread(client.custom_query, promql)
        except requests.Timeout:
            raise PrometheusError(
                f"Prometheus at {url} did not answer within {self._timeout:g}s") from None
        except requests.RequestException as exc:
            raise PrometheusError(
                f"Prometheus at {url} is unreachable: {_short(exc)}") from None
        except PrometheusApiClientException as exc:
            raise _refusal(url, str(exc)) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"Prometheus at {url} sent an unreadable answer: {exc}") from None


def _short(exc: BaseException) -> str:
    text = str(exc)
    m = re.search(r"\[Errno -?\d+\] [^')\]]+|Connection refused|Name or service not known", text)
    return m.group(0) if m else text[:200]


def _refusal(url: str, text: str) -> SignalError:
    m = re.search(r"HTTP Status Code (\d+)", text)
    status = int(m.group(1)) if m else 0
    detail = re.search(r'"error":"((?:[^"\\]|\\.)*)"', text)
    why = detail.group(1) if detail else text[:300]
    if status in (400, 422):
        return PrometheusError(f"Prometheus at {url} refused the query: {why}", code="invalid",
                               kind="metadata")  # the trigger's query is at fault
    if status >= 500 or status in (408, 429):
        return PrometheusError(f"Prometheus at {url} failed ({status}): {why}")
    return PrometheusError(f"Prometheus at {url} answered {status or 'an error'}: {why}",
                           code="internal")
