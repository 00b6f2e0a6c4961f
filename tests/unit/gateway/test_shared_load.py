"""The in-flight counts that the workers of ``--workers N`` share (gateway.shared_load).

Each worker writes its own row; a reader sums the rows; a dead worker's row is
zeroed; a column is reused only when it is free in every worker's eyes.
"""

from __future__ import annotations

import mmap
import random

import pytest

from gateway.picker import pick
from gateway.shared_load import Columns, SharedCounts, SharedLoadTracker, reusable
from gateway.table import Endpoint

A = Endpoint("a", "http://10.0.0.1:8000")
B = Endpoint("b", "http://10.0.0.2:8000")


def shared(workers: int = 2, capacity: int = 8) -> SharedCounts:
    return SharedCounts(bytearray(SharedCounts.size(workers, capacity)), workers=workers,
                        capacity=capacity)


def trackers(counts: SharedCounts, columns: dict[str, int],
             version: int = 1) -> list[SharedLoadTracker]:
    out = []
    for w in range(counts.workers):
        t = SharedLoadTracker(counts, w)
        t.set_columns(columns, version)
        out.append(t)
    return out


def in_flight(t: SharedLoadTracker, *endpoints: Endpoint) -> list[int]:
    return [c.in_flight for c in t.candidates(list(endpoints))]


def test_every_worker_sees_the_sum_of_all_workers_in_flight() -> None:
    counts = shared()
    w0, w1 = trackers(counts, {A.url: 0, B.url: 1})
    w0.started(A)
    w0.started(A)
    w1.started(A)
    w1.started(B)
    assert in_flight(w0, A, B) == [3, 1]
    assert in_flight(w1, A, B) == [3, 1]
    w0.finished(A)
    w1.finished(B)
    assert in_flight(w1, A, B) == [2, 0]
    # Each worker still knows its own share.
    assert w0.in_flight == {A.url: 1}
    assert w1.in_flight == {A.url: 1}


def test_least_request_in_one_worker_avoids_the_pod_another_worker_loads() -> None:
    counts = shared()
    w0, w1 = trackers(counts, {A.url: 0, B.url: 1})
    w0.started(A)  # a request held open by worker 0
    for turn in range(5):  # worker 1 has nothing in flight itself
        assert pick("least-request", w1.candidates([A, B]), rng=random.Random(turn)) == 1


def test_a_dead_workers_row_is_zeroed_and_the_others_stay() -> None:
    counts = shared(workers=3)
    w0, w1, w2 = trackers(counts, {A.url: 0, B.url: 1})
    for _ in range(4):
        w1.started(A)  # worker 1 dies with these in flight
    w0.started(A)
    w2.started(B)
    assert in_flight(w0, A, B) == [5, 1]
    counts.clear(1)
    assert in_flight(w0, A, B) == [1, 1]
    assert counts.acked(1) == 0
    # Its replacement starts from nothing in the same row.
    new = SharedLoadTracker(counts, 1)
    new.set_columns({A.url: 0, B.url: 1}, 1)
    new.started(B)
    assert in_flight(w2, A, B) == [1, 2]


def test_an_endpoint_without_a_column_counts_only_this_workers_requests() -> None:
    counts = shared()
    w0, w1 = trackers(counts, {A.url: 0})
    w0.started(B)
    assert in_flight(w0, B) == [1]
    assert in_flight(w1, B) == [0]


def test_a_request_started_before_its_pod_left_the_map_still_ends_in_its_column() -> None:
    counts = shared()
    w0, w1 = trackers(counts, {A.url: 0, B.url: 1})
    w0.started(A)
    w0.set_columns({B.url: 1}, 2)  # A left the table while the request runs
    assert counts.total(0) == 1
    w0.finished(A)
    assert counts.total(0) == 0
    w1.set_columns({B.url: 1}, 2)


def test_queue_interest_is_the_latest_of_any_worker() -> None:
    counts = shared(workers=3)
    assert counts.wanted_at() == 0.0
    counts.want(2, 50.0)
    counts.want(0, 20.0)
    assert counts.wanted_at() == 50.0
    counts.clear(2)
    assert counts.wanted_at() == 20.0


