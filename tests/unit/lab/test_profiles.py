"""Timing profiles: the bundled ones load and say where their numbers come from; bad ones
are refused with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.pods import parse_cold_start
from lab.profiles import BUNDLED, ProfileError, load_profile

pytestmark = pytest.mark.unit


def test_bundled_profiles_load_with_a_source() -> None:
    assert {"gpu-8b", "vllm-cpu-tiny"} <= set(BUNDLED)
    for name in BUNDLED:
        profile = load_profile(name)
        assert profile.name == name
        assert len(profile.source) > 40
        assert profile.kv_cache_tokens >= profile.max_model_len
    assert load_profile("gpu-8b").max_model_len >= 128 * 1024


BASE = {"name": "x", "prefill_tokens_per_s": 1, "decode_ms_per_token": 1,
        "decode_ms_per_token_per_seq": 0, "max_num_seqs": 4, "kv_cache_tokens": 5000,
        "max_model_len": 4096}


def test_the_step_budget_and_chunked_prefill_default_as_vllms(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(BASE))
    plain = load_profile(str(path))
    assert (plain.enable_chunked_prefill, plain.batched_tokens) == (True, 2048)
    path.write_text(json.dumps({**BASE, "enable_chunked_prefill": False}))
    assert load_profile(str(path)).batched_tokens == 4096  # the longest prompt, whole
    path.write_text(json.dumps({**BASE, "max_num_batched_tokens": 512}))
    assert load_profile(str(path)).batched_tokens == 512
    # The H100 profile has vLLM's budget for that GPU, the CPU one the CPU's.
    assert load_profile("gpu-8b").batched_tokens == 8192
    assert load_profile("vllm-cpu-tiny").batched_tokens == 2048


@pytest.mark.parametrize(("data", "message"), [
    ({**BASE, "max_num_batched_tokens": 2},
     "max_num_batched_tokens (2) must be at least max_num_seqs (4)"),
    ({**BASE, "enable_chunked_prefill": False, "max_num_batched_tokens": 2048},
     "max_num_batched_tokens (2048) must be at least max_model_len (4096) without chunked "
     "prefill"),
    ({**BASE, "enable_chunked_prefill": "no"}, "enable_chunked_prefill: expected true or false"),
    ({**BASE, "enable_chunked_prefill": False, "long_prefill_token_threshold": 512},
     "long_prefill_token_threshold must be >= 0, and needs chunked prefill when > 0"),
    ({"name": "x"}, "missing decode_ms_per_token"),
    ({"name": "x", "prefill_tokens_per_s": 1, "decode_ms_per_token": 1,
      "decode_ms_per_token_per_seq": 0, "max_num_seqs": 1, "kv_cache_tokens": 10,
      "max_model_len": 10, "colour": "red"}, "unknown key(s) colour"),
    ({"name": "x", "prefill_tokens_per_s": 0, "decode_ms_per_token": 1,
      "decode_ms_per_token_per_seq": 0, "max_num_seqs": 1, "kv_cache_tokens": 10,
      "max_model_len": 10}, "prefill_tokens_per_s must be > 0"),
    ({"name": "x", "prefill_tokens_per_s": 1, "decode_ms_per_token": 1,
      "decode_ms_per_token_per_seq": 0, "max_num_seqs": 1.5, "kv_cache_tokens": 10,
      "max_model_len": 10}, "expected an integer"),
    ([1, 2], "a profile is a JSON object"),
])
def test_bad_profiles_are_refused(tmp_path: Path, data: object, message: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError) as info:
        load_profile(str(path))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_cold_start_forms() -> None:
    import random
    rng = random.Random(1)
    assert parse_cold_start("60")(rng) == 60.0
    draws = [parse_cold_start("uniform:40:90")(rng) for _ in range(200)]
    assert min(draws) >= 40
    assert max(draws) <= 90
    assert all(parse_cold_start("normal:60:100")(rng) >= 0 for _ in range(100))
    mean = sum(parse_cold_start("lognormal:60:0.3")(rng) for _ in range(4000)) / 4000
    assert mean == pytest.approx(60, rel=0.05)
    for bad in ("soon", "-5", "uniform:9:1", "gamma:1:2", "normal:1"):
        with pytest.raises(ValueError, match="--cold-start"):
            parse_cold_start(bad)
