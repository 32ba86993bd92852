"""Passwords are stored as scrypt hashes (integration tests use a cheaper one)."""

from __future__ import annotations

from app.models import User


def test_passwords_are_hashed_with_scrypt_and_checked() -> None:
    user = User(username="u")
    user.set_password("correct horse")
    assert user.password_hash.startswith("scrypt:")
    assert "correct horse" not in user.password_hash
    assert user.check_password("correct horse")
    assert not user.check_password("wrong horse")
