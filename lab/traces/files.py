"""Readers of the two real trace formats: Azure's LLM inference CSV and Mooncake's JSONL.

- Azure LLM inference trace 2023: ``TIMESTAMP,ContextTokens,GeneratedTokens``,
  timestamps as ``2023-11-16 18:15:46.6805900`` (ISO date and time, any fraction).
- Mooncake: one JSON object a line, ``timestamp`` (milliseconds),
  ``input_length``, ``output_length``, ``hash_ids`` (ids of 512-token prompt
  blocks, kept as each request's ``blocks``); ``.jsonl.gz`` is read through gzip.

Both must be sorted by time; arrivals are made relative to the first request.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import datetime
from pathlib import Path
from typing import IO

from lab.traces.model import Request, Trace, TraceError

__all__ = ["read_azure_csv", "read_file", "read_mooncake_jsonl", "write_azure_csv"]

AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
MOONCAKE_BLOCK_TOKENS = 512
"""Tokens per ``hash_ids`` block in the Mooncake traces (their README)."""


def read_file(path: Path) -> Trace:
    """Read a trace file by its extension (``.csv``, ``.jsonl``, ``.jsonl.gz``)."""
    name = path.name
    if not path.is_file():
        raise TraceError(f"trace file {path} does not exist")
    if name.endswith(".csv"):
        with path.open(newline="", encoding="utf-8") as f:
            return read_azure_csv(f, name=name)
    if name.endswith(".jsonl.gz"):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return read_mooncake_jsonl(f, name=name)
    if name.endswith(".jsonl"):
        with path.open(encoding="utf-8") as f:
            return read_mooncake_jsonl(f, name=name)
    raise TraceError(
        f"unknown trace format of {path}: expected .csv (Azure), .jsonl or .jsonl.gz (Mooncake)"
    )


def _timestamp(text: str) -> float:
    # Python's fromisoformat takes at most 6 fractional digits; Azure writes 7.
    head, dot, frac = text.strip().partition(".")
    return datetime.fromisoformat(head).timestamp() + (float("0." + frac) if dot else 0.0)


def _positive(value: str | int | float, what: str, where: str, *, zero: bool = False) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise TraceError(f"{where}: {what} is not an integer: {value!r}") from None
    if number < (0 if zero else 1):
        raise TraceError(f"{where}: {what} must be {'>= 0' if zero else '>= 1'}, got {number}")
    return number


def read_azure_csv(f: IO[str] | io.StringIO, *, name: str) -> Trace:
    reader = csv.DictReader(f)
    missing = [c for c in AZURE_COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        raise TraceError(f"{name}: missing column(s) {', '.join(missing)} "
                         f"(an Azure trace has {','.join(AZURE_COLUMNS)})")
    requests: list[Request] = []
    start: float | None = None
    last = float("-inf")
    for row in reader:
        where = f"{name} line {reader.line_num}"
        try:
            t = _timestamp(row["TIMESTAMP"])
        except (ValueError, AttributeError):
            raise TraceError(f"{where}: bad TIMESTAMP {row['TIMESTAMP']!r}") from None
        if t < last:
            raise TraceError(f"{where}: timestamps are not sorted ({row['TIMESTAMP']} "
                             "comes after a later one)")
        last = t
        if start is None:
            start = t
        prompt = _positive(row["ContextTokens"], "ContextTokens", where)
        # A generation of 0 tokens still costs a step that produces one (vLLM's minimum).
        output = max(1, _positive(row["GeneratedTokens"], "GeneratedTokens", where, zero=True))
        requests.append(Request(arrival=t - start, prompt_tokens=prompt, output_tokens=output))
    return Trace.of(name, requests)


def read_mooncake_jsonl(f: IO[str], *, name: str) -> Trace:
    requests: list[Request] = []
    start: float | None = None
    last = float("-inf")
    for number, line in enumerate(f, start=1):
        if not line.strip():
            continue
        where = f"{name} line {number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise TraceError(f"{where}: not JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise TraceError(f"{where}: expected a JSON object")
        missing = [k for k in ("timestamp", "input_length", "output_length") if k not in obj]
        if missing:
            raise TraceError(f"{where}: missing field(s) {', '.join(missing)}")
        stamp = obj["timestamp"]
        if not isinstance(stamp, int | float) or isinstance(stamp, bool):
            raise TraceError(f"{where}: timestamp is not a number: {stamp!r}")
        t = float(stamp) / 1000.0
        if t < last:
            raise TraceError(f"{where}: timestamps are not sorted "
                             f"({stamp} comes after a later one)")
        last = t
        if start is None:
            start = t
        hashes = obj.get("hash_ids") or []
        if not isinstance(hashes, list) or not all(
                isinstance(h, int) and not isinstance(h, bool) for h in hashes):
            raise TraceError(f"{where}: hash_ids must be a list of integers")
        requests.append(Request(
            arrival=t - start,
            prompt_tokens=_positive(obj["input_length"], "input_length", where),
            output_tokens=max(1, _positive(obj["output_length"], "output_length", where,
                                           zero=True)),
            prefix=str(hashes[0]) if hashes else "",
            blocks=tuple(hashes),
        ))
    return Trace.of(name, requests, block_tokens=MOONCAKE_BLOCK_TOKENS if any(
        r.blocks for r in requests) else 0)


def write_azure_csv(trace: Trace, f: IO[str]) -> None:
    """Write ``trace`` in Azure's CSV format, times from 2000-01-01 00:00:00 (local time)."""
    base = datetime(2000, 1, 1).timestamp()
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(AZURE_COLUMNS)
    for r in trace.requests:
        stamp = datetime.fromtimestamp(base + r.arrival).isoformat(sep=" ", timespec="microseconds")
        writer.writerow((stamp, r.prompt_tokens, r.output_tokens))
