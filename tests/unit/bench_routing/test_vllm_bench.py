"""The real-vLLM routing benchmark's settings: what each replica is started with."""

from __future__ import annotations

import pytest

from bench.routing.vllm import MIN_KV_BLOCKS, Shape, main, vllm_args

pytestmark = pytest.mark.unit


def test_a_kv_cache_size_reaches_vllm_as_its_block_override_and_none_leaves_vllms_own() -> None:
    assert vllm_args(Shape(kv_blocks=64)) == ["--num-gpu-blocks-override", "64"]
    assert vllm_args(Shape()) == []


def test_a_cache_smaller_than_one_whole_sequence_is_refused_before_anything_starts(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--kv-blocks", str(MIN_KV_BLOCKS - 1), "--ceiling-only"])
    assert e.value.code == 2
    assert f"need --kv-blocks >= {MIN_KV_BLOCKS}" in capsys.readouterr().err
