"""$(VAR) expansion, with the cases of Kubernetes' own expansion tests."""

from __future__ import annotations

import pytest

from localkube.node.expansion import expand

ENV = {"VAR_A": "A", "VAR_B": "B", "VAR_C": "C", "VAR_REF": "$(VAR_A)", "VAR_EMPTY": ""}


@pytest.mark.parametrize(("text", "expected"), [
    ("$(VAR_A)", "A"),
    ("___$(VAR_B)___", "___B___"),
    ("$(VAR_A)-$(VAR_B)-$(VAR_C)", "A-B-C"),
    ("$(VAR_A)$(VAR_B)", "AB"),
    ("$(VAR_DOES_NOT_EXIST)", "$(VAR_DOES_NOT_EXIST)"),
    ("$(VAR_EMPTY)", ""),
    ("$$(VAR_B)", "$(VAR_B)"),          # escaped reference
    ("$$$(VAR_A)", "$A"),                # escaped $ then a reference
    ("$$$$(VAR_A)", "$$(VAR_A)"),
    ("$(VAR_REF)", "$(VAR_A)"),          # no recursion
    ("f000-$$VAR_A", "f000-$VAR_A"),
    ("$VAR_A", "$VAR_A"),                # bare $ is kept
    ("$(VAR_A", "$(VAR_A"),              # unclosed reference is kept
    ("$()", "$()"),                      # the empty name is not defined, so it stays
    ("trailing $", "trailing $"),
    ("$", "$"),
    ("$$", "$"),
    ("", ""),
    ("http://$(VAR_A):8000", "http://A:8000"),
])
def test_expansion_follows_the_kubelet(text: str, expected: str) -> None:
    assert expand(text, ENV) == expected


def test_a_reference_to_a_later_value_is_not_expanded_twice() -> None:
    assert expand("$(X)", {"X": "$(Y)", "Y": "y"}) == "$(Y)"
