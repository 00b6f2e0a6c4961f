"""Traces for the lab: what arrives when, and how long each request is.

A trace SPEC (``--trace``) is one of:

- a bundled trace by name: ``azure-conv`` (Azure LLM inference 2023, conversation,
  1 hour), ``mooncake-conv`` (Mooncake FAST'25 conversation, 1 hour),
  ``validate-5min`` (5 minutes cut from the Azure trace, for ``lab validate``);
- a file path, read by its extension: ``.csv`` (Azure's format), ``.jsonl`` or
  ``.jsonl.gz`` (Mooncake's);
- ``synthetic:KIND?key=value&...`` (see ``lab.traces.synthetic``);
- ``prometheus:URL?model=NAME&start=..&end=..&step=60`` (see ``lab.traces.history``).

``transform`` cuts and stretches a trace (``--start``, ``--duration``,
``--time-scale``, ``--rate-scale``).
"""

from lab.traces.model import Request, Trace, TraceError
from lab.traces.spec import BUNDLED, load, transform

__all__ = ["BUNDLED", "Request", "Trace", "TraceError", "load", "transform"]
