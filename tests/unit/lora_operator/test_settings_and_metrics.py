"""The operator's settings (flags, env, bad values) and its /metrics families."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from brix.contract import LORA_PHASES, metric
from lora_operator.metrics import Report, registry_for
from lora_operator.settings import Settings, load


def test_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIX_SIDECAR_TOKEN", "s3cret")
    monkeypatch.setenv("BRIX_LIVENESS_PORT", "9999")
    monkeypatch.setenv("BRIX_NAMESPACES", "a,b")
    s = load(["--resync-interval", "5", "--port", "0"])
    assert s.sidecar_token == "s3cret"
    assert s.liveness_port == 9999
    assert s.namespaces == ["a", "b"]
    assert (s.resync_interval, s.port) == (5.0, 0)
    assert Settings().delete_timeout > 0


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--backoff-initial", "0"], "backoff-initial must be > 0"),
        (["--backoff-initial", "10", "--backoff-max", "1"], "backoff-max must be >= "),
        (["--port", "70000"], "port: 70000 is not a port"),
        (["--delete-timeout", "soon"], "expected a number"),
    ],
)
def test_bad_settings_exit_with_a_clear_line(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        load(argv)
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err


def test_metrics_follow_the_contract() -> None:
    reports = {("ns", "sql"): Report("m", "Degraded", 2)}
    text = generate_latest(registry_for(reports)).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text) for s in fam.samples
    }
    phase = metric("brix_lora_adapter_phase")
    for p in LORA_PHASES:
        labels = {"namespace": "ns", "adapter": "sql", "base_model": "m", "phase": p}
        assert set(labels) == set(phase.labels)
        assert samples[(phase.name, tuple(sorted(labels.items())))] == (p == "Degraded")
    ready = {"namespace": "ns", "adapter": "sql", "base_model": "m"}
    assert samples[("brix_lora_adapter_ready_replicas", tuple(sorted(ready.items())))] == 2
    reports.clear()
    assert "adapter=" not in generate_latest(registry_for(reports)).decode()


def test_replicas_without_a_priority_get_distinct_random_ones() -> None:
    from lora_operator.__main__ import kopf_settings, peering_priority

    unset = Settings()
    drawn = {peering_priority(unset) for _ in range(50)}
    assert len(drawn) > 40  # Kopf freezes every replica when the highest is shared
    assert min(drawn) >= 1
    assert peering_priority(Settings(priority=7)) == 7
    op = kopf_settings(Settings(priority=3, standalone=True))
    assert (op.peering.priority, op.peering.standalone, op.peering.name) == (
        3, True, "brix-lora-operator")
    assert op.persistence.finalizer == "brix.dev/lora-operator"
