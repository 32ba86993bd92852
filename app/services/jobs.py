"""Job definitions: create and change them, validated against their job type."""

from __future__ import annotations

import functools
import logging
from typing import Any

from flask import current_app
from sqlalchemy import Select, func, select, text

from app import audit, command_policy, crypto, registry
from app.errors import Conflict, Forbidden, NotFound, ValidationError
from app.extensions import db
from app.models import (
    MAX_PARALLEL,
    Credential,
    Device,
    Job,
    Priority,
    Role,
    Tag,
    User,
    job_dependencies,
)
from app.services import command_rules, get_row

logger = logging.getLogger(__name__)

PRIORITY_NAMES = {p.name.lower(): p.value for p in Priority}

#: the key of the PostgreSQL advisory lock that serialises changes of the job
#: dependency graph ("rook-dep")
DEPENDENCY_LOCK_KEY = 0x726F6F6B2D646570


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
    return get_row(Job, job_id, "job")


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
        "retry_max_delay_seconds": job.retry_max_delay_seconds,
        "timeout_seconds": job.timeout_seconds,
        "no_overlap": job.no_overlap,
        "enabled": job.enabled,
        "depends_on": [d.id for d in job.depends_on],
        "credentials": [c.name for c in job.credentials],
    }


def list_jobs(
    *, label: str | None = None, job_type: str | None = None, search: str | None = None
) -> Select[tuple[Job]]:
    """Job definitions by name, optionally with a label, of a type, or matching a search."""
    query = select(Job).order_by(Job.name)
    if label:
        query = query.where(Job.labels.contains([label]))
    if job_type:
        query = query.where(Job.job_type == job_type)
    if search:
        query = query.where(Job.name.ilike(f"%{search.replace('%', r'%').replace('_', r'_')}%"))
    return query


def all_labels() -> list[str]:
    """Every label some job carries, sorted (one query, however many jobs)."""
    label = func.jsonb_array_elements_text(Job.labels).label("label")
    return list(db.session.scalars(select(label).distinct().order_by(label)))


def create_job(**fields: Any) -> Job:
    """Validate and save a job definition, with an audit entry; commits.

    On any error the session is rolled back and nothing is saved.
    """
    try:
        return _create_job(**fields)
    except BaseException:
        db.session.rollback()
        raise


#: What ``create_job`` and ``update_job`` take besides name, job type and actor.
JOB_FIELDS = frozenset(
    {
        "params",
        "description",
        "labels",
        "target_tags",
        "target_device_ids",
        "credential_names",
        "priority",
        "max_retries",
        "retry_delay_seconds",
        "retry_max_delay_seconds",
        "timeout_seconds",
        "max_parallel",
        "no_overlap",
        "enabled",
        "depends_on_job_ids",
    }
)


def _clean_name(name: Any) -> str:
    name = str(name or "").strip()
    if not name or len(name) > 128:
        raise ValidationError(
            "A job needs a name of at most 128 characters.",
            fields={"name": "Required, at most 128 characters."},
        )
    return name


def _create_job(
    *,
    name: str,
    job_type: str,
    actor: User | str | None = None,
    **fields: Any,
) -> Job:
    if fields.get("depends_on_job_ids"):
        _lock_dependency_graph()
    problems: dict[str, str] = {}
    try:
        name = _clean_name(name)
    except ValidationError as exc:
        problems.update(exc.fields)
    unknown = sorted(set(fields) - JOB_FIELDS)
    if unknown:
        raise ValidationError(
            f"Unknown job fields: {', '.join(unknown)}.",
            fields={field: "Unknown field." for field in unknown},
        )
    kind = registry.current().get(job_type)
    if kind.internal and actor != "system":
        raise ValidationError(
            f"{kind.label} jobs are made by Rookery itself (a change's Apply), not by hand.",
            fields={"job_type": "Not available."},
        )
    job = Job(
        name=name,
        job_type=kind.job_type,
        no_overlap=kind.targets == "devices",
        owner_id=actor.id if isinstance(actor, User) else None,
    )
    try:
        _apply(job, kind, {"params": {}, "enabled": True, **fields}, creating=True)
    except ValidationError as exc:
        exc.fields = {**problems, **exc.fields}
        raise
    if problems:
        raise ValidationError("A job needs a name of at most 128 characters.", fields=problems)
    _apply_command_policy(job, actor, {"params", *fields})
    if db.session.scalar(select(Job.id).where(Job.name == name)) is not None:
        raise Conflict(f"A job named {name!r} already exists.")
    db.session.add(job)
    db.session.flush()
    _set_dependencies(job, fields.get("depends_on_job_ids") or [])
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