def test_the_counts_are_shared_through_a_shared_mapping() -> None:
    size = SharedCounts.size(2, 8)
    with mmap.mmap(-1, size) as memory:
        writer = SharedCounts(memory, workers=2, capacity=8)
        reader = SharedCounts(memory, workers=2, capacity=8)
        writer.set(1, 3, 7)
        assert reader.total(3) == 7
        writer.close()
        reader.close()


def test_a_buffer_too_small_is_refused() -> None:
    with pytest.raises(ValueError, match="smaller"):
        SharedCounts(bytearray(16), workers=2, capacity=8)


# --- columns (the supervisor's map) ---

def test_new_urls_get_free_columns_and_a_returning_url_its_old_one() -> None:
    cols = Columns(capacity=4)
    first = cols.assign({A.url, B.url}, 1)
    assert sorted(first.values()) == [0, 1]
    assert cols.assign({B.url}, 2) == {B.url: first[B.url]}
    assert cols.assign({A.url, B.url}, 3) == first


def test_a_retired_column_is_reused_only_when_free_in_every_workers_eyes() -> None:
    counts = shared(workers=2, capacity=2)
    cols = Columns(capacity=2)
    c = Endpoint("c", "http://10.0.0.3:8000")
    mapping = cols.assign({A.url, B.url}, 1)
    w0, w1 = trackers(counts, mapping, 1)
    w1.started(A)
    cols.assign({B.url}, 2)  # A leaves; the map without it is version 2
    sent = {0: 2, 1: 2}

    def release() -> list[int]:
        return cols.release(lambda col, v: reusable(counts, col, v, sent))

    assert release() == []  # nobody acknowledged version 2, and A has a request
    assert cols.assign({B.url, c.url}, 3) == {B.url: mapping[B.url]}  # no room for c
    assert cols.unplaced == {c.url}
    w0.set_columns({B.url: mapping[B.url]}, 2)
    w1.set_columns({B.url: mapping[B.url]}, 2)
    assert release() == []  # acknowledged, but the request at A is still in flight
    w1.finished(A)
    assert release() == [mapping[A.url]]
    assert cols.assign({B.url, c.url}, 4) == {B.url: mapping[B.url], c.url: mapping[A.url]}
    assert cols.unplaced == set()


def test_a_worker_sent_no_map_yet_does_not_hold_columns_back() -> None:
    counts = shared(workers=2, capacity=2)
    cols = Columns(capacity=2)
    mapping = cols.assign({A.url}, 1)
    (w0, _) = trackers(counts, mapping, 1)
    cols.assign(set(), 2)
    w0.set_columns({}, 2)
    counts.clear(1)  # worker 1 was restarted and has been sent nothing yet
    assert cols.release(lambda col, v: reusable(counts, col, v, {0: 2})) == [mapping[A.url]]


def test_every_worker_sees_the_prefill_all_workers_sent_and_its_release() -> None:
    counts = shared()
    w0, w1 = trackers(counts, {A.url: 0, B.url: 1})
    w0.started(A, 4000)
    w1.started(A, 500)
    w1.started(B, 100)

    def prefill(t: SharedLoadTracker) -> list[int]:
        return [c.prefill for c in t.candidates([A, B])]

    assert prefill(w0) == prefill(w1) == [4500, 100]
    w0.prefilled(A, 4000)  # its first byte came; the request runs on
    assert prefill(w1) == [500, 100]
    assert in_flight(w1, A, B) == [2, 1]
    w1.finished(A, 500)  # failed before its first byte
    w1.finished(B, 100)
    w0.finished(A)
    assert prefill(w0) == [0, 0]
    assert in_flight(w0, A, B) == [0, 0]


def test_a_dead_workers_prefill_is_zeroed_with_its_row() -> None:
    counts = shared()
    w0, w1 = trackers(counts, {A.url: 0})
    w0.started(A, 700)
    w1.started(A, 9000)  # worker 1 dies with this prompt not yet prefilled
    counts.clear(1)
    assert [c.prefill for c in w0.candidates([A])] == [700]
