"""Runs waiting for runs: the dependency graph of runs.

A dependant is released (queued) or cancelled by the state machine
(``lifecycle.release_dependants``) in the transaction that writes its dependency's
final status, so a crash can never leave it waiting for a run that already ended;
the reconciler releases any that a race left behind.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import JobRun, run_dependencies


def dependencies_of(session: Session, run_id: int) -> list[JobRun]:
    return list(
        session.scalars(
            select(JobRun)
            .join(run_dependencies, run_dependencies.c.depends_on_run_id == JobRun.id)
            .where(run_dependencies.c.run_id == run_id)
            .order_by(JobRun.id)
        )
    )
