"""Runs waiting for runs: queue them when their dependencies succeed, cancel otherwise.

``release_dependants`` is called in the transaction that writes a run's final status,
so a crash can never leave a dependant waiting for a run that already ended.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import events
from app.engine import queue
from app.models import JobRun, RunStatus, run_dependencies, utcnow

logger = logging.getLogger(__name__)

EXECUTE_TASK = "rookery.execute_run"


def dependencies_of(session: Session, run_id: int) -> list[JobRun]:
    return list(
        session.scalars(
            select(JobRun)
            .join(run_dependencies, run_dependencies.c.depends_on_run_id == JobRun.id)
            .where(run_dependencies.c.run_id == run_id)
            .order_by(JobRun.id)
        )
    )


def enqueue(session: Session, run: JobRun, message: str, *, actor: str | None = None) -> None:
    """Defer a run's execution on ``session``'s connection and mark it QUEUED (no commit)."""
    connection = session.connection().connection.driver_connection
    run.procrastinate_job_id = queue.defer_in_transaction(
        connection, EXECUTE_TASK, {"run_id": run.id}, priority=run.priority
    )
    run.status = RunStatus.QUEUED.value
    run.queued_at = utcnow()
    events.record(
        session, run, events.QUEUED, message, actor=actor, data={"priority": run.priority}
    )


def cancel_waiting(session: Session, run: JobRun, reason: str, *, actor: str | None = None) -> None:
    """End a run that never started as CANCELLED, and cancel what waited for it."""
    run.status = RunStatus.CANCELLED.value
    run.finished_at = utcnow()
    run.message = reason
    run.cancelled_by = actor or "dependencies"
    events.record(session, run, events.CANCELLED, reason, actor=actor)
    release_dependants(session, run)


def release_dependants(session: Session, run: JobRun) -> None:
    """After ``run`` ended: queue dependants whose runs all succeeded, cancel the others."""
    waiting = list(
        session.scalars(
            select(JobRun)
            .join(run_dependencies, run_dependencies.c.run_id == JobRun.id)
            .where(
                run_dependencies.c.depends_on_run_id == run.id,
                JobRun.status == RunStatus.WAITING.value,
            )
            .order_by(JobRun.id)
            .with_for_update(of=JobRun, key_share=True)
        )
    )
    for dependant in waiting:
        if run.status != RunStatus.COMPLETED_SUCCESS.value:
            cancel_waiting(
                session, dependant, f"Dependency run #{run.id} ({run.job_name}) ended {run.status}."
            )
            continue
        deps = dependencies_of(session, dependant.id)
        if all(d.status == RunStatus.COMPLETED_SUCCESS.value for d in deps):
            enqueue(session, dependant, "dependencies met: " + ", ".join(f"#{d.id}" for d in deps))
            logger.info("Run %s released: its dependencies succeeded", dependant.id)
