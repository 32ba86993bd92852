#!/usr/bin/env python
"""Pipeline benchmark: Rookery's start_run and worker against bare procrastinate.

    python bench/pipeline.py [--runs N] [--concurrency C] [--rounds R] [--timeout S]

Sets up its own database (embedded PostgreSQL in a temporary folder when
DATABASE_URL is unset; else a database ``rookery_bench_<pid>`` on that server, dropped
at the end), migrates it, then measures, in one process and on that one database:

(a) raw procrastinate, the baseline
    - defer rate: N no-op jobs deferred with ``app.engine.queue.defer_in_transaction`` (the
      very call start_run makes), each in its own transaction on one connection;
    - execution rate: a worker process (bench/_raw_worker.py: bare procrastinate, the
      same concurrency, worker options and log level as Rookery's worker) runs them,
      timed from the moment it registers in procrastinate_workers until all are
      'succeeded'.
(b) Rookery
    - start_run rate: N runs of a saved ``noop`` job (seconds=0, no_overlap=False),
      each ``start_run`` its own transaction and session, the job in hand (loaded
      before the clock starts, as the scheduler holds the jobs a tick fires);
    - shown beside it, not a figure: N more as a web request does it, loading the
      job first (a transaction's worth of work of its own);
    - end-to-end rate: ``python -m app.cli worker --concurrency C`` runs them, timed
      from its registration until all are COMPLETED_SUCCESS in job_runs.

Each of the four rates is measured R times (rounds alternate which side goes first)
and the best of each is kept: background load only ever slows a phase down. The
figures are ratios Rookery / baseline measured in the same run, so they mean the same
on a fast, slow or busy machine. Prints a table, then one JSON line per figure.
Exit code 0 when the benchmark ran (a missed target is ``"pass": false``), 1 when it
could not (setup failed, a worker died, runs did not finish in time).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

BENCH = "pipeline"
RAW_TASK = "bench.noop"
BENCH_DIR = Path(__file__).resolve().parent
#: None: the figure is reported, with no target to pass or miss
TARGETS: dict[str, float | None] = {
    "start_run_vs_raw_defer": None,
    "end_to_end_vs_raw_execution": 0.5,
}
DEFAULT_RUNS = 400
DEFAULT_CONCURRENCY = 8
DEFAULT_ROUNDS = 2
WARMUP = 10  # untimed first jobs / runs of each phase (executed with the others)
COUNTED = 5  # of those, the last ones whose SQL statements are counted
POLL_SECONDS = 0.025


class BenchError(Exception):
    """The benchmark itself failed (not a missed target)."""


def say(message: str = "") -> None:
    print(message, flush=True)


# ------------------------------------------------------------------------- database


def _swap_db(uri: str, name: str) -> str:
    scheme, rest = uri.split("://", 1)
    authority, _, tail = rest.partition("/")
    _, query_sep, query = tail.partition("?")
    return f"{scheme}://{authority}/{name}{query_sep}{query}"


@dataclass
class BenchDatabase:
    """Where the bench database lives, and how to get rid of it."""

    uri: str
    kind: str  # "embedded" or "external"
    pgdata: Path | None = None
    admin_uri: str | None = None
    name: str | None = None

    def drop(self) -> None:
        if self.kind == "external" and self.admin_uri and self.name:
            with psycopg.connect(self.admin_uri, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(self.name)
                    )
                )
        if self.kind == "embedded" and self.pgdata is not None:
            from app import embedded_pg

            embedded_pg.stop(self.pgdata)


def open_database(tmp: Path) -> BenchDatabase:
    external = os.environ.get("DATABASE_URL")
    if not external:
        from app import embedded_pg

        pgdata = tmp / "pgdata"
        uri = embedded_pg.server_uri(pgdata, database="rookery_bench")
        return BenchDatabase(uri=uri, kind="embedded", pgdata=pgdata)
    from app.database import resolve

    admin = resolve(external, tmp)[1]
    name = f"rookery_bench_{os.getpid()}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return BenchDatabase(uri=_swap_db(admin, name), kind="external", admin_uri=admin, name=name)


def clean_queue(dsn: str) -> None:
    """Empty procrastinate's tables (events go with their jobs) and tidy them up."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM procrastinate_jobs")
        conn.execute("VACUUM procrastinate_jobs, procrastinate_events")


