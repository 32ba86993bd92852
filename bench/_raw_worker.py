"""Baseline worker for bench/pipeline.py: bare procrastinate, one no-op task, no Rookery.

Run as ``python -c "import _raw_worker; _raw_worker.cli()" DSN CONCURRENCY`` with bench/
on sys.path (imported, not run as ``__main__``, where procrastinate warns about an
App it cannot import back). It is set up like Rookery's
worker wherever that is procrastinate's business, so the difference measured is
Rookery's own work per run: the same worker options (polling, heartbeat), a default
thread pool of concurrency + 4 threads for sync tasks, procrastinate's per-job log
lines at INFO in the same format. It has no Flask app, no middleware and no rows of
its own. SIGTERM stops it gracefully (procrastinate's own signal handlers).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from concurrent.futures import ThreadPoolExecutor

import procrastinate

TASK_NAME = "bench.noop"


def build_app(dsn: str) -> procrastinate.App:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn, max_size=20))

    @app.task(name=TASK_NAME)
    def noop() -> None:
        return None

    return app


async def main(dsn: str, concurrency: int) -> None:
    app = build_app(dsn)
    loop = asyncio.get_running_loop()
    loop.set_default_executor(
        ThreadPoolExecutor(max_workers=concurrency + 4, thread_name_prefix="bench-job")
    )
    async with app.open_async():
        await app.run_worker_async(
            concurrency=concurrency,
            update_heartbeat_interval=5,
            stalled_worker_timeout=30,
            fetch_job_polling_interval=2,
            abort_job_polling_interval=1,
            shutdown_graceful_timeout=30,
        )


def cli() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
    )
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("procrastinate").setLevel(logging.INFO)
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))


if __name__ == "__main__":
    cli()