def update_job(job_id: int, *, actor: User | str | None = None, **changes: Any) -> Job:
    """Change a job definition; fields not given keep their values. Commits.

    A secret parameter given empty (or not given) keeps its stored value, so forms never
    have to echo a secret back. The job type cannot change. On any error nothing is saved.
    """
    try:
        if "depends_on_job_ids" in changes:
            _lock_dependency_graph()
        job = get_job(job_id)
        if "job_type" in changes and changes.pop("job_type") not in (None, "", job.job_type):
            raise ValidationError(
                "A job's type cannot change; create a new job instead.",
                fields={"job_type": "Cannot change."},
            )
        unknown = sorted(set(changes) - JOB_FIELDS - {"name"})
        if unknown:
            raise ValidationError(
                f"Unknown job fields: {', '.join(unknown)}.",
                fields={name: "Unknown field." for name in unknown},
            )
        before = snapshot(job)
        kind = registry.current().get(job.job_type)
        if "name" in changes:
            name = _clean_name(changes.pop("name"))
            taken = db.session.scalar(select(Job.id).where(Job.name == name, Job.id != job.id))
            if taken is not None:
                raise Conflict(f"A job named {name!r} already exists.")
            job.name = name
        _apply(job, kind, changes, creating=False)
        _apply_command_policy(job, actor, set(changes))
        if "depends_on_job_ids" in changes:
            _set_dependencies(job, changes["depends_on_job_ids"] or [])
        db.session.flush()
        audit.record(
            actor=actor,
            action="update",
            object_type="job",
            object_id=job.id,
            summary=f"changed job {job.name}",
            before=before,
            after=snapshot(job),
        )
        db.session.commit()
        return job
    except BaseException:
        db.session.rollback()
        raise


def set_enabled(job_id: int, enabled: bool, *, actor: User | str | None = None) -> Job:
    """Enable or disable a job (a disabled job's schedules do not fire); commits."""
    return update_job(job_id, actor=actor, enabled=bool(enabled))