def analyze_queue(dsn: str) -> None:
    """Give the planner the queue's real size before a worker drains it.

    A VACUUM of the empty table leaves reltuples = 0; planned for an empty table,
    procrastinate's fetch query becomes a nested-loop anti-join over every queued job
    (about 20 ms per fetch at 400 queued jobs instead of 0.1 ms), which would time the
    planner, not the pipeline. Both workers start on freshly analyzed statistics.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE procrastinate_jobs, procrastinate_events")


def app_log_to_file(path: Path) -> None:
    """Send Rookery's console log (one INFO line per start_run) to a file, not the table.

    ``create_app`` adds its console handler only when no handler marked ``_rookery``
    is there yet, so this one, installed first, takes its place: same format, same
    levels, so start_run still pays for its log line.
    """
    handler = logging.StreamHandler(path.open("a"))
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
    )
    handler._rookery = True  # type: ignore[attr-defined]
    logging.getLogger().addHandler(handler)


# -------------------------------------------------------------------------- workers


@dataclass
class Worker:
    label: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: Any
    spawned: float

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


@dataclass
class Workers:
    """The worker processes this benchmark started; each is stopped by its own pid."""

    running: list[Worker] = field(default_factory=list)

    def start(self, label: str, cmd: list[str], env: dict[str, str], log_path: Path) -> Worker:
        log_file = log_path.open("ab")
        process = subprocess.Popen(
            cmd,
            env=env,
            cwd=str(REPO),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C reaches the bench only; it stops them
        )
        worker = Worker(label, process, log_path, log_file, time.monotonic())
        self.running.append(worker)
        return worker

    def stop(self, worker: Worker) -> None:
        """SIGTERM (graceful), then SIGKILL if it has not ended within 20 s."""
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
            try:
                worker.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
        worker.log_file.close()
        if worker in self.running:
            self.running.remove(worker)

    def stop_all(self) -> None:
        for worker in list(self.running):
            self.stop(worker)


def wait_registered(
    conn: psycopg.Connection, worker: Worker, after_id: int, timeout: float
) -> float:
    """Monotonic time at which ``worker`` registered in procrastinate_workers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if conn.execute(
            "SELECT 1 FROM procrastinate_workers WHERE id > %s LIMIT 1", (after_id,)
        ).fetchone():
            return time.monotonic()
        if worker.process.poll() is not None:
            raise BenchError(
                f"the {worker.label} worker exited with code {worker.process.returncode} "
                f"before taking jobs:\n{worker.tail()}"
            )
        time.sleep(0.01)
    raise BenchError(
        f"the {worker.label} worker did not start within {timeout:g}s:\n{worker.tail()}"
    )


def wait_done(
    worker: Worker, count: Callable[[], tuple[int, int]], expected: int, timeout: float
) -> float:
    """Monotonic time at which ``count()`` reported ``expected`` done; fails fast."""
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        done, failed = count()
        if failed:
            raise BenchError(f"{failed} {worker.label} job(s) failed:\n{worker.tail()}")
        if done >= expected:
            return time.monotonic()
        if worker.process.poll() is not None:
            raise BenchError(
                f"the {worker.label} worker exited with code {worker.process.returncode} "
                f"after {done} of {expected} jobs:\n{worker.tail()}"
            )
        time.sleep(POLL_SECONDS)
    raise BenchError(
        f"the {worker.label} worker finished {done} of {expected} jobs in {timeout:g}s:\n"
        f"{worker.tail()}"
    )


