"""In-flight counts shared by the gateway's worker processes (``--workers N``).

Each worker owns one row of a shared buffer and is the only process that
writes it: per column (one column per endpoint URL) the number of requests
that worker has in flight there. A reader sums a column over the rows, so
every worker's picker sees the whole gateway's in-flight count per pod
without locks or atomic adds (each cell is one aligned 8-byte word, written
whole by its one writer). When a worker dies, the supervisor zeroes its row
before starting the next one in its place: what the dead worker had in
flight (connections the kernel has closed) stops counting at once.

The supervisor, which owns discovery, gives each endpoint URL a column
(``Columns``) and publishes the map with a version; a worker acknowledges the
version it has applied in its row's header. A column whose URL left the table
is reused only once every worker has acknowledged a map without it and its
count is 0, so a request still in flight at a removed pod never lands in the
column of a new one.

Each column has a second cell in the row, past the in-flight cells: the
prompt characters that worker's requests there still have to prefill
(``gateway.load``), summed over the rows the same way.

Row layout (8-byte words): ``[acked version, wanted_at (float), in flight at
column 0 .. capacity - 1, prefill at column 0 .. capacity - 1]``;
``wanted_at`` is when a request in that worker last routed on the sidecars'
queues (``time.monotonic()``, one clock for every process of the machine),
which tells the supervisor to keep polling them.
"""

from __future__ import annotations

import mmap
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from gateway.load import LoadTracker
from gateway.picker import Candidate
from gateway.table import Endpoint

CAPACITY = 4096
"""Columns (endpoint URLs with a shared count at once); beyond, a worker counts only its own."""

_HEADER = 2  # words before the columns in each row
_ACKED, _WANTED = 0, 1


class SharedCounts:
    """Per-worker rows of in-flight counts per column, over one shared buffer."""

    def __init__(self, buffer: memoryview | bytearray | mmap.mmap, *, workers: int,
                 capacity: int = CAPACITY) -> None:
        if workers < 1 or capacity < 1:
            raise ValueError("workers and capacity must be >= 1")
        view = memoryview(buffer)
        if view.nbytes < self.size(workers, capacity):
            raise ValueError(f"shared buffer of {view.nbytes} bytes is smaller than "
                             f"{self.size(workers, capacity)}")
        self.workers = workers
        self.capacity = capacity
        self._stride = _HEADER + 2 * capacity
        self._words = view.cast("B").cast("q")
        self._floats = view.cast("B").cast("d")

    def close(self) -> None:
        """Let go of the buffer (an mmap can close only once no view holds it)."""
        self._words.release()
        self._floats.release()

    @staticmethod
    def size(workers: int, capacity: int = CAPACITY) -> int:
        """Bytes of the buffer for ``workers`` rows of ``capacity`` columns."""
        return 8 * workers * (_HEADER + 2 * capacity)

    # --- one worker's row (written by that worker only) ---

    def set(self, worker: int, column: int, value: int) -> None:
        self._words[worker * self._stride + _HEADER + column] = value

    def get(self, worker: int, column: int) -> int:
        return int(self._words[worker * self._stride + _HEADER + column])

    def set_prefill(self, worker: int, column: int, value: int) -> None:
        self._words[worker * self._stride + _HEADER + self.capacity + column] = value

    def ack(self, worker: int, version: int) -> None:
        self._words[worker * self._stride + _ACKED] = version

    def want(self, worker: int, at: float) -> None:
        self._floats[worker * self._stride + _WANTED] = at

    # --- readers ---

    def total(self, column: int) -> int:
        """Requests in flight at ``column``'s endpoint, all workers together."""
        words, i, stride = self._words, _HEADER + column, self._stride
        return sum(words[i + w * stride] for w in range(self.workers))

    def total_prefill(self, column: int) -> int:
        """Prompt characters still to prefill at ``column``'s endpoint, all workers together."""
        words, i, stride = self._words, _HEADER + self.capacity + column, self._stride
        return sum(words[i + w * stride] for w in range(self.workers))

    def acked(self, worker: int) -> int:
        return int(self._words[worker * self._stride + _ACKED])

    def wanted_at(self) -> float:
        """The latest time any worker routed a request on the sidecars' queues (0: never)."""
        return max(self._floats[w * self._stride + _WANTED] for w in range(self.workers))

    # --- the supervisor ---

    def clear(self, worker: int) -> None:
        """Forget a dead worker: its counts, acknowledgement and queue interest."""
        start = worker * self._stride
        self._words[start:start + self._stride] = memoryview(
            bytes(8 * self._stride)).cast("q")


