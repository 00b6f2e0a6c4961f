"""Policy specs as ``--policies`` takes them: names, sweeps, settings, and bad input."""

from __future__ import annotations

import pytest

from lab.policies.base import Autoscaler
from lab.policies.registry import describe, names, parse

pytestmark = pytest.mark.unit


class _NoMetrics:
    """A Prometheus with no series at all (every query empty)."""

    now = 0.0

    def sum(self, metric: str) -> float | None:
        return None

    def avg(self, metric: str) -> float | None:
        return None

    def count(self, metric: str) -> int:
        return 0

    def sum_rate(self, metric: str, window: float) -> float | None:
        return None

    def avg_over_time(self, metric: str, window: float) -> float | None:
        return None

    def histogram_quantile(self, q: float, metric: str, window: float) -> float | None:
        return None


def test_fixed_holds_its_count_whatever_the_deployment_has() -> None:
    (spec,) = parse("fixed:replicas=3")
    assert spec.name == "fixed:replicas=3"
    policy = spec.make()
    assert isinstance(policy, Autoscaler)
    answers = {policy.decide(now=t, metrics=_NoMetrics(), replicas=r, ready=r)
               for t, r in [(15.0, 0), (30.0, 1), (45.0, 7)]}
    assert answers == {3}


def test_bare_name_takes_defaults_and_keeps_its_name() -> None:
    (spec,) = parse("fixed")
    assert spec.name == "fixed"
    assert spec.make().decide(now=15.0, metrics=_NoMetrics(), replicas=0, ready=0) == 1


def test_sweep_gives_one_spec_per_value_named_as_if_alone() -> None:
    specs = parse("fixed:replicas=1,2,5,10")
    assert [s.name for s in specs] == [f"fixed:replicas={n}" for n in (1, 2, 5, 10)]
    got = [s.make().decide(now=15.0, metrics=_NoMetrics(), replicas=1, ready=1) for s in specs]
    assert got == [1, 2, 5, 10]


def test_sweep_over_two_keys_is_their_product_and_keeps_the_other_settings() -> None:
    specs = parse("fixed:replicas=1,2;interval=5,30")
    assert [s.name for s in specs] == [
        "fixed:replicas=1;interval=5", "fixed:replicas=1;interval=30",
        "fixed:replicas=2;interval=5", "fixed:replicas=2;interval=30",
    ]
    assert [s.make().interval for s in specs] == [5.0, 30.0, 5.0, 30.0]


def test_each_make_is_a_fresh_instance() -> None:
    (spec,) = parse("fixed:replicas=2")
    assert spec.make() is not spec.make()


@pytest.mark.parametrize(("spec", "words"), [
    ("nope", ["unknown policy", "'nope'", "fixed"]),
    ("fixed:colour=red", ["fixed", "unknown setting", "'colour'", "replicas"]),
    ("fixed:replicas=two", ["fixed", "replicas='two'", "integer"]),
    ("fixed:replicas=1.5", ["fixed", "replicas='1.5'", "integer"]),
    ("fixed:replicas=-1", ["fixed", "replicas='-1'", ">= 0"]),
    ("fixed:interval=0", ["fixed", "interval='0'", "> 0"]),
    ("fixed:interval=nan", ["fixed", "interval='nan'", "finite"]),
    ("fixed:interval=inf", ["fixed", "interval='inf'", "finite"]),
    ("fixed:replicas", ["fixed", "'replicas'", "key=value"]),
    ("fixed:replicas=1,,2", ["fixed", "empty value"]),
    ("fixed:replicas=1;replicas=2", ["fixed", "'replicas'", "twice"]),
    ("fixed:", ["no settings"]),
    (":replicas=1", ["no policy name"]),
])
def test_bad_specs_raise_one_line_naming_the_culprit(spec: str, words: list[str]) -> None:
    with pytest.raises(ValueError, match=r"\S") as info:
        parse(spec)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_describe_lists_every_policy_and_setting() -> None:
    text = describe()
    for name in names():
        assert f"  {name}:" in text
    assert "replicas (int, default 1)" in text


@pytest.mark.parametrize("name", names())
def test_every_policy_builds_with_its_defaults_and_answers_a_count(name: str) -> None:
    (spec,) = parse(name)
    policy = spec.make()
    assert isinstance(policy, Autoscaler)
    assert policy.interval > 0
    answer = policy.decide(now=policy.interval, metrics=_NoMetrics(), replicas=2, ready=2)
    assert isinstance(answer, int)
    assert answer >= 0


def test_the_name_of_a_spec_without_a_sweep_is_kept_as_given() -> None:
    (spec,) = parse("kpa:target=4;panic=2")
    assert spec.name == "kpa:target=4;panic=2"
