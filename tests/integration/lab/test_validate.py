"""``lab validate`` against a live sim engine started with the profile's timing: the lab's
prediction and the measured latencies agree within the tolerances stated below."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.cli import main
from tests.helpers.procs import ProcessGroup
from tests.helpers.sim import start_sim

pytestmark = pytest.mark.integration

PROFILE = {"name": "sim-validate", "prefill_tokens_per_s": 20000.0, "decode_ms_per_token": 15.0,
           "decode_ms_per_token_per_seq": 0.5, "max_num_seqs": 64, "kv_cache_tokens": 200000,
           "max_model_len": 16384}


def test_validate_a_short_trace_against_a_live_sim(procs: ProcessGroup, tmp_path: Path) -> None:
    engine = start_sim(procs, name="validate", extra_args=(
        "--prefill-tokens-per-s", "20000", "--decode-ms-per-token", "15",
        "--decode-ms-per-token-per-seq", "0.5", "--max-num-seqs", "64",
        "--kv-cache-tokens", "200000", "--max-model-len", "16384"))
    assert engine.url is not None
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps(PROFILE))
    out = tmp_path / "validate.json"
    code = main(["validate", "--engine-url", engine.url, "--profile", str(profile),
                 "--trace", "validate-5min", "--duration", "30", "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["trace"]["requests"] >= 20
    real, sim, ratio = report["real"], report["sim"], report["sim_over_real"]
    # Measured on 2 shared cores (bench/lab/RESULTS.md): e2e within about 15 %, TTFT p50
    # lower in the lab by the HTTP and event-loop overhead it leaves out. The bounds here
    # are wider, for a busy CI machine, but catch a model that is off by a factor.
    assert 0.6 <= ratio["e2e_p50_s"] <= 1.4
    assert 0.6 <= ratio["e2e_p99_s"] <= 1.4
    assert sim["ttft_p50_s"] <= real["ttft_p50_s"] + 0.05
    assert real["ttft_p50_s"] <= 4 * sim["ttft_p50_s"] + 0.2
    assert real["slo_attainment"] >= 0.9
    assert sim["slo_attainment"] >= 0.9
