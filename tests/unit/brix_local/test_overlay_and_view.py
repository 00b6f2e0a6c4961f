from __future__ import annotations

import pytest

from brix.local.overlay import OverlayError, substitute
from brix.local.view import ModelRow, Snapshot, render


def test_substitute_fills_every_placeholder() -> None:
    text = "model: ${BRIX_ROOT}/m\nurl: ${PROMETHEUS_URL}\nkeep: $(POD_IP) and $HOME\n"
    out = substitute(text, {"BRIX_ROOT": "/srv/brix", "PROMETHEUS_URL": "http://p:9090"})
    assert out == "model: /srv/brix/m\nurl: http://p:9090\nkeep: $(POD_IP) and $HOME\n"


def test_substitute_refuses_unknown_placeholders() -> None:
    with pytest.raises(OverlayError, match="GATEWAY_PORT, ZONE"):
        substitute("${ZONE} ${GATEWAY_PORT} ${BRIX_ROOT}", {"BRIX_ROOT": "/x"})


def test_view_shows_models_adapters_and_decisions() -> None:
    snap = Snapshot(
        models=(
            ModelRow("tiny-llama", "brix-models", 1, 1, 0.0, 2.0, ("tiny-lora-1 (Ready 1/1)",)),
            ModelRow("sim-model", "brix-models", 2, 3, 11.5, 8.0),
        ),
        decisions=tuple(f"12:00:0{i} sim-model: scaled {i} -> {i + 1}" for i in range(7)),
        problems=("Prometheus: connection refused",),
    )
    text = render(snap, header="brix 12:00:07")
    lines = text.splitlines()
    assert lines[0] == "brix 12:00:07"
    assert lines[1].split() == ["MODEL", "NAMESPACE", "PODS", "WAITING", "RUNNING", "ADAPTERS"]
    assert lines[2].split()[:5] == ["sim-model", "brix-models", "2/3", "11.5", "8"]
    assert lines[3].split()[:5] == ["tiny-llama", "brix-models", "1/1", "0", "2"]
    assert "tiny-lora-1 (Ready 1/1)" in lines[3]
    # Only the five most recent decisions are shown.
    assert "scaled 1 -> 2" not in text
    assert "scaled 6 -> 7" in text
    assert lines[-1] == "! Prometheus: connection refused"


def test_view_without_models_or_metrics() -> None:
    text = render(Snapshot(models=(ModelRow("m", "ns", 0, 1, None, None),)))
    assert text.splitlines()[1].split()[:5] == ["m", "ns", "0/1", "-", "-"]
    assert "(none yet)" in text
