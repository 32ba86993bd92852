"""The queue: procrastinate on Rookery's own PostgreSQL.

``queue_app`` is the one procrastinate App. Everything a worker needs is set on the
App itself, so ``worker.py``, ``rookery worker`` and ``procrastinate
--app=app.engine.queue.queue_app worker`` behave the same:

- the connection string is resolved lazily from the Flask app (DATABASE_URL or the
  embedded PostgreSQL), when the pool first connects;
- ``run_worker_async`` sizes the event loop's default thread pool to the worker's
  concurrency before any job starts (procrastinate runs sync tasks there, and
  Python's default pool is capped at min(32, cpu + 4) threads whatever
  ``--concurrency`` says) and applies the configured shutdown grace period;
- a task middleware runs every sync task inside the Flask app context and hands
  the thread's database session back afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import procrastinate
import psycopg
import psycopg_pool
from flask import Flask
from procrastinate import JobContext
from procrastinate import worker as procrastinate_worker
from sqlalchemy import text

logger = logging.getLogger(__name__)

DEFAULT_QUEUE = "default"
#: schedule ticks, the reconciler, retention and webhook deliveries: a queue of their
#: own, served by every worker with slots that runs cannot take
HOUSEKEEPING_QUEUE = "housekeeping"

#: slots of a worker process's housekeeping worker
HOUSEKEEPING_CONCURRENCY = 2

#: ask procrastinate to cancel a queue job (``abort``: also when it is running)
CANCEL_JOB_SQL = text("SELECT procrastinate_cancel_job_v1(:id, :abort, false)")

_flask_app: Flask | None = None
_flask_app_lock = threading.Lock()


def bind(app: Flask) -> None:
    """Make ``app`` the Flask app tasks run in and whose database the queue uses."""
    global _flask_app
    _flask_app = app


def flask_app() -> Flask:
    """The bound Flask app; created from the environment on first use in a bare worker."""
    global _flask_app
    with _flask_app_lock:
        if _flask_app is None:
            from app import create_app

            # Nothing bound it: procrastinate's own CLI (a worker) or a script. Neither
            # serves pages, so the app is built without them (less memory per worker).
            _flask_app = create_app(web=False)  # create_app binds itself
        return _flask_app


def conninfo() -> str:
    """libpq connection string of the bound app's database."""
    return flask_app().config["ROOKERY_PG_DSN"]


def run_in_app_context(call_next: Callable[[], Any], context: JobContext, worker: Any) -> Any:
    """Sync task middleware: run the task inside the Flask app context."""
    from app.extensions import db

    with flask_app().app_context():
        try:
            return call_next()
        finally:
            db.session.remove()


class RookeryWorker(procrastinate_worker.Worker):
    """procrastinate's worker, heartbeating through its graceful shutdown.

    procrastinate stops the heartbeat (with its other side tasks) as soon as a stop
    is asked, then waits up to the grace period for the jobs in flight: a grace
    longer than the stall window would make a busy, healthy worker look dead and
    its runs be taken by another. This worker keeps beating until it unregisters.
    """

    async def _shutdown(self, side_tasks: list[asyncio.Task[Any]]) -> None:
        keeper = asyncio.create_task(self._beat_until_gone(), name="grace_heartbeat")
        try:
            await super()._shutdown(side_tasks)
        finally:
            keeper.cancel()

    async def _beat_until_gone(self) -> None:
        while True:
            await asyncio.sleep(self.update_heartbeat_interval)
            if self.worker_id is None:
                return
            try:
                await self.app.job_manager.update_heartbeat(self.worker_id)
            except Exception as exc:  # the database is away: the next beat may land
                logger.warning("Heartbeat during shutdown failed: %s", exc)


class RookeryQueue(procrastinate.App):
    """procrastinate's App with Rookery's worker set-up applied wherever it starts."""

    def _worker(self, **kwargs: Any) -> procrastinate_worker.Worker:
        return RookeryWorker(app=self, **{**self.worker_defaults, **kwargs})

    async def run_worker_async(self, **kwargs: Any) -> None:
        """Run a worker: runs on the default queue, housekeeping beside them.

        A worker process that serves every queue (no ``queues`` given, the normal
        case) runs two procrastinate workers: one for runs with ``concurrency``
        slots, one for the housekeeping queue (schedule ticks, the reconciler,
        retention, webhook deliveries) with slots of its own, so a backlog of runs
        never delays recovery. Given ``queues`` (or ``wait=False``, the tests'
        drain), it runs the one worker asked for.
        """
        settings = flask_app().config
        kwargs.setdefault("concurrency", settings["ROOKERY_WORKER_CONCURRENCY"])
        kwargs.setdefault("shutdown_graceful_timeout", settings["ROOKERY_WORKER_GRACE_SECONDS"])
        stalled = settings["ROOKERY_WORKER_STALLED_SECONDS"]
        kwargs.setdefault("stalled_worker_timeout", stalled)
        kwargs.setdefault("update_heartbeat_interval", max(1.0, min(5.0, stalled / 4)))
        concurrency = int(kwargs["concurrency"])
        loop = asyncio.get_running_loop()
        # One thread per job slot, plus the housekeeping slots and a few for
        # procrastinate's own sync work.
        loop.set_default_executor(
            ThreadPoolExecutor(
                max_workers=concurrency + HOUSEKEEPING_CONCURRENCY + 4,
                thread_name_prefix="rookery-job",
            )
        )
        logger.info(
            "Worker starting: concurrency %d, grace period %ss",
            concurrency,
            kwargs["shutdown_graceful_timeout"],
        )
        self.perform_import_paths()
        if kwargs.get("queues") is not None or kwargs.get("wait") is False:
            workers = [self._worker(**kwargs)]
        else:
            name = kwargs.get("name") or procrastinate_worker.WORKER_NAME
            workers = [
                self._worker(**{**kwargs, "queues": [DEFAULT_QUEUE]}),
                self._worker(
                    **{
                        **kwargs,
                        "queues": [HOUSEKEEPING_QUEUE],
                        "concurrency": HOUSEKEEPING_CONCURRENCY,
                        "name": f"{name}-housekeeping",
                    }
                ),
            ]
        announcers = [
            asyncio.create_task(_announce(worker, worker.concurrency, role))
            for worker, role in zip(workers, ("runs", "housekeeping"), strict=False)
        ]
        tasks = [asyncio.create_task(worker.run()) for worker in workers]
        try:
            # One worker ending (its database connection lost) ends the other too:
            # the process's serve loop starts both again once PostgreSQL answers.
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for worker in workers:
                worker.stop()
            ended = await asyncio.gather(*tasks, return_exceptions=True)
            for announcer in announcers:
                announcer.cancel()
        for result in ended:
            if isinstance(result, Exception):
                raise result