def _apply(job: Job, kind: registry.JobType, fields: dict[str, Any], *, creating: bool) -> None:
    """Validate ``fields`` and set them on ``job``; every problem in one ValidationError."""
    errors: dict[str, str] = {}
    messages: list[str] = []

    def check(field: str, make: Any) -> Any:
        try:
            return make()
        except ValidationError as exc:
            errors.update(exc.fields or {field: exc.message})
            messages.append(exc.message)
            return None

    config = current_app.config
    values: dict[str, Any] = {}
    if "params" in fields:
        stored = crypto.reveal_params(job.params or {}) if not creating else {}
        given = dict(fields["params"] or {})
        given.pop(command_policy.APPROVED_BY, None)  # only the service writes it
        for secret in kind.secret_params:
            if given.get(secret) in (None, "") and stored.get(secret) not in (None, ""):
                given[secret] = stored[secret]
        validated = check("params", lambda: registry.validate_params(kind, given))
        if validated is not None:
            values["params"] = crypto.seal_params(validated, kind.secret_params)
    if "priority" in fields:
        values["priority"] = check("priority", lambda: parse_priority(fields["priority"]))
    bounds = {
        "max_retries": (0, 20),
        "retry_delay_seconds": (1, None),
        "retry_max_delay_seconds": (1, None),
        "timeout_seconds": (1, config["ROOKERY_JOB_TIMEOUT_MAX_SECONDS"]),
        "max_parallel": (1, MAX_PARALLEL),
    }
    for field, (low, high) in bounds.items():
        if field in fields:
            values[field] = check(
                field,
                functools.partial(_optional_int, field, fields[field], minimum=low, maximum=high),
            )
    if "target_device_ids" in fields:
        devices = check("target_device_ids", lambda: _devices(fields["target_device_ids"] or []))
    if "credential_names" in fields:
        credentials = check("credentials", lambda: _credentials(fields["credential_names"] or []))
    if "labels" in fields:
        labels = fields["labels"] or []
        if isinstance(labels, str):
            labels = labels.split(",")
        cleaned = sorted({str(label).strip() for label in labels if str(label).strip()})
        if any(len(label) > 64 for label in cleaned):
            errors["labels"] = "A label has at most 64 characters."
            messages.append("A label has at most 64 characters.")
        values["labels"] = cleaned
    if "description" in fields:
        description = str(fields["description"] or "")
        if len(description) > 10_000:
            errors["description"] = "At most 10000 characters."
            messages.append("The description is too long.")
        values["description"] = description
    if errors:
        raise ValidationError(" ".join(dict.fromkeys(messages)), fields=errors)
    for field, value in values.items():
        setattr(job, field, value)
    if "no_overlap" in fields and fields["no_overlap"] is not None:
        job.no_overlap = bool(fields["no_overlap"])
    if "enabled" in fields and fields["enabled"] is not None:
        job.enabled = bool(fields["enabled"])
    if "target_tags" in fields:
        job.target_tags = _tags(fields["target_tags"] or [])
    if "target_device_ids" in fields:
        job.target_devices = devices
    if "credential_names" in fields:
        job.credentials = credentials


def trusted(actor: User | str | None) -> bool:
    """May ``actor`` send commands that are not read-only: an admin, or the server itself
    (a name: the ``rookery`` command, a schedule)."""
    return not isinstance(actor, User) or actor.has_role(Role.ADMIN)


def check_command_policy(job: Job, actor: User | str | None) -> None:
    """Forbidden unless ``job``'s commands are all read-only or ``actor`` is trusted."""
    if trusted(actor):
        return
    refused = command_policy.first_refused(
        command_policy.job_commands(job.job_type, job.params), rules=command_rules.current()
    )
    if refused is not None:
        command, problem = refused
        name = command_policy.COMMAND_PARAMS[job.job_type]
        raise Forbidden(
            f"Only an admin may save or start a job with the command {command!r}: {problem}",
            fields={name: f"{command!r}: {problem}"},
        )


def _apply_command_policy(job: Job, actor: User | str | None, changed: set[str]) -> None:
    """Refuse control characters in commands; let only admins save commands that are not
    read-only, and write who allowed them into the params the worker reads."""
    commands = command_policy.job_commands(job.job_type, job.params or {})
    if not commands:
        return
    name = command_policy.COMMAND_PARAMS[job.job_type]
    for command in commands:
        problem = command_policy.control_problem(command)
        if problem is not None:
            raise ValidationError(f"Invalid parameters: {name}", fields={name: problem})
    params = dict(job.params)
    if command_policy.first_refused(commands, rules=command_rules.current()) is None:
        params.pop(command_policy.APPROVED_BY, None)
    elif changed <= {"enabled"}:
        return  # switching a job on or off changes no command
    else:
        check_command_policy(job, actor)
        if "params" in changed or command_policy.APPROVED_BY not in params:
            who = actor.username if isinstance(actor, User) else (actor or "system")
            params[command_policy.APPROVED_BY] = who
    if params != job.params:
        job.params = params


