"""The gateway's two bounds (gateway.admission) and the settings that set them."""

from __future__ import annotations

import pytest

from gateway.admission import Admission
from gateway.settings import GatewaySettings

pytestmark = pytest.mark.unit


def test_in_flight_is_refused_at_the_bound_and_free_again_after_one_leaves() -> None:
    a = Admission(max_in_flight=2, max_pending=1)
    assert [a.enter(), a.enter(), a.enter()] == [True, True, False]
    assert a.in_flight == 2  # a refusal counts nothing
    a.leave()
    assert a.enter()
    assert not a.enter()


def test_pending_is_refused_at_its_own_bound() -> None:
    a = Admission(max_in_flight=10, max_pending=1)
    assert a.hold()
    assert not a.hold()
    a.release()
    assert a.hold()
    assert a.in_flight == 0


@pytest.mark.parametrize(("name", "value"), [
    ("max_in_flight", 0), ("max_pending", 0), ("max_header_bytes", 0),
    ("body_timeout", 0.0), ("header_timeout", -1.0), ("reconnect_hold", -1.0),
    ("overload_retry_after", -1), ("keep_alive_timeout", 0.0),
])
def test_bounds_that_make_no_sense_are_refused_naming_the_setting(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=name):
        GatewaySettings(**{name: value})  # type: ignore[arg-type]
