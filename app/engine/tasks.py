"""The worker's tasks: procrastinate entry points into the runner and the reconciler."""

from __future__ import annotations

import logging
from datetime import timedelta

from procrastinate import JobContext
from procrastinate.exceptions import JobAborted
from procrastinate.job_context import AbortReason

from app.engine import reconciler, runner
from app.engine.queue import HOUSEKEEPING_QUEUE, queue_app
from app.models import RunStatus

logger = logging.getLogger(__name__)


class _OneLineAborts(logging.Filter):
    """A cancelled run is logged in one line: procrastinate would add the traceback of
    the JobAborted that marks its queue job aborted (40 lines, for no error at all)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "action", None) == "job_aborted":
            record.exc_info = None
            record.exc_text = None
        return True


logging.getLogger("procrastinate.worker").addFilter(_OneLineAborts())


def _abort_reason(context: JobContext):
    def reason() -> str | None:
        if not context.should_abort():
            return None
        if context.abort_reason() == AbortReason.SHUTDOWN:
            return runner.SHUTDOWN
        return runner.CANCELLED

    return reason


@queue_app.task(name="rookery.execute_run", pass_context=True)
def execute_run(context: JobContext, run_id: int) -> str | None:
    """Execute the next attempt of a run.

    Every attempt has a queue job of its own (the state machine defers the next one
    with the status it writes), so procrastinate never retries this task: the task
    ends like the attempt: failed when it failed (retried or not), aborted when the
    run was cancelled, succeeded otherwise.
    """
    outcome = runner.execute(
        run_id,
        queue_job_id=context.job.id,
        worker_name=context.worker_name,
        abort_reason=_abort_reason(context),
    )
    if outcome is not None and outcome.exception is not None:
        raise outcome.exception  # the attempt is written; its queue job ends failed
    if outcome is not None and outcome.status is RunStatus.CANCELLED:
        raise JobAborted(f"run {run_id} cancelled")
    return outcome.status.value if outcome else None


@queue_app.periodic(cron="* * * * * */15", periodic_id="reconciler")
@queue_app.task(
    name="rookery.reconcile", queue=HOUSEKEEPING_QUEUE, queueing_lock="rookery.reconcile"
)
def reconcile(timestamp: int) -> dict[str, int]:
    """Every 15 s: make every non-final run agree with its queue job and worker."""
    from flask import current_app

    settings = current_app.config
    repairs = reconciler.reconcile(
        stalled_seconds=settings["ROOKERY_WORKER_STALLED_SECONDS"],
        max_wait=timedelta(minutes=settings["ROOKERY_DEPENDENCY_MAX_WAIT_MINUTES"]),
        longest_timeout=settings["ROOKERY_JOB_TIMEOUT_MAX_SECONDS"],
    )
    return dict(repairs)