@dataclass
class Execution:
    jobs: int
    startup_seconds: float  # spawn -> registered
    seconds: float  # registered -> all done

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds


def execute_with_worker(
    workers: Workers,
    dsn: str,
    label: str,
    cmd: list[str],
    env: dict[str, str],
    log_path: Path,
    count: Callable[[psycopg.Connection], tuple[int, int]],
    expected: int,
    timeout: float,
) -> Execution:
    """Start a worker on the queued jobs, time it until ``expected`` are done, stop it."""
    analyze_queue(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        after = conn.execute("SELECT coalesce(max(id), 0) FROM procrastinate_workers").fetchone()[0]
        worker = workers.start(label, cmd, env, log_path)
        ready = wait_registered(conn, worker, after, timeout)
        done = wait_done(worker, lambda: count(conn), expected, timeout)
    workers.stop(worker)
    return Execution(expected, ready - worker.spawned, done - ready)


# ----------------------------------------------------------------------- the phases


@contextmanager
def counting_statements(engine: Any) -> Iterator[list[int]]:
    """Count SQL statements sent through ``engine`` (for the table; never while timing)."""
    from sqlalchemy import event

    counter = [0]

    def before(*_args: Any) -> None:
        counter[0] += 1

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield counter
    finally:
        event.remove(engine, "before_cursor_execute", before)


def raw_defer(dsn: str, runs: int) -> float:
    """Seconds to defer ``runs`` no-op jobs, one transaction each (after a warm-up).

    Queues ``executed_jobs(runs)`` in all, as many as Rookery's side starts, so both
    workers then execute the same number: the rest are deferred after the clock stops.
    """
    from app.engine import queue

    with psycopg.connect(dsn) as conn:
        for _ in range(WARMUP):
            queue.defer_in_transaction(conn, RAW_TASK, {})
            conn.commit()
        started = time.perf_counter()
        for _ in range(runs):
            queue.defer_in_transaction(conn, RAW_TASK, {})
            conn.commit()
        seconds = time.perf_counter() - started
        for _ in range(executed_jobs(runs) - runs - WARMUP):
            queue.defer_in_transaction(conn, RAW_TASK, {})
            conn.commit()
        return seconds


def executed_jobs(runs: int) -> int:
    """Jobs each worker executes: what Rookery's enqueue phase starts (warm-ups included)."""
    return 2 * runs + 2 * (WARMUP - COUNTED) + COUNTED


def create_bench_job() -> int:
    from app.extensions import db
    from app.services import jobs

    job_id = jobs.create_job(
        name="bench-noop",
        job_type="noop",
        params={"seconds": 0},
        no_overlap=False,
        actor="bench",
    ).id
    db.session.remove()
    return job_id


def rookery_start_runs(job_id: int, runs: int) -> tuple[float, float, float]:
    """(seconds for ``runs`` start_run calls with the job in hand, seconds for ``runs``
    web-request-like starts that load the job first, SQLAlchemy statements per start_run).
    """
    from app.extensions import db
    from app.models import Job
    from app.services import runs as run_service

    # The job in hand, as the scheduler holds the jobs a tick fires: loaded once,
    # outside the clock; each start attaches it to a fresh session without a query.
    held = db.session.get(Job, job_id)
    assert held is not None
    _ = held.depends_on  # start_run looks at it: loaded now, not per run
    db.session.expunge(held)

    def start_held() -> None:
        run_service.start_run(
            db.session.merge(held, load=False), triggered_by="bench", actor="bench"
        )
        db.session.remove()

    def start_loading() -> None:
        # As a web request does: load the job, start the run, hand the session back.
        run_service.start_run(db.session.get(Job, job_id), triggered_by="bench", actor="bench")
        db.session.remove()

    for _ in range(WARMUP - COUNTED):
        start_held()
        start_loading()
    with counting_statements(db.engine) as statements:
        for _ in range(COUNTED):
            start_held()
    timed = []
    for start in (start_held, start_loading):
        started = time.perf_counter()
        for _ in range(runs):
            start()
        timed.append(time.perf_counter() - started)
    return timed[0], timed[1], statements[0] / COUNTED


def count_raw(conn: psycopg.Connection) -> tuple[int, int]:
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE status = 'succeeded'),"
        " count(*) FILTER (WHERE status IN ('failed', 'aborted', 'cancelled'))"
        " FROM procrastinate_jobs WHERE task_name = %s",
        (RAW_TASK,),
    ).fetchone()
    return row[0], row[1]


