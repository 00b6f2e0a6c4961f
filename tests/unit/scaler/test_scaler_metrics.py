"""The scaler's /metrics families are exactly the contract's brix_scaler_* entries."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from brix.contract import METRICS
from scaler.metrics import ScalerMetrics


def exposed(m: ScalerMetrics) -> dict[str, tuple[str, set[frozenset[str]]]]:
    text = generate_latest(m.registry).decode()
    out: dict[str, tuple[str, set[frozenset[str]]]] = {}
    for family in text_string_to_metric_families(text):
        name = family.name + ("_total" if family.type == "counter" else "")
        out[name] = (family.type, {frozenset(s.labels) for s in family.samples
                                   if not s.name.endswith("_created")})
    return out


def test_families_match_the_contract() -> None:
    m = ScalerMetrics()
    m.decision(namespace="ns", deployment="d", signal="queue", value=3, desired=2,
               direction="up")
    m.error("prometheus")
    families = exposed(m)
    contract = {c.name: c for c in METRICS if c.exporter == "scaler"}
    assert set(families) == set(contract)
    for name, (kind, label_sets) in families.items():
        assert kind == contract[name].type
        assert label_sets == {frozenset(contract[name].labels)}


def test_error_kinds_exist_before_any_error_and_forget_drops_a_deployment() -> None:
    m = ScalerMetrics()
    text = generate_latest(m.registry).decode()
    assert 'brix_scaler_errors_total{kind="prometheus"} 0.0' in text
    m.decision(namespace="ns", deployment="d", signal="queue", value=3, desired=2,
               direction="up")
    m.decision(namespace="ns", deployment="e", signal="queue", value=1, desired=1,
               direction="none")
    m.forget(namespace="ns", deployment="d")
    text = generate_latest(m.registry).decode()
    assert 'deployment="d"' not in text
    assert 'deployment="e"' in text
