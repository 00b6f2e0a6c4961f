"""Label and field selectors, as Kubernetes parses and matches them."""

from __future__ import annotations

import pytest

from localkube.api.selectors import FieldSelector, LabelSelector, SelectorError

LABELS = {"app": "web", "tier": "front", "env": "prod"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("app=web", True),
        ("app==web", True),
        ("app=db", False),
        ("app!=db", True),
        ("app!=web", False),
        ("missing!=x", True),
        ("app in (web, db)", True),
        ("app in (db,cache)", False),
        ("app notin (db,cache)", True),
        ("missing notin (db)", True),
        ("app notin (web)", False),
        ("tier", True),
        ("missing", False),
        ("!missing", True),
        ("!tier", False),
        ("app=web,tier=front", True),
        ("app=web, tier=back", False),
        ("app in (web),env,!canary", True),
        ("", True),
    ],
)
def test_label_selector_matches_as_kubernetes_does(text: str, expected: bool) -> None:
    assert LabelSelector.parse(text).matches(LABELS) is expected


@pytest.mark.parametrize("text", ["app=web,,", "app in web", "=web", "app=(x"])
def test_a_broken_label_selector_is_an_error_naming_it(text: str) -> None:
    with pytest.raises(SelectorError, match=r"label selector|unable to parse"):
        LabelSelector.parse(text)


def test_selector_objects_with_match_expressions() -> None:
    sel = LabelSelector.from_object({
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "qa"]},
                             {"key": "canary", "operator": "DoesNotExist"}],
    })
    assert sel.matches(LABELS)
    assert not sel.matches({**LABELS, "canary": "1"})
    assert str(sel) == "app=web,env in (prod,qa),!canary"


def test_unknown_match_expression_operator_is_refused() -> None:
    with pytest.raises(SelectorError, match="Near"):
        LabelSelector.from_object({"matchExpressions": [{"key": "a", "operator": "Near"}]})


POD = {"metadata": {"name": "p1", "namespace": "ns"}, "spec": {"nodeName": "localkube"},
       "status": {"phase": "Running"}}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metadata.name=p1", True),
        ("metadata.name==p1", True),
        ("metadata.name=p2", False),
        ("metadata.namespace=ns,status.phase=Running", True),
        ("status.phase!=Running", False),
        ("status.phase!=Pending", True),
        ("spec.nodeName=localkube", True),
        ("spec.nodeName=", False),
        ("spec.missing=", True),
    ],
)
def test_field_selector_matches_fields(text: str, expected: bool) -> None:
    assert FieldSelector.parse(text).matches(POD) is expected


def test_a_broken_field_selector_is_an_error() -> None:
    with pytest.raises(SelectorError, match="field selector"):
        FieldSelector.parse("metadata.name")
