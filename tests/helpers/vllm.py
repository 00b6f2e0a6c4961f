"""A real vLLM engine for tests, started through brix's own entrypoint.

``start_vllm(procs)`` runs ``python -m inference.engine --backend vllm`` for
the tiny model (``tiny_model_dir()``) on a free loopback port and returns once
the entrypoint printed its ready line, which it does only after a real
completion answered (see ``inference.engine``). A server takes about 30-50 s
to start and holds about 3 GB, so share one per test module::

    @pytest.fixture(scope="module")
    def vllm(tmp_path_factory):
        with vllm_server(tmp_path_factory.mktemp("vllm")) as engine:
            yield engine

The tiny model is found through ``$BRIX_TINY_MODEL`` (``make test`` sets it);
without it, it is built once (cached) under ``.brix/models/tiny-llama``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.helpers.procs import REPO, Proc, ProcessGroup

TINY_MODEL_ENV = "BRIX_TINY_MODEL"
DEFAULT_TINY_MODEL = REPO / ".brix" / "models" / "tiny-llama"
TINY_ADAPTERS = ("tiny-lora-1", "tiny-lora-2")
SERVED_NAME = "tiny-llama"
START_TIMEOUT_S = 420.0  # ~50 s alone; much more on 2 busy cores


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def tiny_model_dir() -> Path:
    """The tiny model with its adapters: ``$BRIX_TINY_MODEL``, else built (cached) in .brix/."""
    given = os.environ.get(TINY_MODEL_ENV)
    path = Path(given) if given else DEFAULT_TINY_MODEL
    result = subprocess.run(
        [sys.executable, "-m", "inference.tiny_model", str(path), "--adapters",
         str(len(TINY_ADAPTERS))],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"building the tiny model failed:\n{result.stdout}{result.stderr}")
    return path


@dataclass
class VllmEngine:
    """A running vLLM: its process, base URL, served name and the adapters on disk."""

    proc: Proc
    url: str
    model_dir: Path
    served_name: str
    adapters: dict[str, Path] = field(default_factory=dict)

    def load_adapter(self, name: str, path: Path | None = None) -> httpx.Response:
        """vLLM's own runtime-LoRA route (the sidecar calls the same one)."""
        return httpx.post(
            f"{self.url}/v1/load_lora_adapter",
            json={"lora_name": name, "lora_path": str(path or self.adapters[name])},
            timeout=120.0,
        )

    def unload_adapter(self, name: str) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/unload_lora_adapter", json={"lora_name": name},
                          timeout=60.0)


def start_vllm(
    procs: ProcessGroup,
    *,
    model_dir: Path | None = None,
    served_name: str = SERVED_NAME,
    port: int = 0,
    engine_args: Sequence[str] = (),
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = START_TIMEOUT_S,
) -> VllmEngine:
    """Start a real vLLM through ``inference.engine`` and wait until it answers completions.

    ``port`` 0 picks a free one (a restarted engine is given its old one back);
    ``engine_args`` are brix's engine flags (``--max-loras 2``); ``extra_args``
    go to vLLM after ``--`` (``--max-num-seqs 16``).
    """
    model_dir = model_dir or tiny_model_dir()
    args = [
        "-m", "inference.engine", "--backend", "vllm",
        "--model", str(model_dir), "--served-model-name", served_name,
        "--host", "127.0.0.1", "--port", str(port), "--max-lora-rank", "8",
        *engine_args,
    ]
    if extra_args:
        args += ["--", *extra_args]
    proc = procs.start(args, name="vllm", env=env, timeout=timeout)
    assert proc.url is not None
    adapters = {
        p.name: p for p in sorted((model_dir / "adapters").iterdir()) if p.is_dir()
    } if (model_dir / "adapters").is_dir() else {}
    return VllmEngine(proc=proc, url=proc.url, model_dir=model_dir, served_name=served_name,
                      adapters=adapters)


@contextmanager
def vllm_server(log_dir: Path, **kwargs: object) -> Iterator[VllmEngine]:
    """One vLLM for a wider scope (a module or session fixture); stopped on exit."""
    group = ProcessGroup(log_dir=log_dir)
    try:
        yield start_vllm(group, **kwargs)  # type: ignore[arg-type]
    finally:
        group.stop_all()
