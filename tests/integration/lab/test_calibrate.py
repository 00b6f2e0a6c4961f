"""``lab calibrate`` against a live sim engine recovers the timing the sim was started with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.cli import main
from lab.profiles import load_profile
from tests.helpers.procs import ProcessGroup
from tests.helpers.sim import FAST, sim_value, start_sim

pytestmark = pytest.mark.integration

# Slow enough that HTTP and a busy machine are small beside each step.
SIM_TIMING = {"prefill_tokens_per_s": 4000.0, "decode_ms_per_token": 25.0,
              "decode_ms_per_token_per_seq": 3.0}


def test_calibrate_fits_the_sims_timing_model(procs: ProcessGroup, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    engine = start_sim(procs, name="calib", extra_args=(
        "--prefill-tokens-per-s", "4000", "--decode-ms-per-token", "25",
        "--decode-ms-per-token-per-seq", "3", "--max-model-len", "2048",
        "--kv-cache-tokens", "32768", "--max-num-seqs", "16",
        "--max-num-batched-tokens", "4096"))
    assert engine.url is not None
    out = tmp_path / "fitted.json"
    code = main(["calibrate", "--engine-url", engine.url, "--out", str(out), "--quiet",
                 "--max-num-seqs", "16", "--kv-cache-tokens", "32768", "--batch", "6",
                 "--max-num-batched-tokens", "4096"])
    assert code == 0, capsys.readouterr().err
    profile = load_profile(str(out))
    assert profile.name == "fitted"
    assert profile.max_model_len == 2048
    assert profile.max_num_seqs == 16
    # The step budget is recorded as given (engines do not report it); the rest, defaults.
    assert (profile.max_num_batched_tokens, profile.enable_chunked_prefill,
            profile.long_prefill_token_threshold) == (4096, True, 0)
    # The fit is a measurement: loose bounds, since the machine is shared.
    assert profile.prefill_tokens_per_s == pytest.approx(SIM_TIMING["prefill_tokens_per_s"],
                                                         rel=0.3)
    assert profile.decode_ms_per_token == pytest.approx(SIM_TIMING["decode_ms_per_token"],
                                                        rel=0.3)
    assert profile.decode_ms_per_token_per_seq == pytest.approx(
        SIM_TIMING["decode_ms_per_token_per_seq"], rel=0.5)
    assert "lab calibrate against" in json.loads(out.read_text())["source"]


def test_settings_vllm_would_refuse_are_refused_before_measuring(
        procs: ProcessGroup, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = start_sim(procs, name="calib", extra_args=FAST)
    assert engine.url is not None
    out = tmp_path / "x.json"
    code = main(["calibrate", "--engine-url", engine.url, "--out", str(out), "--quiet",
                 "--no-enable-chunked-prefill", "--long-prefill-token-threshold", "64"])
    assert code == 2
    err = capsys.readouterr().err
    assert "long_prefill_token_threshold" in err
    assert err.count("\n") == 1
    assert not out.exists()
    # Nothing was measured: the engine has answered no completion.
    assert sim_value(engine.url, "vllm:e2e_request_latency_seconds_count") == 0


def test_calibrate_says_when_there_is_no_engine(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["calibrate", "--engine-url", "http://127.0.0.1:9", "--out",
                 str(tmp_path / "x.json"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot list models" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "x.json").exists()
