"""Credentials on a real PostgreSQL: encrypted at rest, revealed only with the right key,
counted from many threads, and never written anywhere in clear text."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, text

from app.errors import Conflict, RookeryError, ValidationError
from app.extensions import db
from app.models import AuditEntry, Credential
from app.services import credentials, inventory
from tests.conftest import make_config
from tests.integration.helpers import make_job

PASSWORD = "Tulip-S3cret-9731!"
ENABLE = "Enable-Orchid-4410?"
NEW_PASSWORD = "Rotated-Lily-2288#"


def make(name: str = "lab", **kwargs) -> Credential:
    kwargs.setdefault("enable_secret", ENABLE)
    kwargs.setdefault("tags", ["core"])
    return credentials.create_credential(name, "netops", PASSWORD, actor="test", **kwargs)


def test_secrets_are_encrypted_at_rest_and_revealed(ctx):
    credential = make()
    row = db.session.execute(
        text("SELECT password_enc, enable_secret_enc FROM credentials WHERE id = :id"),
        {"id": credential.id},
    ).one()
    for stored, clear in zip(row, (PASSWORD, ENABLE), strict=True):
        assert clear.encode() not in bytes(stored)
        assert bytes(stored).startswith(b"gAAAA")  # a Fernet token
    assert credentials.reveal(credential) == (PASSWORD, ENABLE)
    assert Path(ctx.instance_path, "encryption.key").is_file()  # no key given: a key file


def test_public_view_has_no_secret(ctx):
    credential = make(priority=10)
    view = credentials.public_view(credential)
    assert view == {
        "id": credential.id,
        "name": "lab",
        "username": "netops",
        "priority": 10,
        "tags": ["core"],
        "has_enable_secret": True,
        "success_count": 0,
        "failure_count": 0,
        "last_used_at": None,
        "created_at": view["created_at"],
        "updated_at": view["updated_at"],
    }
    assert PASSWORD not in repr(view) and ENABLE not in repr(view)
    assert credentials.public_view(make("bare", enable_secret=None))["has_enable_secret"] is False


def test_validation_messages(ctx):
    with pytest.raises(ValidationError) as caught:
        credentials.create_credential("", " ", "", priority=1001, tags=["a;b"], actor="test")
    assert caught.value.fields == {
        "name": "A credential needs a name of at most 128 characters.",
        "username": "A user name is required.",
        "password": "A password is required.",
        "priority": "Priority is a whole number from 0 to 1000 (lower is tried first).",
        "tags": "Tag 'a;b' cannot contain ',', ';' or '|'.",
    }
    make()
    with pytest.raises(Conflict, match="A credential named 'lab' already exists"):
        make()
    with pytest.raises(ValidationError, match="Priority is a whole number"):
        make("other", priority="high")
    assert db.session.scalars(select(Credential.name)).all() == ["lab"]


def test_update_keeps_clears_and_rotates(ctx):
    credential = make()
    credentials.update_credential(credential.id, priority=5, password="", actor="test")
    assert credentials.reveal(credential) == (PASSWORD, ENABLE)  # blank password: kept
    credentials.update_credential(credential.id, enable_secret="", actor="test")
    assert credentials.reveal(credential) == (PASSWORD, None)
    credentials.update_credential(
        credential.id, password=NEW_PASSWORD, tags=["edge"], name="lab2", actor="test"
    )
    assert credentials.reveal(credential) == (NEW_PASSWORD, None)
    assert [t.name for t in credential.tags] == ["edge"] and credential.name == "lab2"
    updates = db.session.scalars(
        select(AuditEntry).where(AuditEntry.action == "update").order_by(AuditEntry.id)
    ).all()
    assert [u.summary for u in updates] == [
        "changed credential lab",
        "changed credential lab (enable secret cleared)",
        "changed credential lab2 (new password)",
    ]
    assert updates[2].before["name"] == "lab" and updates[2].after["changed"] == ["new password"]
    make("other")
    with pytest.raises(Conflict, match="A credential named 'other' already exists"):
        credentials.update_credential(credential.id, name="other", actor="test")


def test_list_and_delete(ctx):
    make("b", priority=50)
    make("a", priority=50, tags=["edge"])
    first = make("z", priority=1)
    names = db.session.scalars(credentials.list_credentials()).all()
    assert [c.name for c in names] == ["z", "a", "b"]
    assert [c.name for c in db.session.scalars(credentials.list_credentials(tag="edge"))] == ["a"]
    job = make_job(name="backup", job_type="devjob", target_tags=["core"])
    job.credentials = [first]
    db.session.commit()
    with pytest.raises(Conflict, match="Credential z is named by job\\(s\\) backup"):
        credentials.delete_credential(first.id, actor="test")
    job.credentials = []
    db.session.commit()
    credentials.delete_credential(first.id, actor="test")
    assert db.session.get(Credential, first.id) is None


def test_another_key_gives_a_clear_error(ctx, app_factory, database_url, tmp_path):
    credential_id = make().id
    other = app_factory(
        make_config(
            database_url, tmp_path / "other", ROOKERY_ENCRYPTION_KEY=Fernet.generate_key().decode()
        )
    )
    with other.app_context():
        credential = db.session.get(Credential, credential_id)
        with pytest.raises(credentials.CredentialKeyError) as caught:
            credentials.reveal(credential)
    assert isinstance(caught.value, RookeryError)
    assert str(caught.value) == (
        "Cannot decrypt credential 'lab': the encryption key (ROOKERY_ENCRYPTION_KEY or "
        "instance/encryption.key) is not the one it was stored with."
    )
    assert caught.value.__suppress_context__  # no InvalidToken chained in tracebacks


def test_record_use_counts_from_many_threads(ctx):
    credential_id = make().id  # read here: the threads must not touch this session
    errors: list[BaseException] = []

    def worker(success: bool, times: int) -> None:
        try:
            with ctx.app_context():
                for _ in range(times):
                    credentials.record_use(credential_id, success)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=(True, 20)),
        threading.Thread(target=worker, args=(True, 20)),
        threading.Thread(target=worker, args=(False, 15)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    db.session.expire_all()
    credential = db.session.get(Credential, credential_id)
    assert (credential.success_count, credential.failure_count) == (40, 15)
    assert credential.last_used_at is not None
    assert credential.updated_at <= credential.last_used_at  # a use is not a change


def test_no_secret_anywhere_in_the_database(ctx):
    credential = make()
    credentials.update_credential(
        credential.id, password=NEW_PASSWORD, enable_secret=ENABLE + "x", actor="test"
    )
    with pytest.raises(Conflict) as duplicate:
        make()
    with pytest.raises(ValidationError) as invalid:
        credentials.create_credential("x", "", PASSWORD, priority=-1, actor="test")
    for exc in (duplicate.value, invalid.value):
        assert PASSWORD not in str(exc) and PASSWORD not in repr(exc.__dict__)
    inventory.create_device(name="r1", host="10.0.0.1", platform="cisco_ios", actor="test")
    credentials.record_use(credential.id, True)
    credentials.delete_credential(make("second", priority=3).id, actor="test")
    tables = db.session.scalars(
        text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
    ).all()
    assert {"audit_log", "credentials", "job_logs", "events"} <= set(tables)
    dump = "\n".join(
        db.session.scalar(text(f"SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM \"{t}\" t"))
        for t in tables
    )
    assert "netops" in dump and "lab" in dump  # the dump holds the rows
    for secret in (PASSWORD, NEW_PASSWORD, ENABLE):
        assert secret not in dump
