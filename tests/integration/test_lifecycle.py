"""The run state machine and the reconciler: every run ends, exactly once.

In-process against a real PostgreSQL: the divergences a dead worker, a lost
connection or a badly timed cancel leave behind are written as they would be found,
then repaired. The fault drills (tests/drills) cause them for real.
"""

from __future__ import annotations

import pytest
from psycopg.errors import CheckViolation
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from app.engine import fence, lifecycle, reconciler
from app.extensions import db
from app.job_api import JobLogger
from app.models import Event, JobRun, RunStatus
from app.services import runs
from tests.integration.helpers import (
    drain,
    event_types,
    make_job,
    queue_rows,
    reload,
    wait_for,
)


def _queue_job_status(run: JobRun) -> str | None:
    return db.session.scalar(
        text("SELECT status::text FROM procrastinate_jobs WHERE id = :id"),
        {"id": run.procrastinate_job_id},
    )


def _set(run_id: int, sql: str) -> None:
    db.session.execute(text(f"UPDATE job_runs SET {sql} WHERE id = :id"), {"id": run_id})
    db.session.commit()


def _fail_queue_job(run: JobRun) -> None:
    """What procrastinate did to an aborted job of a dead worker: failed."""
    db.session.execute(
        text("UPDATE procrastinate_jobs SET status = 'failed' WHERE id = :id"),
        {"id": run.procrastinate_job_id},
    )
    db.session.commit()


def _drop_queue_job(run: JobRun) -> None:
    """The run's queue entry is gone (deleted by hand, lost with a restored database)."""
    db.session.execute(
        text("DELETE FROM procrastinate_jobs WHERE id = :id"), {"id": run.procrastinate_job_id}
    )
    db.session.commit()


# ------------------------------------------------------------------- fencing


def test_only_the_queue_job_the_run_names_can_claim_it(ctx):
    run = runs.start_run(make_job(name="a"), triggered_by="test")
    assert lifecycle.claim(run.id, run.procrastinate_job_id + 1000, "stale") is None
    assert reload(run.id).status == "QUEUED"
    claimed = lifecycle.claim(run.id, run.procrastinate_job_id, "w1")
    assert claimed is not None and claimed.attempt == 1
    assert lifecycle.claim(run.id, run.procrastinate_job_id, "w2") is None, "RUNNING: no claim"
    db.session.rollback()
    _set(run.id, "status = 'COMPLETED_SUCCESS'")


def test_a_final_status_never_changes_and_attempts_never_go_back(ctx):
    run = runs.start_run(make_job(name="a"), triggered_by="test")
    drain(ctx)
    assert reload(run.id).status == "COMPLETED_SUCCESS"
    with pytest.raises(IntegrityError) as caught:
        _set(run.id, "status = 'QUEUED'")
    assert isinstance(caught.value.orig, CheckViolation)
    assert "already ended COMPLETED_SUCCESS" in str(caught.value.orig)
    db.session.rollback()
    with pytest.raises(IntegrityError, match="cannot go back"):
        _set(run.id, "attempt = 0")
    db.session.rollback()


def test_a_superseded_attempt_writes_no_log_line_and_no_progress(ctx):
    run = runs.start_run(make_job(name="a"), triggered_by="test")
    lifecycle.claim(run.id, run.procrastinate_job_id, "w1")
    _set(run.id, "attempt = 2")  # the reconciler gave the run to attempt 2
    logger = JobLogger(run.id, "writer")
    with fence.holding(run.id, 1):
        with pytest.raises(fence.AttemptSuperseded):
            logger.info("late line of attempt 1")
        with pytest.raises(fence.AttemptSuperseded):
            logger.progress(1, 2)
    with fence.holding(run.id, 2):
        logger.info("line of attempt 2")
        logger.progress(1, 2)
    lines = db.session.scalars(
        text("SELECT message FROM job_logs WHERE run_id = :id ORDER BY id"), {"id": run.id}
    ).all()
    assert "late line of attempt 1" not in lines and "line of attempt 2" in lines
    assert (reload(run.id).progress_done, reload(run.id).progress_total) == (1, 2)
    _set(run.id, "status = 'FAILED_UNEXPECTED'")


