"""Integration test helpers: drain the queue in-process, end runs, read runs afresh, fill URL
rules."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, text
from werkzeug.routing import Rule

from app.demo_lab import DeviceLab, LabDevice
from app.engine import queue, reconciler
from app.extensions import db
from app.models import ACTIVE_STATUSES, Event, JobRun
from app.services import credentials, inventory, jobs, runs


def drain(app, concurrency: int = 1) -> None:
    """Run a procrastinate worker in this process until nothing is due."""
    queue.bind(app)
    queue.queue_app.run_worker(
        wait=False, concurrency=concurrency, listen_notify=False, install_signal_handlers=False
    )


def cancel_active_runs(*, stalled_seconds: int = 30) -> list[int]:
    """End a dataset's active runs the way production does; returns the ids cancelled.

    Each is cancelled through the service, as an operator would: one that never started
    ends at once; a RUNNING one is then ended by the reconciler, which finds its worker
    gone. A run still active after that is a run stuck forever, so the test fails.
    """
    db.session.rollback()
    active = [status.value for status in ACTIVE_STATUSES]
    ids = list(db.session.scalars(select(JobRun.id).where(JobRun.status.in_(active))))
    for run_id in ids:
        if reload(run_id).status in active:  # a dependant ends with its dependency
            runs.cancel_run(run_id, actor="test")
    reconciler.reconcile(stalled_seconds=stalled_seconds)
    db.session.expire_all()
    left = db.session.execute(
        select(JobRun.id, JobRun.status).where(JobRun.status.in_(active))
    ).all()
    assert not left, f"runs still active after cancel and reconcile: {left}"
    return sorted(ids)


def reload(run_id: int) -> JobRun:
    db.session.expire_all()
    run = db.session.get(JobRun, run_id)
    assert run is not None
    return run


def event_types(run_id: int) -> list[str]:
    return list(
        db.session.scalars(select(Event.type).where(Event.run_id == run_id).order_by(Event.id))
    )


def queue_rows(run_id: int) -> list[tuple]:
    return db.session.execute(
        text(
            "SELECT status, priority, attempts FROM procrastinate_jobs WHERE args->>'run_id' = :rid"
        ),
        {"rid": str(run_id)},
    ).all()


def make_job(name: str = "w", job_type: str = "writer", **kwargs):
    return jobs.create_job(name=name, job_type=job_type, actor="test", **kwargs)


def wait_for(predicate: Any, timeout: float = 30, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def add_queue_job(
    status: str, events: list[tuple[str, Any]], *, priority: int = 0, scheduled_at=None
) -> int:
    """A procrastinate job with exactly these (type, at) events."""
    job_id = db.session.execute(
        text(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, status, priority, scheduled_at)"
            " VALUES ('default', 'rookery.execute_run', CAST(:status AS procrastinate_job_status),"
            " :priority, :scheduled_at) RETURNING id"
        ),
        {"status": status, "priority": priority, "scheduled_at": scheduled_at},
    ).scalar_one()
    db.session.execute(text("DELETE FROM procrastinate_events WHERE job_id = :id"), {"id": job_id})
    for type_, at in events:
        db.session.execute(
            text(
                "INSERT INTO procrastinate_events (job_id, type, at)"
                " VALUES (:id, CAST(:type AS procrastinate_job_event_type), :at)"
            ),
            {"id": job_id, "type": type_, "at": at},
        )
    return job_id


def fill(rule: Rule, known: dict[str, str], odd: str | None) -> str:
    """The rule's path with its variables filled: known ids, or ``odd`` for every int."""

    def value(match: re.Match) -> str:
        converter, name = match.group(1) or "default", match.group(2)
        if converter.startswith("int"):
            return odd if odd is not None else known.get(name, "1")
        if converter.startswith("any"):
            return re.findall(r"'([^']+)'", converter)[0]
        return "deadbeef" if odd is None else "..%2F..%2Fetc%2Fpasswd"

    return re.sub(r"<(?:([^:>]+):)?([^>]+)>", value, rule.rule)


def load_lab_devices(devices: Iterable[LabDevice], lab: DeviceLab) -> None:
    """The lab's devices in the inventory, tagged ``lab``, each with its own credential."""
    for device in devices:
        inventory.create_device(
            name=device.name,
            host="127.0.0.1",
            port=lab.port_of(device.name),
            platform=device.platform,
            tags=["lab", f"dev-{device.name}"],
            actor="test",
        )
        credentials.create_credential(
            f"cred-{device.name}",
            device.username,
            device.password,
            enable_secret=device.enable_secret,
            priority=100,
            tags=[f"dev-{device.name}"],
            actor="test",
        )
