"""The routing config file: profiles, bounds, and every mistake named by its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.routing_config import (
    PrefixBounds,
    RoutingConfigError,
    load_routing_config,
    parse_routing_config,
)
from gateway.scoring import FLEET_PREFILL, LEAST_PREFILL, PREFIX_CACHE, Filter

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).parents[3] / "gateway" / "routing.example.yaml"


def test_no_file_gives_the_built_in_profiles() -> None:
    config = load_routing_config(None)
    assert dict(config.profiles) == {"prefix-cache": PREFIX_CACHE, "least-prefill": LEAST_PREFILL,
                                     "fleet-prefill": FLEET_PREFILL}
    assert config.prefix == PrefixBounds()


def test_the_shipped_example_loads() -> None:
    config = load_routing_config(EXAMPLE)
    assert {"prefix-cache", "prefix-balanced", "lora-affinity"} <= set(config.profiles)
    # The built-ins it writes out are what is built in.
    for name in ("least-prefill", "fleet-prefill", "prefix-cache"):
        assert config.profiles[name] == load_routing_config(None).profiles[name], name
    assert config.profiles["lora-affinity"].weights == {"lora": 2, "queue": 1, "kv-cache": 1}
    assert config.profiles["lora-affinity"].filters == (Filter("kv-cache", {"max": 0.95}),)
    # The built-ins it writes out are the built-ins, to the last weight.
    assert config.profiles["least-prefill"] == LEAST_PREFILL
    assert config.profiles["prefix-cache"] == PREFIX_CACHE


def test_values_are_read() -> None:
    config = parse_routing_config({
        "prefix": {"chunk-chars": 64, "max-chunks": 10, "chunks-per-pod": 99},
        "lora-window": 2.5,
        "profiles": {"mine": {"scorers": {"prefix": 3, "running": 0.5},
                              "filters": {"load": {"factor": 2}}}},
    })
    assert config.prefix == PrefixBounds(chunk_chars=64, max_chunks=10, chunks_per_pod=99)
    assert config.lora_window == 2.5
    mine = config.profiles["mine"]
    assert mine.weights == {"prefix": 3, "running": 0.5}
    assert mine.filters == (Filter("load", {"factor": 2}),)
    assert "prefix-cache" in config.profiles  # the built-in stays


@pytest.mark.parametrize(("data", "key"), [
    ({"profiles": {"p": {"scorers": {"speed": 1}}}}, "profiles.p.scorers.speed: unknown scorer"),
    ({"profiles": {"p": {"scorers": {"queue": -1}}}}, "profiles.p.scorers.queue: must be >= 0"),
    ({"profiles": {"p": {"scorers": {}}}}, "profiles.p.scorers: a profile needs at least one"),
    ({"profiles": {"p": {"filters": {"load": {}}}}}, "profiles.p.scorers: a profile needs"),
    ({"profiles": {"p": None}}, "profiles.p.scorers: a profile needs"),
    ({"profiles": {"p": {"scorers": {"queue": "high"}}}}, "profiles.p.scorers.queue: must be a"),
    ({"profiles": {"p": {"scorers": {"queue": 1}, "filters": {"fast": {}}}}},
     "profiles.p.filters.fast: unknown filter"),
    ({"profiles": {"p": {"scorers": {"queue": 1}, "filters": {"queue": {}}}}},
     "profiles.p.filters.queue.max: required"),
    ({"profiles": {"p": {"scorers": {"queue": 1}, "filters": {"load": {"slak": 1}}}}},
     "profiles.p.filters.load.slak: unknown key"),
    ({"profiles": {"p": {"scorers": {"queue": 1}, "weights": {}}}}, "profiles.p.weights: unknown"),
    ({"profiles": {"least-request": {"scorers": {"queue": 1}}}},
     "profiles.least-request: a built-in strategy"),
    ({"prefix": {"chunk-chars": 0}}, "prefix.chunk-chars: must be > 0"),
    ({"prefix": {"max-chunks": 2.5}}, "prefix.max-chunks: must be a whole number"),
    ({"lora-window": -1}, "lora-window: must be >= 0"),
    ({"profile": {}}, "profile: unknown key"),
    (["a list"], "(top level): must be a mapping"),
])
def test_mistakes_name_their_key(data: Any, key: str) -> None:
    with pytest.raises(RoutingConfigError) as info:
        parse_routing_config(data)
    assert str(info.value).startswith(key)
    assert "\n" not in str(info.value)


def test_a_file_that_is_not_yaml_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "routing.yaml"
    bad.write_text("profiles: {p: [unclosed\n")
    with pytest.raises(RoutingConfigError, match="not valid YAML"):
        load_routing_config(bad)
    with pytest.raises(FileNotFoundError, match=r"missing\.yaml"):
        load_routing_config(tmp_path / "missing.yaml")