def test_an_exception_outside_the_units_ends_the_attempt(ctx):
    """A secret this worker cannot read (another encryption key): FAILED, not RUNNING."""
    job = make_job(name="secretive", params={"token": "s3cret"})
    run = runs.start_run(job, triggered_by="test")
    _set(run.id, """params = jsonb_set(params, '{token}', '{"$secret": "not-a-fernet-token"}')""")
    drain(ctx)
    run = reload(run.id)
    assert run.status == "FAILED_UNEXPECTED", run.error
    assert "SecretUnreadable" in run.error or "secret" in run.error.lower()
    assert queue_rows(run.id)[0][0] == "failed"
    assert event_types(run.id).count("job.started") == 1


def drain_until_final(app, run_id: int) -> JobRun:
    def ended() -> JobRun | None:
        drain(app)
        run = reload(run_id)
        return run if run.run_status.is_final else None

    return wait_for(ended, timeout=30, what=f"run {run_id} to end")


def test_a_failed_attempt_defers_a_new_queue_job_with_the_retry(ctx):
    job = make_job(name="flaky", params={"mode": "raise"}, max_retries=1, retry_delay_seconds=1)
    run = runs.start_run(job, triggered_by="test")
    first_job = run.procrastinate_job_id
    run = drain_until_final(ctx, run.id)
    assert run.procrastinate_job_id != first_job, "each attempt has a queue job of its own"
    assert run.status == "FAILED_UNEXPECTED" and run.attempt == 2
    assert [s for s, *_ in queue_rows(run.id)] == ["failed", "failed"]
    assert event_types(run.id).count("job.started") == 2


# ---------------------------------------------------------------- reconciler


def test_cancel_then_dead_worker_ends_cancelled(ctx):
    """Issue 12.1: the run was SCHEDULED for a retry, its queue job failed, a cancel
    was asked: it ends CANCELLED instead of waiting forever."""
    run = runs.start_run(make_job(name="victim"), triggered_by="test")
    _set(run.id, "status = 'SCHEDULED', started_at = now(), cancel_requested_at = now(), "
         "cancelled_by = 'bob'")  # fmt: skip
    _fail_queue_job(run)
    repairs = reconciler.reconcile(stalled_seconds=30)
    assert repairs["queued_cancelled"] == 1
    run = reload(run.id)
    assert (run.status, run.message) == ("CANCELLED", "Cancelled by bob.")
    assert event_types(run.id)[-1] == "job.cancelled"
    # and the job can run again (a no-overlap job is not blocked by it)
    again = runs.start_run(db.session.get(type(run.job), run.job_id), triggered_by="test")
    drain(ctx)
    assert reload(again.id).status == "COMPLETED_SUCCESS"


def test_running_run_whose_queue_job_failed_gets_a_new_attempt(ctx):
    """Issue 12.2/12.3: the worker's writes failed, procrastinate marked the job failed,
    the run stayed RUNNING: the reconciler gives it a new attempt, which completes."""
    job = make_job(name="lost", max_retries=1, retry_delay_seconds=1)
    run = runs.start_run(job, triggered_by="test")
    lifecycle.claim(run.id, run.procrastinate_job_id, "w-lost")
    _fail_queue_job(run)
    repairs = reconciler.reconcile(stalled_seconds=30)
    assert repairs["running_retry"] == 1
    run = reload(run.id)
    assert run.status == "SCHEDULED" and "ended failed" in run.error
    assert _queue_job_status(run) == "todo"
    run = drain_until_final(ctx, run.id)
    assert (run.status, run.attempt, run.error) == ("COMPLETED_SUCCESS", 2, None)
    assert event_types(run.id).count("job.started") == 2


def test_running_run_with_no_attempt_left_fails_with_the_reason(ctx):
    run = runs.start_run(make_job(name="lost"), triggered_by="test")
    lifecycle.claim(run.id, run.procrastinate_job_id, "w-lost")
    _drop_queue_job(run)
    assert reconciler.reconcile(stalled_seconds=30)["running_failed"] == 1
    run = reload(run.id)
    assert run.status == "FAILED_UNEXPECTED"
    assert run.error == "Attempt 1 was lost: its queue entry is gone"


