"""The sim's flags and BRIX_* variables, and the values it refuses."""

from __future__ import annotations

import pytest

from brix.config import load_settings
from inference.sim import main
from inference.sim.app import SimEngine
from inference.sim.settings import SimSettings


def _load(argv: list[str], env: dict[str, str] | None = None) -> SimSettings:
    return load_settings(SimSettings, argv, prog="sim", environ=env or {})


def test_the_served_name_defaults_to_the_model_then_sim_model() -> None:
    assert _load([]).name == "sim-model"
    assert _load(["--model", "/m/llama"]).name == "/m/llama"
    assert _load(["--model", "/m/llama", "--served-model-name", "llama"]).name == "llama"


def test_timing_flags_and_their_environment_variables() -> None:
    s = _load(["--decode-ms-per-token", "2.5"], {
        "BRIX_MAX_NUM_SEQS": "3", "BRIX_KV_CACHE_TOKENS": "9000",
        "BRIX_PREFILL_TOKENS_PER_S": "100", "BRIX_DECODE_MS_PER_TOKEN": "9",
    })
    assert (s.max_num_seqs, s.kv_cache_tokens, s.prefill_tokens_per_s, s.decode_ms_per_token) \
        == (3, 9000, 100.0, 2.5)


def test_prefix_caching_is_on_by_default_with_vllms_block_size_and_can_be_turned_off() -> None:
    default = _load([])
    assert (default.enable_prefix_caching, default.block_size) == (True, 16)
    off = _load(["--no-enable-prefix-caching", "--block-size", "32"])
    assert (off.enable_prefix_caching, off.block_size) == (False, 32)
    assert not _load([], {"BRIX_ENABLE_PREFIX_CACHING": "false"}).enable_prefix_caching
    # Without prefix caching KV is counted in tokens: no whole blocks to fit.
    assert _load(["--no-enable-prefix-caching", "--kv-cache-tokens", "4100",
                  "--max-model-len", "4097"]).kv_cache_tokens == 4100


def test_chunked_prefill_is_on_by_default_with_vllms_token_budget() -> None:
    default = _load([])
    assert default.enable_chunked_prefill
    assert default.max_num_batched_tokens is None
    assert default.batched_tokens == 2048  # vLLM's OpenAI server on the CPU
    assert _load(["--max-num-seqs", "4096", "--max-model-len", "8192",
                  "--kv-cache-tokens", "65536"]).batched_tokens == 4096
    assert _load(["--max-num-batched-tokens", "512"]).batched_tokens == 512
    assert _load([], {"BRIX_MAX_NUM_BATCHED_TOKENS": "300"}).batched_tokens == 300
    # Without chunked prefill the default budget holds the longest prompt, as vLLM's.
    whole = _load(["--no-enable-chunked-prefill", "--max-model-len", "8192",
                   "--kv-cache-tokens", "65536"])
    assert (whole.enable_chunked_prefill, whole.batched_tokens) == (False, 8192)


def test_the_engine_schedules_with_the_settings_budget() -> None:
    engine = SimEngine(_load(["--max-num-batched-tokens", "1024"]))
    assert engine.scheduler.max_num_batched_tokens == 1024
    assert engine.scheduler.enable_chunked_prefill
    capped = SimEngine(_load(["--long-prefill-token-threshold", "512"]))
    assert capped.scheduler.long_prefill_token_threshold == 512
    engine = SimEngine(_load(["--no-enable-chunked-prefill"]))
    assert engine.scheduler.max_num_batched_tokens == 4096
    assert not engine.scheduler.enable_chunked_prefill


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-num-batched-tokens", "100"],
         "--max-num-batched-tokens (100) must be at least --max-num-seqs (256)"),
        (["--no-enable-chunked-prefill", "--max-num-batched-tokens", "2048"],
         "--max-num-batched-tokens (2048) must be at least --max-model-len (4096) without "
         "chunked prefill"),
        (["--max-num-batched-tokens", "lots"], "expected an integer"),
        (["--long-prefill-token-threshold", "-1"],
         "--long-prefill-token-threshold must not be negative, got -1"),
        (["--no-enable-chunked-prefill", "--long-prefill-token-threshold", "512"],
         "--long-prefill-token-threshold needs chunked prefill"),
        (["--max-num-seqs", "0"], "--max-num-seqs must be positive"),
        (["--prefill-tokens-per-s", "-1"], "--prefill-tokens-per-s must be positive"),
        (["--decode-ms-per-token", "-1"], "must not be negative"),
        (["--kv-cache-tokens", "100", "--max-model-len", "200"], "must hold one sequence"),
        (["--min-output-tokens", "9", "--max-output-tokens", "3"], "at least --min-output"),
        (["--port", "70000"], "--port must be 0..65535"),
        (["--max-num-seqs", "many"], "expected an integer"),
        (["--enable-lora"], "unrecognized arguments: --enable-lora"),
        (["--block-size", "0"], "--block-size must be positive"),
        (["--kv-cache-tokens", "4100", "--max-model-len", "4097"],
         "holds 256 blocks of --block-size 16; one sequence of --max-model-len (4097) tokens "
         "needs 257"),
    ],
)
def test_bad_flags_exit_2_with_one_clear_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
