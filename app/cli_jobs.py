"""``rookery job …``, ``rookery run …`` and ``rookery schedule …``: jobs, their runs and logs.

``run logs --follow`` and ``job run --wait`` wait on PostgreSQL's LISTEN (the
``rookery_run`` and ``rookery_log`` channels the triggers announce on), not on a
polling loop: they wake when a line or a status change of their run is committed.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import IO, Any

import click
import psycopg
from flask import current_app
from flask.cli import AppGroup, with_appcontext
from psycopg import sql
from sqlalchemy import select

from app import crypto, live, present
from app.cli_output import duration, emit, fields, json_option, table, when
from app.errors import MAX_ID, DatabaseUnavailable, NotFound, ValidationError
from app.extensions import db
from app.models import (
    Device,
    Event,
    Job,
    JobLog,
    JobRun,
    RunStatus,
    Schedule,
    utcnow,
)
from app.present import iso
from app.services import jobs, runs, schedules
from app.services import logs as log_service

logger = logging.getLogger(__name__)

ACTOR = "cli"

#: how long a follower waits on LISTEN before it looks at the run anyway (a safety net)
SAFETY_RECHECK_SECONDS = 30.0


# ---------------------------------------------------------------------------- lookups


def find_job(ref: str) -> Job:
    """A job by name, else by id (``12`` or ``#12``)."""
    try:
        return jobs.get_job_by_name(ref)
    except NotFound:
        number = ref.strip().lstrip("#")
        if number.isdigit():
            return jobs.get_job(int(number))
        raise


def _first_line(text: str | None, width: int = 80) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


# ------------------------------------------------------------------------- as data


def schedule_dict(schedule: Schedule) -> dict[str, Any]:
    """A schedule as ``schedule list --json`` shows it."""
    return {
        "id": schedule.id,
        "job_id": schedule.job_id,
        "job": schedule.job.name,
        "kind": schedule.kind,
        "interval_minutes": schedule.interval_minutes,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "run_at": iso(schedule.run_at),
        "enabled": schedule.enabled,
        "description": schedules.describe(schedule),
        "next_fire_at": iso(schedule.next_fire_at),
        "last_fire_at": iso(schedule.last_fire_at),
    }


def job_dict(job: Job) -> dict[str, Any]:
    """A job definition with the field names of the API's POST /api/v1/jobs body."""
    return {
        "id": job.id,
        "name": job.name,
        "job_type": job.job_type,
        "description": job.description,
        "labels": list(job.labels or []),
        "params": crypto.redact_params(job.params or {}),
        "targets": {
            "tags": [t.name for t in job.target_tags],
            "devices": [{"id": d.id, "name": d.name} for d in job.target_devices],
        },
        "priority": job.priority,
        "max_retries": job.max_retries,
        "retry_backoff_seconds": job.retry_delay_seconds,
        "retry_backoff_max_seconds": job.retry_max_delay_seconds,
        "timeout_seconds": job.timeout_seconds,
        "credentials": [c.name for c in job.credentials],
        "depends_on": [d.id for d in job.depends_on],
        "allow_overlap": not job.no_overlap,
        "enabled": job.enabled,
        "schedules": [schedule_dict(s) for s in job.schedules],
        "created_at": iso(job.created_at),
    }


def run_detail(run: JobRun, events: list[Event] | None = None) -> dict[str, Any]:
    """Everything ``run show --json`` prints: the run, its device results and events."""
    if events is None:
        events = runs.run_events(run.id)
    return {
        **present.run_detail(run, runs.device_results(run.id)),
        "params": crypto.redact_params(run.params or {}),
        "events": [present.event(e) for e in events],
    }


def _progress(run: JobRun) -> str:
    return f"{run.progress_done}/{run.progress_total}" if run.progress_total else "-"


def _run_line(run: JobRun) -> str:
    return f"Run #{run.id}: {run.status}" + (f" - {run.message}" if run.message else "")


# --------------------------------------------------------------------- waiting on runs


class RunWatch:
    """A LISTEN connection that wakes when something of one run is announced.

    Payloads carry ids only (see ``app.live``): the watcher says *that* something
    happened; the caller reads the rows.
    """

    def __init__(self, run_id: int, channels: Iterable[str]) -> None:
        self.run_id = run_id
        self.channels = tuple(channels)
        self._conn: psycopg.Connection[Any] | None = None

    def __enter__(self) -> RunWatch:
        try:
            self._conn = psycopg.connect(current_app.config["ROOKERY_PG_DSN"], autocommit=True)
            for channel in self.channels:
                self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except psycopg.OperationalError as exc:
            self.__exit__()
            raise self._lost(exc) from None
        return self

    def _lost(self, exc: Exception) -> DatabaseUnavailable:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return DatabaseUnavailable(f"Lost PostgreSQL while watching run #{self.run_id}: {reason}")

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _ours(self, payload: str) -> bool:
        try:
            return json.loads(payload).get("run_id") == self.run_id
        except (ValueError, AttributeError):
            return False

    def wait(self, timeout: float) -> bool:
        """Block until this run is announced (True) or ``timeout`` seconds pass (False).

        A burst of announcements (a job writing many lines) is taken as one wake-up.
        """
        assert self._conn is not None, "use RunWatch as a context manager"
        heard = False
        try:
            for notify in self._conn.notifies(timeout=max(0.0, timeout)):
                if self._ours(notify.payload):
                    heard = True
                    break
            if heard:
                for _ in self._conn.notifies(timeout=0.05):
                    pass
        except psycopg.OperationalError as exc:
            raise self._lost(exc) from None
        return heard


def _status_now(run_id: int) -> RunStatus:
    status = RunStatus(runs.get_run(run_id).status)
    db.session.rollback()  # no transaction left idle while we wait
    return status


def wait_for_end(run_id: int, timeout: float) -> JobRun:
    """The run once it reached a final status, or as it is after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    with RunWatch(run_id, [live.RUN_CHANNEL]) as watch:
        while not _status_now(run_id).is_final:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            watch.wait(min(left, SAFETY_RECHECK_SECONDS))
    return runs.get_run(run_id)


def _log_line(row: JobLog, as_json: bool, names: dict[int, str]) -> str:
    if as_json:
        # The command runs on the server with the database's credentials: an admin.
        return json.dumps(log_service.as_dict(row, admin=True), default=str)
    device = ""
    if row.device_id:
        device = f" [{names.get(row.device_id) or f'device {row.device_id}'}]"
    return f"{when(row.at)} {row.level.upper():<8} {row.source}{device}: {row.message}"


def _learn_names(rows: list[JobLog], names: dict[int, str]) -> None:
    """Add the names of the devices of ``rows`` not in ``names`` yet (one query)."""
    wanted = {r.device_id for r in rows if r.device_id and r.device_id not in names}
    if wanted:
        rows_found = db.session.execute(select(Device.id, Device.name).where(Device.id.in_(wanted)))
        names.update({device_id: name for device_id, name in rows_found})


def print_logs(where: log_service.LogFilter, after_id: int, as_json: bool) -> int:
    """Print every line of ``where`` after ``after_id``, oldest first; the last id printed.

    Lines name their device (a deleted device's lines keep its id)."""
    names: dict[int, str] = {}
    while True:
        rows, more = log_service.query_logs(
            where, after_id=after_id, oldest_first=True, limit=log_service.MAX_PAGE
        )
        if not as_json:
            _learn_names(rows, names)
        for row in rows:
            click.echo(_log_line(row, as_json, names))
            after_id = row.id
        if more is None:
            return after_id


def follow_logs(where: log_service.LogFilter, as_json: bool) -> JobRun:
    """Print the run's lines as they are committed; return the run once it has ended."""
    assert where.run_id is not None
    last_id = 0
    with RunWatch(where.run_id, [live.LOG_CHANNEL, live.RUN_CHANNEL]) as watch:
        while True:
            # Status first, then the lines: lines committed with the final status are read.
            final = RunStatus(runs.get_run(where.run_id).status).is_final
            last_id = print_logs(where, last_id, as_json)
            db.session.rollback()
            if final:
                return runs.get_run(where.run_id)
            watch.wait(SAFETY_RECHECK_SECONDS)


# ------------------------------------------------------------------------------ jobs


@click.group("job", cls=AppGroup)
def job_group() -> None:
    """Saved jobs: list, show, create, run."""


@job_group.command("list")
@click.option("--type", "job_type", default=None, help="Only jobs of this job type.")
@click.option("--label", default=None, help="Only jobs with this label.")
@json_option
@with_appcontext
def job_list(job_type: str | None, label: str | None, as_json: bool) -> None:
    """List saved jobs by name."""
    rows = list(db.session.scalars(jobs.list_jobs(job_type=job_type, label=label)))
    data = [job_dict(j) for j in rows]

    def targets(j: dict[str, Any]) -> str:
        parts = [f"tag:{t}" for t in j["targets"]["tags"]]
        parts += [d["name"] for d in j["targets"]["devices"]]
        return ",".join(parts) or "-"

    human = table(
        ["ID", "NAME", "TYPE", "PRIORITY", "ENABLED", "SCHEDULES", "TARGETS"],
        [
            [
                j["id"],
                j["name"],
                j["job_type"],
                present.priority_name(j["priority"]),
                "yes" if j["enabled"] else "no",
                len(j["schedules"]),
                targets(j),
            ]
            for j in data
        ],
        empty="No jobs.",
    )
    emit(data, as_json, human)


@job_group.command("show")
@click.argument("job")
@json_option
@with_appcontext
def job_show(job: str, as_json: bool) -> None:
    """Show the job JOB (name or id): definition, schedules, latest runs."""
    found = find_job(job)
    data = job_dict(found)
    latest, _ = runs.list_runs(job_id=found.id, limit=5)
    data["latest_runs"] = [present.run(r) for r in latest]
    if as_json:
        emit(data, True, "")
        return
    params = ", ".join(f"{k}={v}" for k, v in data["params"].items())
    human = fields(
        [
            ("Job", f"#{found.id} {found.name}"),
            ("Type", found.job_type),
            ("Description", found.description),
            ("Labels", ", ".join(data["labels"])),
            ("Params", params),
            ("Target tags", ", ".join(data["targets"]["tags"])),
            ("Target devices", ", ".join(d["name"] for d in data["targets"]["devices"])),
            ("Credentials", ", ".join(data["credentials"])),
            ("Priority", present.priority_name(found.priority)),
            ("Max retries", found.max_retries),
            ("Retry backoff", found.retry_delay_seconds),
            ("Retry backoff max", found.retry_max_delay_seconds),
            ("Timeout", found.timeout_seconds),
            ("Depends on", ", ".join(f"#{d.id} {d.name}" for d in found.depends_on)),
            ("Allow overlap", "yes" if data["allow_overlap"] else "no"),
            ("Enabled", "yes" if found.enabled else "no"),
        ]
    )
    if found.schedules:
        human += "\n\nSchedules:\n" + table(
            ["ID", "WHEN", "ENABLED", "NEXT FIRE"],
            [
                [s.id, schedules.describe(s), "yes" if s.enabled else "no", when(s.next_fire_at)]
                for s in found.schedules
            ],
            empty="",
        )
    if latest:
        human += "\n\nLatest runs:\n" + table(
            ["RUN", "STATUS", "CREATED", "DURATION"],
            [[r.id, r.status, when(r.created_at), duration(r.duration_ms)] for r in latest],
            empty="",
        )
    click.echo(human)


#: the body of the API's POST /api/v1/jobs, which --from-file takes
SPEC_FIELDS = (
    "name",
    "job_type",
    "params",
    "targets",
    "priority",
    "max_retries",
    "retry_backoff_seconds",
    "retry_backoff_max_seconds",
    "timeout_seconds",
    "credentials",
    "description",
    "labels",
    "depends_on",
    "allow_overlap",
    "schedule",
)
_SCHEDULE_KEYS = {
    "interval": ("minutes", "interval_minutes"),
    "cron": ("expression", "cron"),
    "once": ("at", "run_at"),
}


def read_yaml(stream: IO[str], fields: Iterable[str]) -> dict[str, Any]:
    """A file (YAML or JSON: JSON is YAML) holding one mapping of ``fields``; a clear
    error otherwise."""
    import yaml  # here, not at the top: `rookery worker` imports this module

    known = tuple(fields)
    label = getattr(stream, "name", "the file")
    try:
        spec = yaml.safe_load(stream.read())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ValidationError(f"{label} is not valid YAML or JSON{where}.") from None
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise ValidationError(f"{label} must hold one mapping of fields.")
    unknown = sorted(str(k) for k in spec if k not in known)
    if unknown:
        raise ValidationError(
            f"Unknown field(s) in {label}: {', '.join(unknown)} (fields: {', '.join(known)})."
        )
    return spec


def read_spec(stream: IO[str]) -> dict[str, Any]:
    """A job file (YAML or JSON) as a mapping of the API's job fields."""
    return read_yaml(stream, SPEC_FIELDS)


def _string_list(field: str, value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list):
        raise ValidationError(f"{field} must be a list.", fields={field: "A list."})
    return value


def ids_by_name_or_id(field: str, refs: list[Any], model: type[Device] | type[Job]) -> list[int]:
    """Names or ids to ids (a name is looked up first; an unknown one is an error)."""
    ids: list[int] = []
    for ref in refs:
        if isinstance(ref, bool) or not isinstance(ref, (int, str)):
            raise ValidationError(f"{field}: {ref!r} is neither a name nor an id.")
        if isinstance(ref, int):
            ids.append(ref)
            continue
        found = db.session.scalar(select(model.id).where(model.name == ref.strip()))
        if found is not None:
            ids.append(found)
        elif ref.strip().isdigit():
            ids.append(int(ref.strip()))
        else:
            what = "device" if model is Device else "job"
            raise ValidationError(f"{field}: no {what} named {ref!r}.", fields={field: "Unknown."})
    return ids


def schedule_args(value: Any) -> dict[str, Any] | None:
    """The ``schedule`` field as create_schedule's keywords (validated), or None."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationError(
            'schedule must be null or a mapping such as {"kind": "interval", "minutes": 60}.'
        )
    kind = str(value.get("kind") or "").strip().lower()
    if kind not in _SCHEDULE_KEYS:
        raise ValidationError("schedule.kind must be interval, cron or once.")
    primary, alias = _SCHEDULE_KEYS[kind]
    unknown = sorted(set(value) - {"kind", "timezone", "enabled", primary, alias})
    if unknown:
        raise ValidationError(
            f"Unknown schedule field(s) for kind {kind}: {', '.join(map(str, unknown))}."
        )
    timing = value.get(primary, value.get(alias))
    args: dict[str, Any] = {"kind": kind, "timezone": value.get("timezone") or "UTC"}
    args[{"interval": "interval_minutes", "cron": "cron", "once": "run_at"}[kind]] = timing
    # Checked before the job is created, so a bad schedule leaves nothing behind.
    schedules.validate(
        kind,
        args.get("interval_minutes"),
        args.get("cron"),
        args["timezone"],
        args.get("run_at"),
        utcnow(),
    )
    if "enabled" in value:
        args["enabled"] = bool(value["enabled"])
    return args


def create_args(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """An API-shaped job body as (``jobs.create_job`` keywords, schedule keywords or None)."""
    for required in ("name", "job_type"):
        if not spec.get(required):
            raise ValidationError(f"A job needs {required}.", fields={required: "Required."})
    args: dict[str, Any] = {"name": spec["name"], "job_type": spec["job_type"], "actor": ACTOR}
    if "params" in spec:
        if spec["params"] is not None and not isinstance(spec["params"], dict):
            raise ValidationError("params must be a mapping.", fields={"params": "A mapping."})
        args["params"] = spec["params"] or {}
    targets = spec.get("targets")
    if targets is not None:
        if not isinstance(targets, dict) or set(targets) - {"tags", "devices"}:
            raise ValidationError('targets is a mapping of "tags" and "devices".')
        if "tags" in targets:
            args["target_tags"] = [str(t) for t in _string_list("targets.tags", targets["tags"])]
        if "devices" in targets:
            refs = _string_list("targets.devices", targets["devices"])
            args["target_device_ids"] = ids_by_name_or_id("targets.devices", refs, Device)
    renamed = {
        "priority": "priority",
        "max_retries": "max_retries",
        "retry_backoff_seconds": "retry_delay_seconds",
        "retry_backoff_max_seconds": "retry_max_delay_seconds",
        "timeout_seconds": "timeout_seconds",
        "description": "description",
        "labels": "labels",
    }
    for field, keyword in renamed.items():
        if field in spec:
            args[keyword] = spec[field]
    if "credentials" in spec:
        args["credential_names"] = _string_list("credentials", spec["credentials"])
    if "depends_on" in spec:
        refs = _string_list("depends_on", spec["depends_on"])
        args["depends_on_job_ids"] = ids_by_name_or_id("depends_on", refs, Job)
    if spec.get("allow_overlap") is not None:
        if not isinstance(spec["allow_overlap"], bool):
            raise ValidationError("allow_overlap is true or false.")
        args["no_overlap"] = not spec["allow_overlap"]
    return args, schedule_args(spec.get("schedule"))


def _param_pairs(pairs: tuple[str, ...]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE.", param_hint="--param")
        key = key.strip()
        if key in params:  # repeated: a list parameter
            previous = params[key]
            params[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            params[key] = value
    return params


@job_group.command("create")
@click.argument("name", required=False)
@click.option("--from-file", "from_file", type=click.File("r"), help="A job.yaml or job.json.")
@click.option("--type", "job_type", help="The job type (see the Jobs page or the API).")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A parameter. A list: repeat it, or one item per line (a comma stays in its item).",
)
@click.option("--tag", "tags", multiple=True, help="Target devices with this tag.")
@click.option("--device", "devices", multiple=True, help="Target this device (name or id).")
@click.option("--priority", help="low, normal, high, critical or 0-100.")
@click.option("--max-retries", type=int)
@click.option("--retry-backoff", "retry_backoff", type=int, help="Seconds before a retry.")
@click.option("--retry-backoff-max", "retry_backoff_max", type=int, help="Cap on that delay.")
@click.option("--timeout", "timeout", type=int, help="Seconds a run may take.")
@click.option("--credential", "credentials", multiple=True, help="Use this credential (name).")
@click.option("--description")
@click.option("--label", "labels", multiple=True)
@click.option("--depends-on", "depends_on", multiple=True, help="A job (name or id) to run first.")
@click.option("--allow-overlap/--no-overlap", "allow_overlap", default=None)
@click.option("--every", "every", type=int, metavar="MINUTES", help="Schedule: every N minutes.")
@click.option("--cron", "cron", metavar="EXPRESSION", help="Schedule: a cron expression.")
@click.option("--at", "at", metavar="TIME", help="Schedule: once, at this ISO date and time.")
@click.option("--timezone", "timezone", help="Time zone of --cron / --at (default UTC).")
@json_option
@with_appcontext
def job_create(
    name: str | None,
    from_file: IO[str] | None,
    job_type: str | None,
    params: tuple[str, ...],
    tags: tuple[str, ...],
    devices: tuple[str, ...],
    priority: str | None,
    max_retries: int | None,
    retry_backoff: int | None,
    retry_backoff_max: int | None,
    timeout: int | None,
    credentials: tuple[str, ...],
    description: str | None,
    labels: tuple[str, ...],
    depends_on: tuple[str, ...],
    allow_overlap: bool | None,
    every: int | None,
    cron: str | None,
    at: str | None,
    timezone: str | None,
    as_json: bool,
) -> None:
    """Create a job from options and/or --from-file (the API's job fields; options win)."""
    spec = read_spec(from_file) if from_file is not None else {}
    given = {
        "name": name,
        "job_type": job_type,
        "priority": priority,
        "max_retries": max_retries,
        "retry_backoff_seconds": retry_backoff,
        "retry_backoff_max_seconds": retry_backoff_max,
        "timeout_seconds": timeout,
        "description": description,
        "allow_overlap": allow_overlap,
    }
    spec.update({k: v for k, v in given.items() if v is not None})
    if params:
        spec["params"] = {**(spec.get("params") or {}), **_param_pairs(params)}
    if tags or devices:
        spec["targets"] = dict(spec.get("targets") or {})
        if tags:
            spec["targets"]["tags"] = list(tags)
        if devices:
            spec["targets"]["devices"] = list(devices)
    for field, values in (("credentials", credentials), ("labels", labels)):
        if values:
            spec[field] = list(values)
    if depends_on:
        spec["depends_on"] = list(depends_on)
    timings = [o for o, v in (("--every", every), ("--cron", cron), ("--at", at)) if v]
    if len(timings) > 1:
        raise click.UsageError(
            f"Give one of --every, --cron and --at, not {' and '.join(timings)}."
        )
    if every:
        spec["schedule"] = {"kind": "interval", "minutes": every}
    elif cron:
        spec["schedule"] = {"kind": "cron", "expression": cron}
    elif at:
        spec["schedule"] = {"kind": "once", "at": at}
    if timezone:
        if not isinstance(spec.get("schedule"), dict):
            raise click.UsageError("--timezone goes with --every, --cron or --at.")
        spec["schedule"] = {**spec["schedule"], "timezone": timezone}
    if not spec.get("name") or not spec.get("job_type"):
        raise click.UsageError("Give the job's NAME and --type (or both in --from-file).")
    args, schedule = create_args(spec)
    job = jobs.create_job(**args)
    created = None
    if schedule is not None:
        try:
            created = schedules.create_schedule(job, actor=ACTOR, **schedule)
        except BaseException:
            db.session.rollback()
            jobs.delete_job(job.id, actor=ACTOR)  # nothing half-created
            raise
    data = job_dict(job)
    human = f"Created job #{job.id} {job.name} ({job.job_type})."
    if created is not None:
        human += f" Schedule #{created.id}: {schedules.describe(created)}."
    emit(data, as_json, human)


@job_group.command("run")
@click.argument("job")
@click.option("--now", is_flag=True, help="Execute here, synchronously (run_now), not queued.")
@click.option(
    "--wait",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Wait up to SECONDS for the end (exit 1 if the run fails or is still going).",
)
@json_option
@with_appcontext
def job_run(job: str, now: bool, wait: float | None, as_json: bool) -> None:
    """Start a run of JOB (name or id): queued for a worker, or --now in this process."""
    if now:
        if wait:
            raise click.UsageError("--now already waits; --wait is for queued runs.")
        try:
            target: Job | str = find_job(job)
        except NotFound:
            target = job  # run_now also takes a registered job type
        message = runs.run_now(target)
        emit({"message": message}, as_json, message)
        return
    run = runs.start_run(find_job(job), triggered_by="cli", actor=ACTOR)
    if wait:
        run = wait_for_end(run.id, wait)
    data = {"run_id": run.id, "status": run.status, "message": run.message}
    emit(data, as_json, _run_line(run))
    if wait and not run.run_status.is_final:
        click.echo(f"Error: run #{run.id} is still {run.status} after {wait:g}s.", err=True)
        sys.exit(1)
    if wait and run.run_status.is_failure:
        sys.exit(1)


# ------------------------------------------------------------------------------ runs
# The subcommands of ``rookery run`` (which, alone, starts web and worker: see cli.py).


def _parse_statuses(values: tuple[str, ...]) -> list[str]:
    return [s.strip().upper() for v in values for s in v.split(",") if s.strip()]


@click.command("list")
@click.option("--status", "statuses", multiple=True, help="Only these statuses (repeat or a,b).")
@click.option("--job", "job", default=None, help="Only runs of this job (name or id).")
@click.option("--type", "job_type", default=None, help="Only runs of this job type.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, runs.MAX_PAGE))
@click.option(
    "--before",
    "before",
    type=click.IntRange(1, MAX_ID),
    default=None,
    help="Runs older than this id.",
)
@json_option
@with_appcontext
def run_list(
    statuses: tuple[str, ...],
    job: str | None,
    job_type: str | None,
    limit: int,
    before: int | None,
    as_json: bool,
) -> None:
    """List runs, newest first."""
    job_id = find_job(job).id if job else None
    rows, more = runs.list_runs(
        status=_parse_statuses(statuses) or None,
        job_id=job_id,
        job_type=job_type,
        before_id=before,
        limit=limit,
    )
    human = table(
        ["ID", "JOB", "TYPE", "STATUS", "PROGRESS", "ATTEMPT", "CREATED", "DURATION", "BY"],
        [
            [
                r.id,
                r.job_name,
                r.job_type,
                r.status,
                _progress(r),
                f"{r.attempt}/{r.max_attempts}",
                when(r.created_at),
                duration(r.duration_ms),
                r.triggered_by,
            ]
            for r in rows
        ],
        empty="No runs.",
    )
    if more is not None:
        human += f"\n(more: --before {more})"
    emit([present.run(r) for r in rows], as_json, human)


@click.command("show")
@click.argument("run_id", type=int)
@click.option("--device", "device_name", help="Only this device's result and output.")
@click.option("--no-output", is_flag=True, help="Leave the devices' outputs out.")
@json_option
@with_appcontext
def run_show(run_id: int, device_name: str | None, no_output: bool, as_json: bool) -> None:
    """Show a run: status, progress, timings, per-device results, outputs and events."""
    run = runs.get_run(run_id)
    events = runs.run_events(run.id)
    data = run_detail(run, events)
    if device_name is not None:
        data["results"] = [r for r in data["results"] if r["device"] == device_name]
        if not data["results"]:
            raise click.ClickException(f"Run #{run.id} has no result for device {device_name!r}.")
    if as_json:
        emit(data, True, "")
        return
    human = fields(
        [
            ("Run", f"#{run.id}"),
            ("Job", f"#{run.job_id} {run.job_name}" if run.job_id else run.job_name),
            ("Type", run.job_type),
            ("Status", run.status),
            ("Attempt", f"{run.attempt}/{run.max_attempts}"),
            ("Progress", _progress(run)),
            ("Triggered by", run.triggered_by),
            ("Created", when(run.created_at)),
            ("Started", when(run.started_at)),
            ("Finished", when(run.finished_at)),
            ("Duration", duration(run.duration_ms)),
            ("Worker", run.worker_name),
            ("Message", run.message),
            ("Error", run.error),
        ]
    )
    if data["results"]:
        human += "\n\nDevices:\n" + table(
            ["DEVICE", "STATUS", "DURATION", "MESSAGE"],
            [
                [r["device"], r["status"], duration(r["duration_ms"]), _first_line(r["message"])]
                for r in data["results"]
            ],
            empty="",
        )
    if not no_output:
        human += "".join(_output_block(r) for r in data["results"])
    if data["events"] and device_name is None:
        human += "\n\nEvents:\n" + table(
            ["TIME", "TYPE", "MESSAGE"],
            [[when(e.at), e.type, _first_line(e.message)] for e in events],
            empty="",
        )
    click.echo(human)


def _output_block(result: dict[str, Any]) -> str:
    """A device's output as ``run show`` prints it: a header, then the text as stored;
    parsed records as one JSON line per record."""
    parsed = (result.get("data") or {}).get("parsed") or {}
    if not result.get("output") and not parsed:
        return ""
    text = f"\n\n--- {result['device']} ---\n{(result.get('output') or '').rstrip()}"
    for command, records in parsed.items():
        text += f"\n[parsed: {command}]\n" + "\n".join(
            json.dumps(record, sort_keys=True) for record in records
        )
    return text


@click.command("cancel")
@click.argument("run_id", type=int)
@json_option
@with_appcontext
def run_cancel(run_id: int, as_json: bool) -> None:
    """Cancel a run: at once if it has not started, within seconds if it is running."""
    run = runs.cancel_run(run_id, actor=ACTOR)
    human = (
        f"Run #{run.id}: cancel requested (it stops within seconds)."
        if run.status == RunStatus.RUNNING.value
        else f"Run #{run.id}: {run.status}."
    )
    emit(present.run(run), as_json, human)


@click.command("relaunch")
@click.argument("run_id", type=int)
@click.option("--failed-only", is_flag=True, help="Only the devices that failed.")
@json_option
@with_appcontext
def run_relaunch(run_id: int, failed_only: bool, as_json: bool) -> None:
    """Start a new run like a finished one (all its devices, or --failed-only)."""
    run = runs.relaunch_run(run_id, failed_only=failed_only, actor=ACTOR)
    emit(present.run(run), as_json, f"Relaunched run #{run_id} as run #{run.id}: {run.status}.")


@click.command("logs")
@click.argument("run_id", type=int)
@click.option("--follow", "-f", is_flag=True, help="Print lines as they come; end with the run.")
@click.option("--level", default=None, help="Only this level and above (debug … critical).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (JSON Lines).")
@with_appcontext
def run_logs(run_id: int, follow: bool, level: str | None, as_json: bool) -> None:
    """Print a run's log lines, oldest first; --follow until the run ends.

    With --follow the exit code is 1 when the run ended in a failure.
    """
    runs.get_run(run_id)  # "No run #N." before anything else
    where = log_service.LogFilter(run_id=run_id, level=level)
    log_service.levels_from(level)  # an unknown level is refused up front
    if not follow:
        print_logs(where, 0, as_json)
        return
    run = follow_logs(where, as_json)
    if not as_json:
        click.echo(f"-- {_run_line(run)}")
    if run.run_status.is_failure:
        sys.exit(1)


RUN_COMMANDS = (run_list, run_show, run_cancel, run_relaunch, run_logs)


# ------------------------------------------------------------------------- schedules


@click.group("schedule", cls=AppGroup)
def schedule_group() -> None:
    """When jobs run by themselves."""


@schedule_group.command("list")
@click.option("--job", "job", default=None, help="Only this job's schedules (name or id).")
@json_option
@with_appcontext
def schedule_list(job: str | None, as_json: bool) -> None:
    """List schedules by job name."""
    job_id = find_job(job).id if job else None
    rows = list(db.session.scalars(schedules.list_schedules(job_id)))
    data = [schedule_dict(s) for s in rows]
    human = table(
        ["ID", "JOB", "WHEN", "ENABLED", "NEXT FIRE", "LAST FIRE"],
        [
            [
                s.id,
                s.job.name,
                schedules.describe(s),
                "yes" if s.enabled else "no",
                when(s.next_fire_at),
                when(s.last_fire_at),
            ]
            for s in rows
        ],
        empty="No schedules.",
    )
    emit(data, as_json, human)
