"""ServiceAccount and admin tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from localkube.api.authn import ADMIN, Authenticator, Keys, impersonated

pytestmark = pytest.mark.unit


def make(accounts: dict[tuple[str, str], str]) -> Authenticator:
    return Authenticator(Keys.generate(), lambda ns, name: accounts.get((ns, name)))


def test_a_service_account_token_authenticates_its_account_while_it_exists() -> None:
    accounts = {("team", "bot"): "uid-1"}
    auth = make(accounts)
    token = auth.issue("team", "bot", "uid-1")
    user = auth.authenticate({"Authorization": f"Bearer {token}"})
    assert user is not None
    assert user.name == "system:serviceaccount:team:bot"
    assert "system:serviceaccounts:team" in user.groups
    accounts[("team", "bot")] = "uid-2"  # deleted and made again
    assert auth.user_of(token) is None


def test_forged_tampered_and_foreign_tokens_authenticate_no_one() -> None:
    auth = make({("team", "bot"): "u"})
    token = auth.issue("team", "bot", "u")
    assert auth.user_of(token[:-1] + ("0" if token[-1] != "0" else "1")) is None
    assert make({("team", "bot"): "u"}).user_of(token) is None  # another key
    assert auth.user_of("lk-sa.e30.abc") is None
    assert auth.authenticate({}) is None
    assert auth.authenticate({"Authorization": "Basic abc"}) is None
    assert auth.authenticate({"Authorization": "Bearer "}) is None


def test_the_admin_token_is_kept_across_restarts(tmp_path: Path) -> None:
    keys = Keys.load_or_create(tmp_path / "auth.json")
    assert (tmp_path / "auth.json").stat().st_mode & 0o077 == 0
    again = Keys.load_or_create(tmp_path / "auth.json")
    assert again == keys
    auth = Authenticator(again, lambda ns, name: None)
    assert auth.authenticate({"Authorization": f"Bearer {keys.admin_token}"}) == ADMIN
    assert len(keys.admin_token) >= 32


def test_impersonating_a_service_account_gives_it_its_groups() -> None:
    headers = {"Impersonate-User": "system:serviceaccount:ns:sa"}
    user = impersonated(headers, lambda name: [])
    assert user is not None
    assert set(user.groups) == {"system:serviceaccounts", "system:serviceaccounts:ns",
                                "system:authenticated"}
    assert impersonated({}, lambda name: []) is None
