"""Trace readers, synthetic traces and cut/stretch: what they read and how they refuse."""

from __future__ import annotations

import gzip
import io
import itertools
import json
from pathlib import Path

import pytest

from lab.traces import BUNDLED, Trace, TraceError, load, transform
from lab.traces.files import read_azure_csv, write_azure_csv

pytestmark = pytest.mark.unit

AZURE = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,374,44
2023-11-16 18:15:47.1805900,396,0
2023-11-16 18:15:50.0000000,10,7
"""


def test_azure_csv_arrivals_are_relative_to_the_first_request(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(AZURE)
    trace = load(str(path))
    assert [round(r.arrival, 6) for r in trace.requests] == [0.0, 0.5, 3.31941]
    assert [(r.prompt_tokens, r.output_tokens) for r in trace.requests] == [
        (374, 44), (396, 1), (10, 7)]  # a 0-token output still takes one step
    assert trace.duration == pytest.approx(3.31941)


def test_mooncake_jsonl_and_gzip_read_alike(tmp_path: Path) -> None:
    rows = [{"timestamp": 1000, "input_length": 7, "output_length": 3, "hash_ids": [5, 6]},
            {"timestamp": 2500, "input_length": 9, "output_length": 4, "hash_ids": []}]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    plain = tmp_path / "m.jsonl"
    plain.write_text(text)
    packed = tmp_path / "m.jsonl.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    for path in (plain, packed):
        trace = load(str(path))
        assert [r.arrival for r in trace.requests] == [0.0, 1.5]
        assert [r.prefix for r in trace.requests] == ["5", ""]
        assert [r.blocks for r in trace.requests] == [(5, 6), ()]
        assert trace.block_tokens == 512
        assert trace.requests[1].prompt_tokens == 9


@pytest.mark.parametrize(("name", "text", "message"), [
    ("a.csv", "TIMESTAMP,ContextTokens\n2023-11-16 18:15:46,3\n",
     "missing column(s) GeneratedTokens"),
    ("b.csv", AZURE.replace("18:15:50", "18:15:40"), "b.csv line 4: timestamps are not sorted"),
    ("c.csv", AZURE.replace(",10,7", ",ten,7"), "ContextTokens is not an integer"),
    ("d.jsonl", '{"timestamp": 5, "input_length": 1, "output_length": 1}\n'
                '{"timestamp": 1, "input_length": 1, "output_length": 1}\n',
     "d.jsonl line 2: timestamps are not sorted"),
    ("e.jsonl", '{"timestamp": 5, "input_length": 1}\n', "missing field(s) output_length"),
    ("f.jsonl", "not json\n", "f.jsonl line 1: not JSON"),
    ("h.jsonl", '{"timestamp": 5, "input_length": 1, "output_length": 1, "hash_ids": "ab"}\n',
     "h.jsonl line 1: hash_ids must be a list of integers"),
    ("i.jsonl", '{"timestamp": 5, "input_length": 1, "output_length": 1, "hash_ids": [1.5]}\n',
     "i.jsonl line 1: hash_ids must be a list of integers"),
    ("g.parquet", "x", "unknown trace"),
])
def test_bad_files_give_one_line_naming_the_problem(tmp_path: Path, name: str, text: str,
                                                     message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(TraceError) as info:
        load(str(path))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_specs_are_refused() -> None:
    for spec, message in [("synthetic:wavy", "unknown synthetic trace kind 'wavy'"),
                          ("synthetic:spike?rate=-1", "rate must be > 0"),
                          ("synthetic:steady?speed=3", "unknown parameter 'speed'"),
                          ("nothing-here", "unknown trace 'nothing-here'"),
                          ("prometheus:http://127.0.0.1:1?start=0&end=10", "model=NAME")]:
        with pytest.raises(TraceError) as info:
            load(spec)
        assert message in str(info.value), spec


def test_bundled_traces_load_with_their_published_sizes() -> None:
    assert len(load("azure-conv").requests) == 19366
    assert len(load("mooncake-conv").requests) == 12031
    short = load("validate-5min")
    assert 250 <= short.duration <= 300
    assert set(BUNDLED) >= {"azure-conv", "mooncake-conv", "validate-5min"}


def test_synthetic_is_seeded_and_follows_its_rate() -> None:
    a = load("synthetic:steady?rate=4&duration=500&seed=3")
    b = load("synthetic:steady?rate=4&duration=500&seed=3")
    c = load("synthetic:steady?rate=4&duration=500&seed=4")
    assert a.requests == b.requests
    assert a.requests != c.requests
    assert 1800 < len(a.requests) < 2200  # 2000 expected, Poisson
    spike = load("synthetic:spike?rate=2&duration=600&at=300&width=60&factor=5&seed=1")
    inside = sum(1 for r in spike.requests if 300 <= r.arrival < 360)
    before = sum(1 for r in spike.requests if 240 <= r.arrival < 300)
    assert inside > 3 * before


def test_bursty_arrivals_vary_more_than_poisson() -> None:
    def cv(trace: Trace) -> float:
        gaps = [b.arrival - a.arrival for a, b in itertools.pairwise(trace.requests)]
        mean = sum(gaps) / len(gaps)
        var = sum((g - mean) ** 2 for g in gaps) / len(gaps)
        return float(var ** 0.5 / mean)

    assert cv(load("synthetic:bursty?rate=5&duration=1000&seed=2")) > 2.0
    assert 0.8 < cv(load("synthetic:steady?rate=5&duration=1000&seed=2")) < 1.2


def test_transform_cuts_stretches_and_thins() -> None:
    trace = load("synthetic:steady?rate=10&duration=100&seed=1")
    cut = transform(trace, start=20, duration=30)
    assert all(0 <= r.arrival < 30 for r in cut.requests)
    assert cut.duration == 30
    slow = transform(trace, time_scale=2.0)
    assert slow.requests[-1].arrival == pytest.approx(2 * trace.requests[-1].arrival)
    half = transform(trace, rate_scale=0.5, seed=1)
    double = transform(trace, rate_scale=2.0, seed=1)
    n = len(trace.requests)
    assert 0.4 * n < len(half.requests) < 0.6 * n
    assert len(double.requests) == 2 * n
    with pytest.raises(TraceError, match="no request between"):
        transform(trace, start=500)
    with pytest.raises(TraceError, match="must be > 0"):
        transform(trace, time_scale=0)


def test_azure_writer_round_trips() -> None:
    trace = load("synthetic:ramp?rate=1&duration=60&seed=5")
    buffer = io.StringIO()
    write_azure_csv(trace, buffer)
    buffer.seek(0)
    again = read_azure_csv(buffer, name="x.csv")
    shift = trace.requests[0].arrival
    assert len(again.requests) == len(trace.requests)
    for read, written in zip(again.requests, trace.requests, strict=True):
        assert read.arrival + shift == pytest.approx(written.arrival, abs=1e-5)
        assert (read.prompt_tokens, read.output_tokens) == (written.prompt_tokens,
                                                            written.output_tokens)


def test_mooncake_blocks_survive_loading_and_transforms() -> None:
    trace = load("mooncake-conv")
    assert trace.block_tokens == 512
    first = trace.requests[0]
    # A hash id per 512 prompt tokens, the last block partial (the trace's README).
    assert len(first.blocks) == -(-first.prompt_tokens // 512)
    cut = transform(trace, duration=60, time_scale=0.5)
    assert cut.block_tokens == 512
    assert cut.requests[0].blocks == first.blocks
    assert load("azure-conv").block_tokens == 0
    assert all(not r.blocks for r in load("azure-conv").requests[:100])