def count_rookery(after_run_id: int) -> Callable[[psycopg.Connection], tuple[int, int]]:
    def count(conn: psycopg.Connection) -> tuple[int, int]:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'COMPLETED_SUCCESS'),"
            " count(*) FILTER (WHERE status LIKE 'FAILED%%' OR status = 'COMPLETED_FAILURE')"
            " FROM job_runs WHERE id > %s",
            (after_run_id,),
        ).fetchone()
        return row[0], row[1]

    return count


def last_run_id(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT coalesce(max(id), 0) FROM job_runs").fetchone()[0]


def rookery_rows_per_run(dsn: str) -> dict[str, float]:
    """Rows Rookery wrote per run (events, audit entries), read after the phases."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        runs, events, audit = conn.execute(
            "SELECT (SELECT count(*) FROM job_runs), (SELECT count(*) FROM events),"
            " (SELECT count(*) FROM audit_log WHERE action = 'run')"
        ).fetchone()
    return {"events": events / max(runs, 1), "audit": audit / max(runs, 1)}


@dataclass
class Round:
    raw_defer_rate: float = 0.0
    raw_exec: Execution | None = None
    start_run_rate: float = 0.0
    load_and_start_rate: float = 0.0
    rookery_exec: Execution | None = None
    statements: float = 0.0


@dataclass
class Bench:
    """One benchmark's set-up: the database, the saved job, the worker commands."""

    args: argparse.Namespace
    tmp: Path
    dsn: str
    job_id: int
    workers: Workers

    def raw_side(self, result: Round) -> None:
        runs = self.args.runs
        clean_queue(self.dsn)
        say("    raw procrastinate: defer ...")
        result.raw_defer_rate = runs / raw_defer(self.dsn, runs)
        say("    raw procrastinate: execute with a worker process ...")
        code = (
            f"import sys; sys.path.insert(0, {str(BENCH_DIR)!r}); "
            "import _raw_worker; _raw_worker.cli()"
        )
        result.raw_exec = execute_with_worker(
            self.workers,
            self.dsn,
            "raw procrastinate",
            [sys.executable, "-c", code, self.dsn, str(self.args.concurrency)],
            dict(os.environ),
            self.tmp / "raw-worker.log",
            count_raw,
            executed_jobs(runs),
            self.args.timeout,
        )
        clean_queue(self.dsn)

    def rookery_side(self, result: Round) -> None:
        runs = self.args.runs
        clean_queue(self.dsn)
        after = last_run_id(self.dsn)
        say("    Rookery: start_run ...")
        held, loading, result.statements = rookery_start_runs(self.job_id, runs)
        result.start_run_rate = runs / held
        result.load_and_start_rate = runs / loading
        say("    Rookery: execute with `rookery worker` ...")
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": self.dsn,
                "ROOKERY_INSTANCE": str(self.tmp / "instance"),
                "ROOKERY_EVENT_LOGGING": "true",
            }
        )
        result.rookery_exec = execute_with_worker(
            self.workers,
            self.dsn,
            "rookery",
            [
                sys.executable,
                "-m",
                "app.cli",
                "worker",
                "--concurrency",
                str(self.args.concurrency),
            ],
            env,
            self.tmp / "rookery-worker.log",
            count_rookery(after),
            executed_jobs(runs),
            self.args.timeout,
        )
        clean_queue(self.dsn)


