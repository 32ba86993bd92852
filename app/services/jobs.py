"""Job definitions: create and change them, validated against their job type."""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app
from sqlalchemy import select

from app import audit, crypto, registry
from app.errors import Conflict, NotFound, ValidationError
from app.extensions import db
from app.models import Device, Job, Priority, Tag, User

logger = logging.getLogger(__name__)

PRIORITY_NAMES = {p.name.lower(): p.value for p in Priority}


def parse_priority(value: int | str | None) -> int:
    """low/normal/high/critical, or a number from 0 to 100."""
    if value is None or value == "":
        return Priority.NORMAL.value
    if isinstance(value, str) and value.strip().lower() in PRIORITY_NAMES:
        return PRIORITY_NAMES[value.strip().lower()]
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if not 0 <= number <= 100:
        raise ValidationError(
            "Priority is low, normal, high, critical or a number from 0 to 100.",
            fields={"priority": "low, normal, high, critical or 0-100"},
        )
    return number


def _optional_int(name: str, value: Any, *, minimum: int, maximum: int | None = None) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValidationError(
            f"{name} must be a whole number.", fields={name: "A whole number."}
        ) from None
    if number < minimum or (maximum is not None and number > maximum):
        bound = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
        raise ValidationError(f"{name} must be {bound}.", fields={name: f"Must be {bound}."})
    return number


def get_job(job_id: int) -> Job:
    job = db.session.get(Job, job_id)
    if job is None:
        raise NotFound(f"No job #{job_id}.")
    return job


def get_job_by_name(name: str) -> Job:
    job = db.session.scalar(select(Job).where(Job.name == name))
    if job is None:
        raise NotFound(f"No job named {name!r}.")
    return job


def _tags(names: list[str]) -> list[Tag]:
    wanted = sorted({n.strip() for n in names if n and n.strip()})
    found = {t.name: t for t in db.session.scalars(select(Tag).where(Tag.name.in_(wanted)))}
    for name in wanted:
        if name not in found:
            found[name] = Tag(name=name)
            db.session.add(found[name])
    return [found[n] for n in wanted]


def _devices(ids: list[int]) -> list[Device]:
    wanted = sorted({int(i) for i in ids})
    devices = list(db.session.scalars(select(Device).where(Device.id.in_(wanted))))
    missing = sorted(set(wanted) - {d.id for d in devices})
    if missing:
        raise ValidationError(
            f"Unknown device ids: {missing}", fields={"target_device_ids": f"Unknown: {missing}"}
        )
    return devices


def snapshot(job: Job) -> dict[str, Any]:
    """What the audit trail records of a job (secret parameters redacted)."""
    return {
        "name": job.name,
        "description": job.description,
        "labels": job.labels,
        "job_type": job.job_type,
        "params": crypto.redact_params(job.params or {}),
        "target_tags": [t.name for t in job.target_tags],
        "target_device_ids": [d.id for d in job.target_devices],
        "priority": job.priority,
        "max_retries": job.max_retries,
        "retry_delay_seconds": job.retry_delay_seconds,
        "timeout_seconds": job.timeout_seconds,
        "no_overlap": job.no_overlap,
        "enabled": job.enabled,
        "depends_on": [d.id for d in job.depends_on],
    }


def create_job(**fields: Any) -> Job:
    """Validate and save a job definition, with an audit entry; commits.

    On any error the session is rolled back and nothing is saved.
    """
    try:
        return _create_job(**fields)
    except BaseException:
        db.session.rollback()
        raise