class Columns:
    """Endpoint URL -> column of ``SharedCounts``, assigned by the supervisor (pure)."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.of: dict[str, int] = {}
        self._retired: dict[str, tuple[int, int]] = {}  # url -> (column, version it left)
        self._free = list(range(capacity - 1, -1, -1))  # a stack: column 0 first
        self.unplaced: set[str] = set()
        """URLs in the table with no column (capacity reached): counted per worker only."""

    def assign(self, urls: Iterable[str], version: int) -> dict[str, int]:
        """The map for the table's ``urls`` as of ``version`` (new URLs get columns)."""
        wanted = set(urls)
        for url in [u for u in self.of if u not in wanted]:
            self._retired[url] = (self.of.pop(url), version)
        self.unplaced = set()
        for url in sorted(wanted - self.of.keys()):
            back = self._retired.pop(url, None)
            if back is not None:  # the same pod again: its old column, counts and all
                self.of[url] = back[0]
            elif self._free:
                self.of[url] = self._free.pop()
            else:
                self.unplaced.add(url)
        return dict(self.of)

    def release(self, free: Callable[[int, int], bool]) -> list[int]:
        """Return retired columns for which ``free(column, version_retired)`` holds."""
        done = [(url, col) for url, (col, version) in self._retired.items() if free(col, version)]
        for url, col in done:
            del self._retired[url]
            self._free.append(col)
        return [col for _, col in done]


def reusable(counts: SharedCounts, column: int, version: int,
             sent: Mapping[int, int]) -> bool:
    """May ``column`` (retired at ``version``) be reused? Only when nothing counts in it
    and every worker that was sent a map (``sent``: worker -> version) has applied one
    from ``version`` on (a worker sent nothing yet holds no map, so no old column)."""
    return (counts.total(column) == 0
            and all(counts.acked(w) >= version for w in sent))


class SharedLoadTracker(LoadTracker):
    """A worker's ``LoadTracker``: its in-flight counts go to its row of ``SharedCounts``,
    and candidates carry the totals of every worker."""

    def __init__(self, counts: SharedCounts, worker: int) -> None:
        super().__init__()
        self._counts = counts
        self._worker = worker
        self._columns: dict[str, int] = {}
        self._held: dict[str, int] = {}  # url -> column, while this worker has requests there

    def set_columns(self, columns: Mapping[str, int], version: int) -> None:
        """Apply the supervisor's map ``version`` (then acknowledge it)."""
        self._columns = dict(columns)
        self._counts.ack(self._worker, version)

    def want_queues(self) -> None:
        self._counts.want(self._worker, time.monotonic())

    def started(self, endpoint: Endpoint, prefill: int = 0) -> None:
        super().started(endpoint, prefill)
        url = endpoint.url
        column = self._held.get(url)
        if column is None:
            column = self._columns.get(url)
            if column is None:
                return
            self._held[url] = column
        self._counts.set(self._worker, column, self.in_flight[url])
        if prefill:
            self._counts.set_prefill(self._worker, column, self.prefill[url])

    def prefilled(self, endpoint: Endpoint, prefill: int) -> None:
        super().prefilled(endpoint, prefill)
        if prefill and (column := self._held.get(endpoint.url)) is not None:
            self._counts.set_prefill(self._worker, column, self.prefill.get(endpoint.url, 0))

    def finished(self, endpoint: Endpoint, prefill: int = 0) -> None:
        super().finished(endpoint, prefill)
        url = endpoint.url
        column = self._held.get(url)
        if column is None:
            return
        left = self.in_flight.get(url, 0)
        self._counts.set(self._worker, column, left)
        if prefill:
            self._counts.set_prefill(self._worker, column, self.prefill.get(url, 0))
        if left == 0:
            del self._held[url]

    def candidates(self, endpoints: Sequence[Endpoint]) -> list[Candidate]:
        out = []
        columns, counts, queues = self._columns, self._counts, self.queues
        for e in endpoints:
            column = columns.get(e.url)
            queue = queues.get(e.url)
            out.append(Candidate(
                key=e.url,
                in_flight=(counts.total(column) if column is not None
                           else self.in_flight.get(e.url, 0)),
                waiting=queue[0] if queue else None, running=queue[1] if queue else None,
                prefill=(counts.total_prefill(column) if column is not None
                         else self.prefill.get(e.url, 0)),
            ))
        return out