# --------------------------------------------------------------------------- report


def figure(name: str, value: float) -> dict[str, Any]:
    rounded = round(value, 3)
    target = TARGETS[name]
    return {
        "bench": BENCH,
        "figure": name,
        "value": rounded,
        "target": target,
        "pass": target is None or rounded >= target,
    }


def target_cell(name: str) -> str:
    target = TARGETS[name]
    return "-" if target is None else f"{target:.2f}"


def print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        say(
            "  "
            + "  ".join(
                cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                for i, cell in enumerate(row)
            ).rstrip()
        )
        if n == 0:
            say("  " + "  ".join("-" * w for w in widths))


def report(rounds: list[Round], rows: dict[str, float]) -> list[dict[str, Any]]:
    def best_exec(side: str) -> Execution:
        return max((getattr(r, side) for r in rounds), key=lambda e: e.rate)

    raw_defer_rate = max(r.raw_defer_rate for r in rounds)
    start_run_rate = max(r.start_run_rate for r in rounds)
    load_and_start_rate = max(r.load_and_start_rate for r in rounds)
    raw_exec, rookery_exec = best_exec("raw_exec"), best_exec("rookery_exec")
    defer_ratio = start_run_rate / raw_defer_rate
    exec_ratio = rookery_exec.rate / raw_exec.rate
    figures = [
        figure("start_run_vs_raw_defer", defer_ratio),
        figure("end_to_end_vs_raw_execution", exec_ratio),
    ]

    def verdict(item: dict[str, Any]) -> str:
        if item["target"] is None:
            return ""
        return "pass" if item["pass"] else "MISS"

    say()
    say(f"  best of {len(rounds)} round(s) for each rate:")
    print_table(
        [
            ("", "raw procrastinate", "Rookery", "ratio", "target", ""),
            (
                "enqueue: defer / start_run, per s",
                f"{raw_defer_rate:.1f}",
                f"{start_run_rate:.1f}",
                f"{defer_ratio:.3f}",
                target_cell("start_run_vs_raw_defer"),
                verdict(figures[0]),
            ),
            (
                "  ms per enqueue",
                f"{1000 / raw_defer_rate:.2f}",
                f"{1000 / start_run_rate:.2f}",
                "",
                "",
                "",
            ),
            (
                "  load the job + start_run, per s",
                "",
                f"{load_and_start_rate:.1f}",
                f"{load_and_start_rate / raw_defer_rate:.3f}",
                "",
                "",
            ),
            (
                "execution by a worker, per s",
                f"{raw_exec.rate:.1f}",
                f"{rookery_exec.rate:.1f}",
                f"{exec_ratio:.3f}",
                target_cell("end_to_end_vs_raw_execution"),
                verdict(figures[1]),
            ),
            ("  jobs executed", str(raw_exec.jobs), str(rookery_exec.jobs), "", "", ""),
            (
                "  s registered -> all done",
                f"{raw_exec.seconds:.2f}",
                f"{rookery_exec.seconds:.2f}",
                "",
                "",
                "",
            ),
            (
                "  s worker spawn -> registered",
                f"{raw_exec.startup_seconds:.2f}",
                f"{rookery_exec.startup_seconds:.2f}",
                "",
                "",
                "",
            ),
        ]
    )
    if len(rounds) > 1:
        say(
            "  each round (ratios): "
            + "; ".join(
                f"#{n} enqueue {r.start_run_rate / r.raw_defer_rate:.3f}, "
                f"execution {r.rookery_exec.rate / r.raw_exec.rate:.3f}"
                for n, r in enumerate(rounds, 1)
            )
        )
    say(
        f"  Rookery per run: {rounds[-1].statements:.0f} SQL statement(s) through SQLAlchemy "
        "(counted on warm-up runs, untimed), and procrastinate's defer on the same "
        "connection, then COMMIT;"
    )
    say(
        f"  rows written per run: {rows['events']:.1f} events (announced by a trigger), "
        f"{rows['audit']:.1f} audit entries"
    )
    say()
    return figures