def _credentials(names: list[str]) -> list[Credential]:
    wanted = sorted({str(n).strip() for n in names if str(n).strip()})
    found = list(db.session.scalars(select(Credential).where(Credential.name.in_(wanted))))
    missing = sorted(set(wanted) - {c.name for c in found})
    if missing:
        raise ValidationError(
            f"Unknown credentials: {', '.join(missing)}",
            fields={"credentials": f"Unknown: {', '.join(missing)}"},
        )
    return sorted(found, key=lambda c: (c.priority, c.name))


def _lock_dependency_graph() -> None:
    """Serialise changes of the job dependency graph until this transaction ends.

    Two saves that each add one edge (A on B, B on A) would both pass a cycle check
    that reads the graph before the other commits. Under this lock the second one
    reads the first one's edges. Taken before the save's first statement, so it never
    waits while holding a row lock a dependency's foreign key check needs.
    """
    db.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": DEPENDENCY_LOCK_KEY})


def _set_dependencies(job: Job, job_ids: list[int]) -> None:
    """Make ``job`` depend on ``job_ids``, refusing unknown jobs and cycles.

    The caller holds ``_lock_dependency_graph()``: the graph is read afresh under it.
    """
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
    if found:
        # The committed edges, not the session's relationships: those may have been
        # loaded before the lock, when a concurrent save had not committed yet.
        edges: dict[int, list[int]] = {}
        for job_id, depends_on_id in db.session.execute(
            select(job_dependencies.c.job_id, job_dependencies.c.depends_on_id)
        ):
            edges.setdefault(job_id, []).append(depends_on_id)
        for dependency in found:
            path = _path_to(dependency.id, job.id, edges)
            if path:
                names = {
                    job_id: name
                    for job_id, name in db.session.execute(
                        select(Job.id, Job.name).where(Job.id.in_(path))
                    )
                }
                chain = " -> ".join([job.name, *(names[i] for i in path)])
                raise ValidationError(
                    f"Dependency cycle: {chain}.",
                    fields={"depends_on": f"Would make a cycle: {chain}."},
                )
    job.depends_on = found


def _path_to(start: int, target: int, edges: dict[int, list[int]]) -> list[int]:
    """Job ids along a dependency path from ``start`` to ``target`` (empty: none)."""
    stack: list[list[int]] = [[start]]
    seen: set[int] = set()
    while stack:
        path = stack.pop()
        current = path[-1]
        if current == target:
            return path
        if current in seen:
            continue
        seen.add(current)
        stack.extend([*path, following] for following in edges.get(current, ()))
    return []


def set_dependencies(job: Job, job_ids: list[int], *, actor: User | str | None = None) -> Job:
    """Change what ``job`` depends on (a cycle is refused and nothing saved); commits."""
    try:
        _lock_dependency_graph()
        before = [d.id for d in job.depends_on]
        _set_dependencies(job, job_ids)
    except BaseException:
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


def device_jobs() -> list[Job]:
    """Every enabled job whose type works on devices, by name (a device page's "Run a
    job on this device")."""
    kinds = registry.current().types
    rows = db.session.scalars(select(Job).where(Job.enabled.is_(True)).order_by(Job.name))
    return [j for j in rows if j.job_type in kinds and kinds[j.job_type].targets == "devices"]


def backup_job_for(device: Device) -> Job | None:
    """The config backup job to back ``device`` up now: an enabled one that targets it
    (by name or tag), else any enabled one, else None."""
    candidates = list(
        db.session.scalars(
            select(Job)
            .where(Job.job_type == "config_backup", Job.enabled.is_(True))
            .order_by(Job.id)
        )
    )
    tag_ids = {t.id for t in device.tags}
    for job in candidates:
        if device in job.target_devices or tag_ids & {t.id for t in job.target_tags}:
            return job
    return candidates[0] if candidates else None
