"""The worker's tasks: procrastinate entry points into the runner."""

from __future__ import annotations

import logging

from procrastinate import JobContext
from procrastinate.jobs import Job as QueueJob
from procrastinate.retry import BaseRetryStrategy, RetryDecision

from app import runner
from app.queue import queue_app

logger = logging.getLogger(__name__)


class RunRetryStrategy(BaseRetryStrategy):
    """Retry exactly when the runner decided to (it knows the job's policy and attempt)."""

    def get_retry_decision(
        self, *, exception: BaseException, job: QueueJob
    ) -> RetryDecision | None:
        if isinstance(exception, runner.RetryScheduled):
            return RetryDecision(retry_at=exception.retry_at)
        return None


@queue_app.task(name="rookery.execute_run", pass_context=True, retry=RunRetryStrategy())
def execute_run(context: JobContext, run_id: int) -> str | None:
    """Execute one attempt of a run (procrastinate's attempts count the retries)."""
    outcome = runner.execute(
        run_id,
        attempt=context.job.attempts + 1,
        worker_name=context.worker_name,
        should_abort=context.should_abort,
    )
    return outcome.status.value if outcome else None