# ----------------------------------------------------------------------------- main

cleanup: list[Callable[[], None]] = []


def _dispose(app: Any) -> None:
    from app.extensions import db

    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def run(args: argparse.Namespace, tmp: Path, workers: Workers) -> list[dict[str, Any]]:
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db

    say(
        f"Rookery pipeline benchmark: {args.runs} runs per phase, concurrency "
        f"{args.concurrency}, {args.rounds} round(s)"
    )
    setup_started = time.monotonic()
    app_log_to_file(tmp / "bench-app.log")
    bench_db = open_database(tmp)
    cleanup.append(bench_db.drop)
    app = create_app(
        {
            "DATABASE_URL": bench_db.uri,
            "ROOKERY_INSTANCE": str(tmp / "instance"),
            "ROOKERY_EVENT_LOGGING": True,
        }
    )
    cleanup.append(lambda: _dispose(app))
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
        db.session.remove()
        bench = Bench(args, tmp, app.config["ROOKERY_PG_DSN"], create_bench_job(), workers)
        say(
            f"  database: {bench_db.kind} PostgreSQL, migrated in "
            f"{time.monotonic() - setup_started:.1f}s"
        )
        rounds = []
        for number in range(1, args.rounds + 1):
            say(f"  round {number}:")
            result = Round()
            sides = [bench.raw_side, bench.rookery_side]
            if number % 2 == 0:  # alternate, so a slow start or drift hits both sides
                sides.reverse()
            for side in sides:
                side(result)
            rounds.append(result)
        rows = rookery_rows_per_run(bench.dsn)
        clean_queue(bench.dsn)
    return report(rounds, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--runs",
        type=int,
        default=DEFAULT_RUNS,
        help=f"jobs / runs per phase (default {DEFAULT_RUNS})",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"both workers' concurrency (default {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        help=f"measure each rate this many times, keep the best (default {DEFAULT_ROUNDS})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds a worker may take to start, then to finish its jobs (default 120)",
    )
    args = parser.parse_args(argv)
    if min(args.runs, args.concurrency, args.rounds) < 1:
        parser.error("--runs, --concurrency and --rounds must be at least 1")

    return run_guarded(
        "rookery-bench-", lambda tmp, stoppers: run(args, tmp, stoppers[0]), [Workers()]
    )


def run_guarded(
    prefix: str,
    body: Callable[[Path, list[Any]], list[dict[str, Any]]],
    stoppers: list[Any],
) -> int:
    """Run a benchmark body in a temp folder; stop its processes and clean up whatever
    happens; print its JSON figures last. Exit status 1 if the benchmark itself broke."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    # As root the embedded PostgreSQL runs as the user 'pgserver', which must reach pgdata.
    tmp.chmod(0o755)
    figures: list[dict[str, Any]] = []
    status = 0
    try:
        figures = body(tmp, stoppers)
    except BenchError as exc:
        say(f"Benchmark failed: {exc}")
        status = 1
    except Exception as exc:  # set-up or a phase broke: say so, exit non-zero
        import traceback

        traceback.print_exc()
        say(f"Benchmark failed: {type(exc).__name__}: {exc}")
        status = 1
    finally:
        for stopper in stoppers:
            stopper.stop_all()
        for step in reversed(cleanup):
            try:
                step()
            except Exception as exc:  # keep cleaning up
                say(f"cleanup: {type(exc).__name__}: {exc}")
        cleanup.clear()
        if status and os.environ.get("BENCH_KEEP_TMP"):
            say(f"kept {tmp} (BENCH_KEEP_TMP is set): logs are there")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    for item in figures:
        print(json.dumps(item), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
