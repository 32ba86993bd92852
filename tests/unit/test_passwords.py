"""Passwords are stored as scrypt hashes (integration tests use a cheaper one)."""

from __future__ import annotations

from app import models
from app.models import User


def test_passwords_are_hashed_with_scrypt_and_checked() -> None:
    user = User(username="u")
    user.set_password("correct horse")
    assert user.password_hash.startswith("scrypt:")
    assert "correct horse" not in user.password_hash
    assert user.check_password("correct horse")
    assert not user.check_password("wrong horse")


def test_unknown_users_check_a_scrypt_dummy_hash(monkeypatch) -> None:
    """The dummy hash checked for unknown names costs what a real one does."""
    checked: list[str] = []
    monkeypatch.setattr(models, "check_password_hash", lambda h, p: checked.append(h) or True)
    models._dummy_password_hash.cache_clear()
    assert models.check_no_user_password("correct horse") is False
    assert len(checked) == 1
    assert checked[0].startswith("scrypt:")
    models._dummy_password_hash.cache_clear()
