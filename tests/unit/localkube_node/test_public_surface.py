"""localkube.node's public surface: what localkube's __main__ and other tools use."""

from __future__ import annotations

import dataclasses
import inspect
import sys
from pathlib import Path

import localkube.node as node


def test_all_is_sorted_and_resolves() -> None:
    assert node.__all__ == sorted(node.__all__)
    for name in node.__all__:
        assert getattr(node, name) is not None


def test_node_config_is_frozen_keyword_only_with_the_venv_python_by_default() -> None:
    config = node.NodeConfig(api_url="http://127.0.0.1:6443", kubeconfig=Path("/k"),
                             state_dir=Path("/s"))
    assert config.python == sys.executable
    assert dataclasses.fields(config)[0].kw_only
    try:
        config.api_url = "x"  # type: ignore[misc]
    except dataclasses.FrozenInstanceError:
        pass
    else:
        raise AssertionError("NodeConfig must be frozen")


def test_run_node_takes_a_config_and_a_stop_event() -> None:
    params = inspect.signature(node.run_node).parameters
    assert list(params) == ["config", "stop"]
    assert inspect.iscoroutinefunction(node.run_node)


def test_log_path_is_the_one_the_api_server_reads() -> None:
    assert node.log_path(Path("/s"), "ns", "pod", "c") == Path("/s/logs/ns/pod/c.log")
