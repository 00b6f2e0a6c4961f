"""``python -m inference.tiny_model OUT_DIR --adapters N``: complete, deterministic, cached."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.procs import REPO

MARKER = "brix-tiny-model.json"


def run(out: Path, *args: str, hash_seed: int = 1) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inference.tiny_model", str(out), *args],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "PYTHONHASHSEED": str(hash_seed)},
    )


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    result = run(out, "--adapters", "2")
    assert result.returncode == 0, result.stderr
    assert "written" in result.stdout
    return out


def test_layout_vllm_cpu_can_load(built: Path) -> None:
    config = json.loads((built / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["hidden_size"] // config["num_attention_heads"] >= 32  # vLLM CPU attention
    assert config["head_dim"] >= 32
    assert (built / "model.safetensors").stat().st_size > 0
    assert (built / "tokenizer.json").is_file()
    for name in ("tiny-lora-1", "tiny-lora-2"):
        adapter = json.loads((built / "adapters" / name / "adapter_config.json").read_text())
        assert sorted(adapter["target_modules"]) == ["q_proj", "v_proj"]
        assert adapter["r"] == 8
        assert (built / "adapters" / name / "adapter_model.safetensors").is_file()
    assert sorted(p.name for p in (built / "adapters").iterdir()) == ["tiny-lora-1",
                                                                      "tiny-lora-2"]


def test_every_file_is_readable_by_other_users(built: Path) -> None:
    """An engine container runs as its own non-root user and reads the model mounted from
    the host: nothing in the model may be readable by its owner alone."""
    for path in [built, *built.rglob("*")]:
        wanted = 0o005 if path.is_dir() else 0o004
        assert path.stat().st_mode & wanted == wanted, f"{path}: {oct(path.stat().st_mode)}"
    (built / "model.safetensors").chmod(0o600)  # as a model made by an earlier build
    assert run(built, "--adapters", "2").returncode == 0
    assert (built / "model.safetensors").stat().st_mode & 0o004


def test_tokenizer_round_trips_and_has_a_chat_template(built: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(built))
    text = "Hello brix: the gateway routes 42 requests!"
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                     add_generation_prompt=True)
    assert "<|user|>" in prompt
    assert prompt.endswith("<|assistant|>\n")


def test_two_builds_are_identical(built: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    # Another hash seed: set and dict orders must not leak into the files.
    assert run(again, "--adapters", "2", hash_seed=2).returncode == 0
    assert digests(again) == digests(built)


def test_a_complete_model_is_not_rebuilt(built: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in built.rglob("*")}
    result = run(built, "--adapters", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines() == [
        f"tiny model already at {built.resolve()} with the same parameters: nothing to do"
    ]
    assert {p: p.stat().st_mtime_ns for p in built.rglob("*")} == before


def test_a_readable_model_is_not_chmodded_again(built: Path) -> None:
    # Its files may be another user's (a shared cache): only they may chmod them.
    (built / "model.safetensors").chmod(0o644)
    before = {p: p.stat().st_ctime_ns for p in [built, *built.rglob("*")]}
    assert run(built, "--adapters", "2").returncode == 0
    assert {p: p.stat().st_ctime_ns for p in [built, *built.rglob("*")]} == before


def test_an_incomplete_model_and_leftovers_are_redone(built: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    shutil.copytree(built, out)
    (out / "model.safetensors").unlink()  # as if the disk filled up, say
    leftover = tmp_path / "model.partial-999999999"  # an interrupted build (no such pid)
    (leftover / "adapters").mkdir(parents=True)
    result = run(out, "--adapters", "2")
    assert result.returncode == 0, result.stderr
    assert "written" in result.stdout
    assert digests(out) == digests(built)
    assert not leftover.exists()


def test_other_parameters_rebuild(built: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    shutil.copytree(built, out)
    result = run(out, "--adapters", "1")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (out / "adapters").iterdir()) == ["tiny-lora-1"]
    assert json.loads((out / MARKER).read_text())["adapters"] == 1


def test_a_directory_that_is_not_a_tiny_model_is_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = run(out, "--adapters", "2")
    assert result.returncode == 1
    assert "not a tiny model" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_a_negative_adapter_count_is_refused(tmp_path: Path) -> None:
    result = run(tmp_path / "m", "--adapters", "-1")
    assert result.returncode == 2
    assert "--adapters" in result.stderr
    assert not (tmp_path / "m").exists()
