"""Admins' allow and deny rules for run_commands, stored in PostgreSQL.

The built-in read-only list lives in ``app.command_policy``; these rules extend it (allow
``show tech-support`` for operators) or restrict it (deny ``show running-config``), on
one platform or all. Every change is audited. ``current()`` is what the job service and
the worker check commands against: read at most once every ``CACHE_SECONDS`` per process,
so a worker checking many devices does not ask PostgreSQL for each one.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import select

from app import audit, command_policy, platforms
from app.command_policy import ALLOW, DENY, Rule
from app.errors import ValidationError
from app.extensions import db
from app.models import CommandRule, User
from app.services import flush_unique, get_row

#: how long a process keeps the rules it read (a change reaches every worker within this)
CACHE_SECONDS = 5.0
MAX_WORDS = 200
MAX_NOTE = 500

_cache_lock = threading.Lock()
_cache: tuple[float, tuple[Rule, ...]] | None = None


def _rule(row: CommandRule) -> Rule:
    return Rule(kind=row.kind, words=tuple(row.words.split()), platform=row.platform)


def current() -> tuple[Rule, ...]:
    """Every rule, as ``command_policy`` checks them (cached for ``CACHE_SECONDS``)."""
    global _cache
    with _cache_lock:
        if _cache is not None and time.monotonic() - _cache[0] < CACHE_SECONDS:
            return _cache[1]
    rules = tuple(_rule(row) for row in db.session.scalars(select(CommandRule)))
    with _cache_lock:
        _cache = (time.monotonic(), rules)
    return rules


def forget_cache() -> None:
    """Read the rules again at the next check (this process changed them)."""
    global _cache
    with _cache_lock:
        _cache = None


def list_rules() -> list[CommandRule]:
    return list(
        db.session.scalars(
            select(CommandRule).order_by(
                CommandRule.platform.nulls_first(), CommandRule.kind, CommandRule.words
            )
        )
    )


def view(row: CommandRule) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "words": row.words,
        "platform": row.platform,
        "note": row.note,
        "created_by": row.created_by,
        "created_at": row.created_at.isoformat() if row.created_at else None,
    }


def builtin() -> list[dict[str, Any]]:
    """The built-in read-only list by platform, as pages and the API show it."""
    shown = [("any other platform", command_policy.GENERIC)]
    shown += sorted(command_policy.READ_ONLY.items())
    return [
        {
            "platform": key,
            "verbs": [verb for verb, _ in verbs],
            "filters": [word for word, _ in filters],
        }
        for key, (verbs, filters) in shown
    ]


def _clean(kind: Any, words: Any, platform: Any, note: Any) -> tuple[str, str, str | None, str]:
    errors: dict[str, str] = {}
    kind = str(kind or "").strip().lower()
    if kind not in (ALLOW, DENY):
        errors["kind"] = "A rule either allows or denies: 'allow' or 'deny'."
    text = "" if words is None else str(words)
    problem = command_policy.control_problem(text)
    cleaned = " ".join(command_policy.rule_words(text))
    if problem is not None:
        errors["words"] = problem
    elif not cleaned:
        errors["words"] = "Give the first words of the commands, e.g. 'show tech-support'."
    elif len(cleaned) > MAX_WORDS:
        errors["words"] = f"At most {MAX_WORDS} characters."
    elif any(mark in cleaned for mark in ("|", ";", ">")):
        errors["words"] = "A rule names a command's words; '|', ';' and '>' are not words."
    key = str(platform or "").strip().lower() or None
    if key is not None:
        key = platforms.platform_key(key)
        if len(key) > 64 or not key.replace("_", "").isalnum():
            errors["platform"] = "A platform is a netmiko device type such as cisco_ios."
    note = "" if note is None else str(note).strip()
    if "\x00" in note or len(note) > MAX_NOTE:
        errors["note"] = f"A note is at most {MAX_NOTE} characters, without NUL."
    if errors:
        raise ValidationError(" ".join(errors.values()), fields=errors)
    return kind, cleaned, key, note


def create_rule(
    *,
    kind: Any,
    words: Any,
    platform: Any = None,
    note: Any = "",
    actor: User | str | None,
) -> CommandRule:
    """Add a rule (admins only: the caller checks the role); audited, commits."""
    kind, cleaned, key, note = _clean(kind, words, platform, note)
    who = actor.username if isinstance(actor, User) else actor or "system"
    row = CommandRule(kind=kind, words=cleaned, platform=key, note=note, created_by=who)
    db.session.add(row)
    where = key or "every platform"
    flush_unique(f"There is already a rule to {kind} {cleaned!r} on {where}.")
    audit.record(
        actor=actor,
        action="create",
        object_type="command_rule",
        object_id=row.id,
        summary=f"command rule: {kind} {cleaned!r} on {key or 'every platform'}",
        after=view(row),
    )
    db.session.commit()
    forget_cache()
    return row


def delete_rule(rule_id: int, *, actor: User | str | None) -> None:
    """Remove a rule; audited, commits."""
    row = get_row(CommandRule, rule_id, "command rule")
    audit.record(
        actor=actor,
        action="delete",
        object_type="command_rule",
        object_id=row.id,
        summary=f"removed command rule: {row.kind} {row.words!r} on "
        f"{row.platform or 'every platform'}",
        before=view(row),
    )
    db.session.delete(row)
    db.session.commit()
    forget_cache()
