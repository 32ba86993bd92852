"""The worker's tasks: procrastinate entry points into the runner and the run-control chores."""

from __future__ import annotations

import logging
from datetime import timedelta

from procrastinate import JobContext
from procrastinate.exceptions import JobAborted
from procrastinate.job_context import AbortReason
from procrastinate.jobs import Job as QueueJob
from procrastinate.retry import BaseRetryStrategy, RetryDecision

from app.engine import control, runner
from app.engine.queue import queue_app
from app.models import RunStatus

logger = logging.getLogger(__name__)


class RunRetryStrategy(BaseRetryStrategy):
    """Retry exactly when the runner decided to (it knows the job's policy and attempt)."""

    def get_retry_decision(
        self, *, exception: BaseException, job: QueueJob
    ) -> RetryDecision | None:
        if isinstance(exception, runner.RetryScheduled):
            return RetryDecision(retry_at=exception.retry_at)
        return None


def _abort_reason(context: JobContext):
    def reason() -> str | None:
        if not context.should_abort():
            return None
        if context.abort_reason() == AbortReason.SHUTDOWN:
            return runner.SHUTDOWN
        return runner.CANCELLED

    return reason


@queue_app.task(name="rookery.execute_run", pass_context=True, retry=RunRetryStrategy())
def execute_run(context: JobContext, run_id: int) -> str | None:
    """Execute one attempt of a run (procrastinate's attempts count the retries)."""
    outcome = runner.execute(
        run_id,
        attempt=context.job.attempts + 1,
        worker_name=context.worker_name,
        abort_reason=_abort_reason(context),
    )
    if outcome is not None and outcome.status is RunStatus.CANCELLED:
        raise JobAborted(f"run {run_id} cancelled")
    return outcome.status.value if outcome else None


@queue_app.periodic(cron="* * * * *", periodic_id="control-tick")
@queue_app.task(name="rookery.control_tick", queueing_lock="rookery.control_tick")
def control_tick(timestamp: int) -> dict[str, int]:
    """Every minute: recover runs of dead workers, cancel runs that waited too long."""
    from flask import current_app

    limit = timedelta(minutes=current_app.config["ROOKERY_DEPENDENCY_MAX_WAIT_MINUTES"])
    return {
        "stalled": len(control.recover_stalled_runs()),
        "expired": len(control.expire_waiting_runs(limit)),
    }
