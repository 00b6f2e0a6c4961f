"""API keys from settings and from a mounted file that changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.keys import ApiKeys


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def bearer(key: str) -> bytes:
    return f"Bearer {key}".encode()


def test_no_keys_configured_lets_everything_through() -> None:
    keys = ApiKeys()
    assert not keys.enabled
    assert keys.allows(None)


@pytest.mark.parametrize("auth", [None, b"", b"Bearer", b"Bearer ", b"Bearer nope", b"Basic k1",
                                  b"k1", b"Bearer k1x"])
def test_wrong_or_missing_keys_are_refused(auth: bytes | None) -> None:
    assert not ApiKeys(["k1"]).allows(auth)


def test_the_scheme_is_case_insensitive_and_space_tolerant() -> None:
    keys = ApiKeys(["k1"])
    assert keys.allows(b"bearer k1")
    assert keys.allows(b"Bearer  k1 ")


def test_an_empty_keys_file_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# no keys yet\n\n")
    keys = ApiKeys(path=str(path))
    assert keys.enabled
    assert not keys.allows(bearer("anything"))


def test_a_missing_keys_file_is_an_error_at_start(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ApiKeys(path=str(tmp_path / "absent"))


def test_a_rotated_file_is_read_again_after_the_check_interval(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("old\n")
    clock = Clock()
    keys = ApiKeys(["fixed"], str(path), check_every=2.0, clock=clock)
    assert keys.allows(bearer("old"))
    # Rotated as a Secret volume does it: a new file swapped in.
    new = tmp_path / "keys.new"
    new.write_text("new\n")
    os.replace(new, path)
    clock.now = 1.0
    assert keys.allows(bearer("old"))  # not checked again yet
    clock.now = 2.5
    assert keys.allows(bearer("new"))
    assert not keys.allows(bearer("old"))
    assert keys.allows(bearer("fixed"))  # the keys from settings stay
    # A file that disappears keeps the keys read last.
    path.unlink()
    clock.now = 5.0
    assert keys.allows(bearer("new"))