async def _announce(worker: Any, concurrency: int, role: str) -> None:
    """Record what procrastinate's worker table lacks (name, host, pid, concurrency,
    role: "runs", or "housekeeping" for the process's second worker).

    Stored as maintenance_state "worker:<procrastinate worker id>", so statistics can
    show each live worker's concurrency; rows of workers that are gone are dropped.
    """
    import json
    import os
    import socket

    import psycopg

    for _ in range(600):
        if worker.worker_id is not None:
            break
        await asyncio.sleep(0.05)
    else:
        return
    data = {
        "name": worker.worker_name,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "concurrency": concurrency,
        "role": role,
    }
    try:
        async with await psycopg.AsyncConnection.connect(conninfo(), autocommit=True) as conn:
            await conn.execute(
                "INSERT INTO maintenance_state (key, last_run_at, data) "
                "VALUES (%s, now(), %s) ON CONFLICT (key) DO UPDATE "
                "SET last_run_at = now(), data = EXCLUDED.data",
                (f"worker:{worker.worker_id}", json.dumps(data)),
            )
            await conn.execute(
                "DELETE FROM maintenance_state WHERE key LIKE 'worker:%%' AND NOT EXISTS "
                "(SELECT 1 FROM procrastinate_workers w WHERE 'worker:' || w.id = key)"
            )
    except psycopg.Error as exc:  # statistics lose a detail; the worker goes on
        logger.warning("Could not record this worker's details: %s", exc)


async def _check_alive(connection: Any) -> None:
    """The worker pool's check of a connection it hands out: no round trip.

    procrastinate's default check runs a query on every checkout (two per job: the
    fetch and the status update). ``connection_is_alive`` notices a connection the
    server ended from its socket alone; the pool then discards it and takes another.
    """
    from app.database import connection_is_alive

    if not connection_is_alive(connection):
        raise psycopg.OperationalError("the server closed this connection")


def _worker_pool(**kwargs: Any) -> psycopg_pool.AsyncConnectionPool:
    kwargs["check"] = _check_alive
    return psycopg_pool.AsyncConnectionPool(**kwargs)


queue_app = RookeryQueue(
    connector=procrastinate.PsycopgConnector(
        conninfo=conninfo, max_size=20, pool_factory=_worker_pool
    ),
    import_paths=[
        "app.engine.queue",
        "app.engine.tasks",
        "app.engine.scheduler",
        "app.engine.retention",
        "app.webhooks",
    ],
    worker_defaults={
        "task_middleware": [run_in_app_context],
        "fetch_job_polling_interval": 2,
        "abort_job_polling_interval": 1,
    },
)


#: Defers on a connection the caller hands over (the web request's or the runner's
#: SQLAlchemy transaction), so the queue entry commits with the caller's rows. It is
#: never opened: procrastinate's async connector, open inside a worker, cannot take
#: an external sync connection.
deferrer_app = procrastinate.App(connector=procrastinate.SyncPsycopgConnector(conninfo=conninfo))


def defer_in_transaction(
    connection: Any, task_name: str, task_kwargs: dict[str, Any], **options: Any
) -> int:
    """Defer ``task_name`` on ``connection`` (a psycopg connection inside a transaction)."""
    return deferrer_app.configure_task(name=task_name, connection=connection, **options).defer(
        **task_kwargs
    )


@queue_app.task(name="rookery.ping", queue=DEFAULT_QUEUE, pass_context=True)
def ping(context: JobContext, delay: float = 0.0) -> dict[str, Any]:
    """Queue round trip: a worker takes it, waits ``delay`` s (abortable) and answers.

    ``rookery queue ping`` uses it to prove that some worker takes jobs; it writes a
    system log line, so it also proves the worker has the Flask app and database.
    """
    from app import logs

    deadline = time.monotonic() + max(0.0, float(delay))
    while time.monotonic() < deadline:
        if context.should_abort():
            raise procrastinate.exceptions.JobAborted("ping aborted")
        time.sleep(0.05)
    answer = {
        "worker": context.worker_name,
        "thread": threading.current_thread().name,
        "job_id": context.job.id,
    }
    logs.system("info", "queue", f"ping answered by {context.worker_name}", meta=answer)
    return answer
