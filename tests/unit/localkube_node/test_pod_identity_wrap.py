"""How a container's command is wrapped to see its ServiceAccount at Kubernetes' path."""

from __future__ import annotations

from pathlib import Path

import pytest

from localkube.node.identity import PodIdentity

pytestmark = pytest.mark.unit


def test_without_a_service_account_the_command_is_unchanged(tmp_path: Path) -> None:
    assert PodIdentity().wrap(["python", "-c", "pass"], {"PATH": "/usr/bin"}, tmp_path) == [
        "python", "-c", "pass"]


def test_an_unknown_program_is_left_for_the_usual_start_error(tmp_path: Path) -> None:
    identity = PodIdentity(sa_dir=tmp_path)
    assert identity.wrap(["no-such-program-here"], {"PATH": str(tmp_path)}, tmp_path) == [
        "no-such-program-here"]
