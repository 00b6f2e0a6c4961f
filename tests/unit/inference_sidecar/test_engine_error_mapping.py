"""How engine failures become API errors (inference.sidecar.adapters.engine_api_error)."""

from __future__ import annotations

import pytest

from inference.sidecar.adapters import engine_api_error
from inference.sidecar.engine_client import EngineError, EngineRejected, EngineUnavailable


@pytest.mark.parametrize(("exc", "status", "code"), [
    (EngineRejected(400, "The lora adapter 'x' has already been loaded."), 400,
     "engine_rejected"),
    (EngineRejected(404, "Loading lora x failed: No adapter found for /a"), 400,
     "engine_rejected"),
    (EngineRejected(404, "Not Found"), 502, "engine_without_lora"),
    (EngineRejected(405, "Method Not Allowed"), 502, "engine_without_lora"),
    (EngineRejected(500, "LoRA rank 4096 is greater than max_lora_rank 64."), 502,
     "engine_error"),
    (EngineUnavailable("refused"), 503, "engine_unavailable"),
    (EngineUnavailable("slow", timed_out=True), 504, "engine_timeout"),
])
def test_engine_failures_map_to_clear_errors(exc: EngineError, status: int, code: str) -> None:
    err = engine_api_error(exc, doing="loading adapter 'x'")
    assert (err.status, err.code) == (status, code)
    assert err.message.startswith("loading adapter 'x': ")
    if isinstance(exc, EngineRejected) and code != "engine_without_lora":
        assert exc.message in err.message  # the engine's own words reach the caller
