"""The stack of `make up` for end-to-end tests: the same code (brix.local.stack)
and the same `local` overlay, on free ports with its state in a temporary folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from brix.local.stack import Stack, StackConfig
from tests.helpers.procs import REPO, free_port


def _stack(state: Path, *, skip: tuple[str, ...], images: bool = False) -> Iterator[Stack]:
    model = REPO / ".brix" / "models" / "tiny-llama"
    if "tiny-llama" not in skip and not (model / "brix-tiny-model.json").exists():
        pytest.fail(f"the tiny model is missing at {model}: `make test` builds it")
    cfg = StackConfig(root=REPO, state=state, localkube_port=free_port(),
                      prometheus_port=free_port(), gateway_port=free_port(), skip_models=skip,
                      ready_timeout=420.0, images=images, audit=True)
    stack = Stack(cfg)
    try:
        stack.start(say=print)
        stack.wait_ready(say=print)
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def sim_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The local overlay without the real-vLLM model: gateway, operator, scaler, sim-model."""
    yield from _stack(tmp_path_factory.mktemp("brix-sim"), skip=("tiny-llama",))


@pytest.fixture(scope="module")
def full_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole local overlay, tiny-llama on a real vLLM included."""
    yield from _stack(tmp_path_factory.mktemp("brix-full"), skip=())
