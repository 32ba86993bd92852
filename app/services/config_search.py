"""Search across every device's latest config ("which routers still have
``snmp-server community public``?").

The latest backed-up config of each device is kept in PostgreSQL (``latest_configs``),
written in the transaction of the backup's finalize step (``remember``), so a search is
one query over indexed rows (a pg_trgm GIN index where PostgreSQL has the extension)
rather than a walk through git. The query finds the devices; each match's lines and
their context are cut out of the device's text here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session

from app.errors import ValidationError
from app.extensions import db
from app.models import Device, LatestConfig, Tag, utcnow

#: devices a search answers at most (the rest: narrow the pattern or filter)
MAX_DEVICES = 500
#: matching lines shown per device at most
MAX_LINES = 200
MAX_CONTEXT = 10


def remember(session: Session, configs: Mapping[str, str], commit: str | None) -> int:
    """Keep these configs (device name -> text) as the devices' latest, in ``session``'s
    transaction; ``commit`` holds them. A text that did not change keeps its row (and
    the older commit it links to). Returns how many rows were written."""
    if not configs or commit is None:
        return 0
    ids = {
        row[0]: row[1]
        for row in session.execute(
            select(Device.name, Device.id).where(Device.name.in_(list(configs)))
        )
    }
    rows = [
        {"device_id": ids[name], "commit": commit, "at": utcnow(), "body": body}
        for name, body in configs.items()
        if name in ids
    ]
    if not rows:
        return 0
    result = session.execute(
        text(
            "INSERT INTO latest_configs (device_id, commit, committed_at, body) "
            "VALUES (:device_id, :commit, :at, :body) "
            "ON CONFLICT (device_id) DO UPDATE SET commit = EXCLUDED.commit, "
            "committed_at = EXCLUDED.committed_at, body = EXCLUDED.body "
            "WHERE latest_configs.body IS DISTINCT FROM EXCLUDED.body"
        ),
        rows,
    )
    return result.rowcount or 0


#: configs ``remembering`` writes at a time
REMEMBER_BATCH = 200


def remembering(
    session: Session, pairs: Iterable[tuple[str, str]], commit: str
) -> Iterator[tuple[str, str]]:
    """Pass (device name, text) pairs through, remembering them (``remember``) a batch
    at a time as they go by: a run's configs are read once, never all held at once.
    ``commit`` may be a placeholder that ``settle`` replaces once the commit exists."""
    batch: dict[str, str] = {}
    for name, body in pairs:
        batch[name] = body
        yield name, body
        if len(batch) >= REMEMBER_BATCH:
            remember(session, batch, commit)
            batch = {}
    if batch:
        remember(session, batch, commit)


def settle(session: Session, placeholder: str, commit: str | None) -> None:
    """The rows ``remembering`` wrote under ``placeholder`` now name ``commit`` (the store
    has none when nothing was ever committed: then they go)."""
    rows = LatestConfig.__table__
    if commit is None:
        session.execute(rows.delete().where(rows.c.commit == placeholder))
    else:
        session.execute(rows.update().where(rows.c.commit == placeholder).values(commit=commit))


def latest_commit(device_id: int) -> str | None:
    """The commit of the device's latest backed-up config (None: never backed up)."""
    return db.session.scalar(select(LatestConfig.commit).where(LatestConfig.device_id == device_id))


@dataclass
class Match:
    line_number: int
    line: str
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)


@dataclass
class DeviceMatches:
    device_id: int
    device_name: str
    commit: str
    matches: list[Match]
    more: bool = False


@dataclass
class SearchResult:
    items: list[DeviceMatches]
    #: more devices matched than MAX_DEVICES
    truncated: bool
    #: devices with an indexed config (the searched ones)
    searched: int


def search(
    query: str,
    *,
    regex: bool = False,
    case: bool = False,
    context: int = 2,
    tag: str | None = None,
    platform: str | None = None,
) -> SearchResult:
    """Every device whose latest config has a line matching ``query`` (plain text, or a
    regular expression), with each matching line, its number and ``context`` lines."""
    query = query or ""
    if not query.strip():
        raise ValidationError("Give something to search for.", fields={"q": "Required."})
    if "\x00" in query or len(query) > 500:
        raise ValidationError("At most 500 characters, no NUL.", fields={"q": "Too long."})
    context = max(0, min(int(context), MAX_CONTEXT))
    flags = 0 if case else re.IGNORECASE
    try:
        line_pattern = re.compile(query if regex else re.escape(query), flags)
    except re.error as exc:
        raise ValidationError(
            f"Not a regular expression: {exc}.", fields={"q": f"Not a regular expression: {exc}."}
        ) from None
    body = LatestConfig.body
    if regex:
        # (?n): PostgreSQL's ^ and $ match at each line, as Python's do on one line
        where = body.op("~" if case else "~*")("(?n)" + query)
    else:
        # LIKE and ILIKE both use the trigram index (strpos would read every row)
        escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        where = body.like(pattern, escape="\\") if case else body.ilike(pattern, escape="\\")
    rows_query = (
        select(Device.id, Device.name, LatestConfig.commit, LatestConfig.body)
        .join(LatestConfig, LatestConfig.device_id == Device.id)
        .where(where)
        .order_by(Device.name)
        .limit(MAX_DEVICES + 1)
    )
    if tag:
        rows_query = rows_query.where(Device.tags.any(Tag.name == tag))
    if platform:
        rows_query = rows_query.where(Device.platform == platform)
    try:
        rows = db.session.execute(rows_query).all()
    except DataError as exc:  # PostgreSQL refused the expression (its dialect differs)
        db.session.rollback()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "invalid"
        raise ValidationError(
            f"Not a regular expression PostgreSQL accepts: {reason}", fields={"q": reason}
        ) from None
    items = []
    for device_id, name, commit, text_body in rows[:MAX_DEVICES]:
        lines = text_body.splitlines()
        found = [i for i, line in enumerate(lines) if line_pattern.search(line)]
        if not found:
            continue  # a regex PostgreSQL and Python read differently, or across lines
        items.append(
            DeviceMatches(
                device_id=device_id,
                device_name=name,
                commit=commit,
                matches=[
                    Match(
                        line_number=i + 1,
                        line=lines[i],
                        before=lines[max(0, i - context) : i],
                        after=lines[i + 1 : i + 1 + context],
                    )
                    for i in found[:MAX_LINES]
                ],
                more=len(found) > MAX_LINES,
            )
        )
    searched = db.session.scalar(select(func.count()).select_from(LatestConfig)) or 0
    return SearchResult(items=items, truncated=len(rows) > MAX_DEVICES, searched=searched)


def as_dict(result: SearchResult) -> dict[str, Any]:
    """The API's answer."""
    return {
        "items": [
            {
                "device": {"id": item.device_id, "name": item.device_name},
                "commit": item.commit,
                "matches": [
                    {
                        "line_number": m.line_number,
                        "line": m.line,
                        "before": m.before,
                        "after": m.after,
                    }
                    for m in item.matches
                ],
                "more": item.more,
            }
            for item in result.items
        ],
        "truncated": result.truncated,
        "searched": result.searched,
    }


def reindex(store: Any) -> int:
    """Fill ``latest_configs`` from the config store's HEAD (after an upgrade, or to
    repair it); commits. Returns how many devices were indexed."""
    head = store.head()
    if head is None:
        return 0
    names = list(db.session.scalars(select(Device.name)))
    configs = {}
    for name in names:
        body = store.read(name, head)
        if body is not None:
            configs[name] = body
    written = remember(db.session, configs, head)
    db.session.commit()
    return written
