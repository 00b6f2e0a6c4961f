"""bench.routing.overhead's command line: a profile it cannot run is refused at once."""

from __future__ import annotations

import pytest

from bench.routing.overhead import main

pytestmark = pytest.mark.unit


def test_an_unknown_profile_is_refused_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--profile", "fastest", "--in-process"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--profile: invalid choice: 'fastest'" in err
    assert "least-prefill" in err
