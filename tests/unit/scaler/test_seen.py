"""Which ScaledObjects KEDA still calls about (``scaler.seen``)."""

from __future__ import annotations

import pytest

from scaler.seen import LastSeen

pytestmark = pytest.mark.unit


def test_a_key_not_asked_about_for_longer_than_the_limit_expires_once() -> None:
    seen: LastSeen[str] = LastSeen(forget_after=600)
    seen.touch("gone", 0.0)
    seen.touch("live", 0.0)
    seen.touch("live", 500.0)
    assert seen.expire(600.0) == []  # at the limit itself: still kept
    assert seen.expire(600.5) == ["gone"]
    assert "gone" not in seen
    assert "live" in seen
    assert seen.expire(1100.0) == []  # asked about at 500: 600 s later, still kept
    assert seen.expire(1100.5) == ["live"]
    assert len(seen) == 0


def test_an_open_stream_keeps_a_key_and_its_age_counts_from_the_close() -> None:
    seen: LastSeen[str] = LastSeen(forget_after=60)
    seen.opened("s", 0.0)
    seen.opened("s", 10.0)  # KEDA reconnects before the old stream is gone
    seen.closed("s", 20.0)
    assert seen.expire(1000.0) == []  # one stream still open
    seen.closed("s", 1000.0)
    assert seen.expire(1060.0) == []
    assert seen.expire(1060.5) == ["s"]


def test_an_older_time_does_not_make_a_key_look_older() -> None:
    seen: LastSeen[str] = LastSeen(forget_after=60)
    seen.touch("k", 100.0)
    seen.touch("k", 50.0)
    assert seen.expire(150.0) == []


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_a_limit_that_is_not_positive_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="forget_after must be > 0"):
        LastSeen(forget_after=bad)