def test_a_cancelled_running_run_of_a_dead_attempt_ends_cancelled(ctx):
    run = runs.start_run(make_job(name="lost", max_retries=3), triggered_by="test")
    lifecycle.claim(run.id, run.procrastinate_job_id, "w-lost")
    runs.cancel_run(run.id, actor="carol")
    _fail_queue_job(run)
    assert reconciler.reconcile(stalled_seconds=30)["running_cancelled"] == 1
    assert reload(run.id).status == "CANCELLED"


def test_queued_run_whose_queue_job_is_gone_is_queued_again(ctx):
    run = runs.start_run(make_job(name="orphan"), triggered_by="test")
    _drop_queue_job(run)
    assert reconciler.reconcile(stalled_seconds=30)["queued_requeued"] == 1
    drain(ctx)
    run = reload(run.id)
    assert (run.status, run.attempt) == ("COMPLETED_SUCCESS", 1)


def test_waiting_run_whose_dependency_ended_is_released(ctx):
    first = runs.start_run(make_job(name="first", no_overlap=False), triggered_by="test")
    second = runs.start_run(
        make_job(name="second", no_overlap=False), triggered_by="test", depends_on_runs=[first.id]
    )
    # the dependency ended without releasing it (a race the state machine closes; the
    # reconciler is the net)
    _set(first.id, "status = 'COMPLETED_SUCCESS', finished_at = now()")
    assert reconciler.reconcile(stalled_seconds=30)["waiting_released"] == 1
    assert reload(second.id).status == "QUEUED"
    drain(ctx)
    assert reload(second.id).status == "COMPLETED_SUCCESS"


def test_run_now_run_whose_process_died_times_out(ctx):
    job = make_job(name="quick", timeout_seconds=5)
    row = JobRun(
        job_id=job.id,
        job_name="quick",
        job_type="writer",
        params={},
        status="RUNNING",
        timeout_seconds=5,
        triggered_by="run_now",
        signal_id="x",
    )
    db.session.add(row)
    db.session.commit()
    _set(row.id, "attempt_started_at = now() - interval '1 hour', started_at = now()")
    assert reconciler.reconcile(stalled_seconds=30)["running_overdue"] == 1
    assert reload(row.id).status == "TIMEOUT"


def test_repairs_are_counted_for_metrics(ctx):
    run = runs.start_run(make_job(name="orphan"), triggered_by="test")
    _drop_queue_job(run)
    reconciler.reconcile(stalled_seconds=30)
    reconciler.reconcile(stalled_seconds=30)  # nothing more to repair
    state = reconciler.state()
    assert state["repairs"] == {"queued_requeued": 1} and state["last_run_at"] is not None
    from app import metrics

    text_ = metrics.render().decode()
    assert 'rookery_reconciler_repairs_total{repair="queued_requeued"} 1.0' in text_
    assert "rookery_reconciler_last_run_timestamp_seconds" in text_
    drain(ctx)


def test_no_module_but_the_state_machine_writes_a_runs_status():
    """Every change of a run's status goes through app/engine/lifecycle.py."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "app"
    writes = re.compile(
        r"(\b\w*run\w*\.status\s*=[^=])|(UPDATE\s+job_runs\s+SET((?!WHERE).)*?\bstatus\s*=)",
        re.IGNORECASE | re.DOTALL,
    )
    offenders = [
        str(path.relative_to(root.parent))
        for path in root.rglob("*.py")
        if path.name != "lifecycle.py" and writes.search(path.read_text())
    ]
    assert offenders == [], f"these write a run's status outside lifecycle.py: {offenders}"


def test_second_cancel_is_a_clear_conflict(ctx):
    from app.errors import Conflict

    run = runs.start_run(make_job(name="long"), triggered_by="test")
    lifecycle.claim(run.id, run.procrastinate_job_id, "w1")
    runs.cancel_run(run.id, actor="bob")
    with pytest.raises(Conflict, match="already being cancelled"):
        runs.cancel_run(run.id, actor="bob")
    _fail_queue_job(reload(run.id))
    reconciler.reconcile(stalled_seconds=30)
    assert reload(run.id).status == "CANCELLED"
    assert (
        db.session.scalar(
            select(Event.actor).where(Event.run_id == run.id).order_by(Event.id.desc())
        )
        == "bob"
    )
    assert RunStatus.CANCELLED.is_final
