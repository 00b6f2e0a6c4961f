"""Choosing the container of pods/log, and tailLines."""

from __future__ import annotations

from typing import Any

import pytest

from localkube.api.errors import ApiError
from localkube.api.podlogs import pick_container, tail


def pod(*names: str, default: str | None = None, init: tuple[str, ...] = ()) -> dict[str, Any]:
    annotations = {"kubectl.kubernetes.io/default-container": default} if default else {}
    return {"metadata": {"name": "p", "annotations": annotations},
            "spec": {"containers": [{"name": n} for n in names],
                     "initContainers": [{"name": n} for n in init]}}


def test_the_only_container_is_the_default() -> None:
    assert pick_container(pod("engine"), None) == "engine"


def test_the_annotated_default_container() -> None:
    assert pick_container(pod("engine", "sidecar", default="sidecar"), None) == "sidecar"


def test_several_containers_need_a_choice() -> None:
    with pytest.raises(ApiError, match=r"choose one of: \[engine sidecar setup\]"):
        pick_container(pod("engine", "sidecar", init=("setup",)), None)


def test_init_containers_can_be_asked_for_and_unknown_ones_cannot() -> None:
    assert pick_container(pod("engine", init=("setup",)), "setup") == "setup"
    with pytest.raises(ApiError, match="container nope is not valid for pod p"):
        pick_container(pod("engine"), "nope")


@pytest.mark.parametrize(("lines", "expected"), [
    (None, b"a\nb\nc\n"), ("2", b"b\nc\n"), ("0", b""), ("10", b"a\nb\nc\n"), ("x", b"a\nb\nc\n"),
])
def test_tail_lines(lines: str | None, expected: bytes) -> None:
    assert tail(b"a\nb\nc\n", lines) == expected