def _create_job(
    *,
    name: str,
    job_type: str,
    params: dict[str, Any] | None = None,
    description: str = "",
    labels: list[str] | None = None,
    target_tags: list[str] | None = None,
    target_device_ids: list[int] | None = None,
    priority: int | str | None = None,
    max_retries: int | str | None = None,
    retry_delay_seconds: int | str | None = None,
    timeout_seconds: int | str | None = None,
    max_parallel: int | str | None = None,
    no_overlap: bool | None = None,
    enabled: bool = True,
    depends_on_job_ids: list[int] | None = None,
    actor: User | str | None = None,
) -> Job:
    name = (name or "").strip()
    if not name or len(name) > 128:
        raise ValidationError(
            "A job needs a name of at most 128 characters.",
            fields={"name": "Required, at most 128 characters."},
        )
    if db.session.scalar(select(Job.id).where(Job.name == name)) is not None:
        raise Conflict(f"A job named {name!r} already exists.")
    kind = registry.current().get(job_type)
    validated = registry.validate_params(kind, params or {})
    max_timeout = current_app.config["ROOKERY_JOB_TIMEOUT_MAX_SECONDS"]
    job = Job(
        name=name,
        description=description or "",
        labels=sorted({label.strip() for label in (labels or []) if label.strip()}),
        job_type=kind.job_type,
        params=crypto.seal_params(validated, kind.secret_params),
        priority=parse_priority(priority),
        max_retries=_optional_int("max_retries", max_retries, minimum=0, maximum=20),
        retry_delay_seconds=_optional_int("retry_delay_seconds", retry_delay_seconds, minimum=1),
        timeout_seconds=_optional_int(
            "timeout_seconds", timeout_seconds, minimum=1, maximum=max_timeout
        ),
        max_parallel=_optional_int("max_parallel", max_parallel, minimum=1, maximum=64),
        no_overlap=(kind.targets == "devices") if no_overlap is None else bool(no_overlap),
        enabled=enabled,
        owner_id=actor.id if isinstance(actor, User) else None,
    )
    job.target_tags = _tags(target_tags or [])
    job.target_devices = _devices(target_device_ids or [])
    db.session.add(job)
    db.session.flush()
    _set_dependencies(job, depends_on_job_ids or [])
    audit.record(
        actor=actor,
        action="create",
        object_type="job",
        object_id=job.id,
        summary=f"created job {name} ({kind.job_type})",
        after=snapshot(job),
    )
    db.session.commit()
    return job


def _set_dependencies(job: Job, job_ids: list[int]) -> None:
    """Make ``job`` depend on ``job_ids``, refusing unknown jobs and cycles."""
    wanted = sorted({int(i) for i in job_ids})
    if job.id in wanted:
        raise ValidationError(
            "A job cannot depend on itself.",
            fields={"depends_on": "A job cannot depend on itself."},
        )
    found = list(db.session.scalars(select(Job).where(Job.id.in_(wanted))))
    missing = sorted(set(wanted) - {j.id for j in found})
    if missing:
        raise ValidationError(
            f"Unknown jobs to depend on: {missing}", fields={"depends_on": f"Unknown: {missing}"}
        )
    for dependency in found:
        path = _path_to(dependency, job.id)
        if path:
            chain = " -> ".join([job.name, *path])
            raise ValidationError(
                f"Dependency cycle: {chain}.",
                fields={"depends_on": f"Would make a cycle: {chain}."},
            )
    job.depends_on = found


def _path_to(start: Job, target_id: int) -> list[str]:
    """Names along a dependency path from ``start`` to the job ``target_id`` (empty: none)."""
    stack: list[tuple[Job, list[str]]] = [(start, [start.name])]
    seen: set[int] = set()
    while stack:
        current, path = stack.pop()
        if current.id == target_id:
            return path
        if current.id in seen:
            continue
        seen.add(current.id)
        stack.extend((d, [*path, d.name]) for d in current.depends_on)
    return []


def set_dependencies(job: Job, job_ids: list[int], *, actor: User | str | None = None) -> Job:
    """Change what ``job`` depends on (a cycle is refused and nothing saved); commits."""
    before = [d.id for d in job.depends_on]
    try:
        _set_dependencies(job, job_ids)
    except ValidationError:
        db.session.rollback()
        raise
    audit.record(
        actor=actor,
        action="update",
        object_type="job",
        object_id=job.id,
        summary=f"dependencies of {job.name}",
        before={"depends_on": before},
        after={"depends_on": [d.id for d in job.depends_on]},
    )
    db.session.commit()
    return job


def delete_job(job_id: int, *, actor: User | str | None = None) -> None:
    """Delete a job definition; refused while one of its runs is in flight.

    Its runs, results and events stay readable (they keep the job's name).
    """
    from app.services import runs

    job = get_job(job_id)
    in_flight = runs.active_run(job)
    if in_flight is not None:
        raise Conflict(
            f"Job {job.name!r} has run #{in_flight.id} {in_flight.status.lower()}; cancel it first."
        )
    before = snapshot(job)
    db.session.delete(job)
    audit.record(
        actor=actor,
        action="delete",
        object_type="job",
        object_id=job_id,
        summary=f"deleted job {before['name']}",
        before=before,
    )
    db.session.commit()
