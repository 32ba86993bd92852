"""Job dependencies under concurrency, on a real PostgreSQL: two saves at once cannot
make a cycle, a cycle already stored is a clear refusal wherever a run starts, and a
run started just as its dependency ends is released, not left WAITING.

The races are made deterministic by pausing one side at a known point (after its
check, before its commit) and waiting until the other side is seen blocked on a lock
in ``pg_locks``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text

from app import audit
from app.cli import cli
from app.engine import lifecycle, scheduler
from app.errors import Conflict, ValidationError
from app.extensions import db
from app.models import Job, JobLog, JobRun, RunStatus, Schedule, utcnow
from app.services import jobs, runs, schedules
from tests.conftest import csrf_token
from tests.integration.helpers import drain, make_job, queue_rows, reload, wait_for
from tests.integration.test_api_support import Api, error, make_tokens


class Side(threading.Thread):
    """``fn`` in a thread with an app context (a session) of its own; keeps its outcome."""

    def __init__(self, app: Any, name: str, fn: Callable[[], Any]) -> None:
        super().__init__(name=name, daemon=True)
        self.app, self.fn = app, fn
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        with self.app.app_context():
            try:
                self.result = self.fn()
            except BaseException as exc:  # read by the test
                self.error = exc
            finally:
                db.session.remove()

    def outcome(self) -> Any:
        self.join(30)
        assert not self.is_alive(), f"{self.name} did not finish"
        return self.result


class Pause:
    """A point where the thread named ``who`` stops until the test lets it go."""

    def __init__(self, who: str) -> None:
        self.who = who
        self.reached = threading.Event()
        self.go = threading.Event()

    def __call__(self) -> None:
        if threading.current_thread().name == self.who:
            self.reached.set()
            assert self.go.wait(30), "never let go"

    def wait_reached(self) -> None:
        assert self.reached.wait(30), f"{self.who} never reached its pause"


def blocked_or_done(side: threading.Thread) -> Callable[[], bool]:
    """True once ``side`` waits for a lock (or has finished: then it did not wait)."""
    return lambda: not side.is_alive() or waiting_on_locks() > 0


def waiting_on_locks() -> int:
    """Backends of this database waiting for a lock someone else holds."""
    count = db.session.execute(
        text(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE NOT l.granted AND a.datname = current_database()"
        )
    ).scalar_one()
    db.session.rollback()
    return count


def edges() -> set[tuple[str, str]]:
    """The dependency graph as (job, depends on) name pairs."""
    db.session.expire_all()
    rows = db.session.execute(
        text(
            "SELECT j.name, d.name FROM job_dependencies e"
            " JOIN jobs j ON j.id = e.job_id JOIN jobs d ON d.id = e.depends_on_id"
        )
    ).all()
    db.session.rollback()
    return {(a, b) for a, b in rows}


def run_count() -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(JobRun))


# ------------------------------------------------------------ two saves at once


def test_two_saves_at_once_cannot_make_a_cycle(app, ctx, monkeypatch):
    """A on B and B on A saved at once: the second waits for the first, then is refused."""
    a = make_job(name="A", no_overlap=False).id
    b = make_job(name="B", params={"tag": "b"}, no_overlap=False).id
    pause = Pause("first")
    real_record = audit.record

    def record(**kwargs: Any) -> None:
        pause()  # the first save has checked for cycles and not yet committed
        real_record(**kwargs)

    monkeypatch.setattr(audit, "record", record)
    first = Side(app, "first", lambda: jobs.update_job(a, actor="t", depends_on_job_ids=[b]).id)
    second = Side(app, "second", lambda: jobs.update_job(b, actor="t", depends_on_job_ids=[a]).id)
    first.start()
    pause.wait_reached()
    second.start()
    wait_for(blocked_or_done(second), timeout=10, what="the second save waiting for the graph lock")
    pause.go.set()
    assert first.outcome() == a and first.error is None
    second.outcome()
    assert isinstance(second.error, ValidationError), second.error
    assert "Dependency cycle: B -> A -> B." in second.error.message
    assert edges() == {("A", "B")}


def test_two_api_patches_at_once_one_succeeds_and_the_graph_stays_acyclic(app, ctx):
    """Through the JSON API, released together by a barrier, several times over."""
    tokens = make_tokens(app)
    a = make_job(name="A", no_overlap=False).id
    b = make_job(name="B", params={"tag": "b"}, no_overlap=False).id

    def patch(barrier: threading.Barrier, job_id: int, other: int) -> Any:
        api = Api(client=app.test_client(), tokens=tokens)
        barrier.wait(10)
        return api.patch(f"/api/v1/jobs/{job_id}", json={"depends_on": [other]})

    for _ in range(5):
        barrier = threading.Barrier(2)
        sides = [
            Side(app, "patch-a", functools.partial(patch, barrier, a, b)),
            Side(app, "patch-b", functools.partial(patch, barrier, b, a)),
        ]
        for side in sides:
            side.start()
        answers = [side.outcome() for side in sides]
        assert all(side.error is None for side in sides), [side.error for side in sides]
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [200, 422], [answer.get_data(as_text=True) for answer in answers]
        refused = next(answer for answer in answers if answer.status_code == 422).get_json()
        assert refused["message"].startswith("Dependency cycle: ")
        assert "depends_on" in refused["fields"]
        assert edges() in ({("A", "B")}, {("B", "A")})
        for job_id in (a, b):  # start the next round from an empty graph
            jobs.update_job(job_id, actor="t", depends_on_job_ids=[])
        assert edges() == set()


# ------------------------------------------------------- a cycle already stored


@pytest.fixture
def stored_cycle(ctx) -> dict[str, int]:
    """A depends on B and B on A, written by hand as no save would allow; C depends on A."""
    ids = {
        name: make_job(name=name, params={"tag": name}, no_overlap=False).id
        for name in ("A", "B", "C")
    }
    db.session.execute(
        text("INSERT INTO job_dependencies (job_id, depends_on_id) VALUES (:a, :b), (:b, :a)"),
        {"a": ids["A"], "b": ids["B"]},
    )
    jobs.update_job(ids["C"], actor="t", depends_on_job_ids=[ids["A"]])
    db.session.commit()
    return ids


def test_a_stored_cycle_refuses_the_start_and_writes_nothing(stored_cycle):
    with pytest.raises(Conflict, match=r"Dependency cycle: A -> B -> A\."):
        runs.start_run(db.session.get(Job, stored_cycle["A"]), triggered_by="test")
    with pytest.raises(Conflict, match=r"Dependency cycle: B -> A -> B\."):
        runs.start_run(db.session.get(Job, stored_cycle["B"]), triggered_by="test")
    # Entered from outside the cycle, the cycle itself is named.
    with pytest.raises(Conflict, match=r"Dependency cycle: A -> B -> A\."):
        runs.start_run(db.session.get(Job, stored_cycle["C"]), triggered_by="test")
    assert run_count() == 0
    assert db.session.execute(text("SELECT count(*) FROM procrastinate_jobs")).scalar() == 0


def test_a_stored_cycle_is_a_409_from_the_api(app, client, stored_cycle):
    api = Api(client=client, tokens=make_tokens(app))
    body = error(api.post(f"/api/v1/jobs/{stored_cycle['A']}/runs", json={}), 409)
    assert body["message"].startswith("Dependency cycle: A -> B -> A.")
    assert run_count() == 0


def test_a_stored_cycle_is_one_error_line_from_the_cli(app, stored_cycle):
    result = app.test_cli_runner().invoke(cli, ["job", "run", "C"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: Dependency cycle: A -> B -> A.")
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert run_count() == 0


def test_a_stored_cycle_is_a_flash_on_the_job_page(app, client, auth, stored_cycle):
    auth.create("olga", "operator-pw-1", "operator")
    auth.login("olga", "operator-pw-1")
    page = f"/jobs/{stored_cycle['A']}"
    token = csrf_token(client, page)
    answer = client.post(f"{page}/run", data={"csrf_token": token}, follow_redirects=True)
    assert answer.status_code == 200
    assert "Dependency cycle: A -&gt; B -&gt; A." in answer.get_data(as_text=True)
    assert run_count() == 0


def test_a_schedule_of_a_stored_cycle_logs_why_and_the_tick_goes_on(ctx, stored_cycle):
    looping = schedules.create_schedule(
        db.session.get(Job, stored_cycle["A"]), kind="interval", interval_minutes=5
    )
    fine = schedules.create_schedule(
        make_job(name="fine", params={"tag": "fine"}, no_overlap=False),
        kind="interval",
        interval_minutes=5,
    )
    for schedule in (looping, fine):
        schedule.next_fire_at = (utcnow() - timedelta(seconds=30)).replace(microsecond=0)
    db.session.commit()
    started = scheduler.tick()
    assert [reload(run_id).job_name for run_id in started] == ["fine"]
    line = db.session.scalar(select(JobLog).where(JobLog.source == scheduler.LOG_SOURCE))
    assert line is not None
    assert "started no run: Dependency cycle: A -> B -> A." in line.message
    assert db.session.get(Schedule, looping.id).next_fire_at > utcnow()
    drain(ctx)
    assert reload(started[0]).status == RunStatus.COMPLETED_SUCCESS.value


def test_a_chain_longer_than_the_limit_is_refused_clearly(ctx):
    count = runs.MAX_DEPENDENCY_DEPTH + 5
    ids = [
        make_job(name=f"j{i}", params={"tag": f"j{i}"}, no_overlap=False).id for i in range(count)
    ]
    db.session.execute(
        text("INSERT INTO job_dependencies (job_id, depends_on_id) VALUES (:job, :on)"),
        [{"job": ids[i], "on": ids[i + 1]} for i in range(count - 1)],
    )
    db.session.commit()
    with pytest.raises(Conflict, match=f"more than {runs.MAX_DEPENDENCY_DEPTH} dependent jobs"):
        runs.start_run(db.session.get(Job, ids[0]), triggered_by="test")
    assert run_count() == 0
    # The same chain, short enough, starts every run.
    run = runs.start_run(
        db.session.get(Job, ids[count - runs.MAX_DEPENDENCY_DEPTH]), triggered_by="t"
    )
    assert run.status == RunStatus.WAITING.value
    assert run_count() == runs.MAX_DEPENDENCY_DEPTH
    (first,) = db.session.scalars(select(JobRun).where(JobRun.status == "QUEUED")).all()
    runs.cancel_run(first.id, actor="test")  # the whole chain waiting for it ends with it
    assert {r.status for r in db.session.scalars(select(JobRun))} == {"CANCELLED"}


# ------------------------------------ a dependant started as its dependency ends


@pytest.fixture
def running_dependency(ctx) -> tuple[int, int]:
    """(job B's id, the id of a RUNNING run of A); B depends on A."""
    a = make_job(name="A", no_overlap=False)
    b = make_job(name="B", params={"tag": "b"}, depends_on_job_ids=[a.id], no_overlap=False)
    a_run = runs.start_run(a, triggered_by="test")
    db.session.execute(
        text("UPDATE job_runs SET status = 'RUNNING', started_at = now() WHERE id = :id"),
        {"id": a_run.id},
    )
    db.session.commit()
    return b.id, a_run.id


def end_run(run_id: int, status: RunStatus, pause: Callable[[], None] = lambda: None) -> None:
    """End a RUNNING run as the runner does: lock it, final status, release, commit."""
    run = lifecycle.lock_current(run_id, 1)
    assert run is not None
    lifecycle.end(db.session, run, status, "ended by the test")  # releases dependants too
    pause()
    db.session.commit()


def start_b(b_id: int) -> int:
    return runs.start_run(db.session.get(Job, b_id), triggered_by="test").id


def b_runs() -> list[JobRun]:
    db.session.expire_all()
    return list(db.session.scalars(select(JobRun).where(JobRun.job_name == "B")))


def assert_released(b_run_id: int) -> None:
    (b_run,) = b_runs()
    assert b_run.id == b_run_id
    assert b_run.status == RunStatus.QUEUED.value, b_run.status
    assert queue_rows(b_run.id) == [("todo", b_run.priority, 0)]


def test_dependant_started_as_its_dependency_ends_start_first(app, running_dependency, monkeypatch):
    """The start holds the dependency's row: the ending waits, then sees the new run."""
    b_id, a_run_id = running_dependency
    pause = Pause("start")
    real_lock = runs._lock_waited_for

    def lock_then_pause(start: Any) -> None:
        real_lock(start)
        pause()  # A's run read RUNNING and locked, B's run written WAITING, not committed

    monkeypatch.setattr(runs, "_lock_waited_for", lock_then_pause)
    starting = Side(app, "start", lambda: start_b(b_id))
    starting.start()
    pause.wait_reached()
    ending = Side(app, "end", lambda: end_run(a_run_id, RunStatus.COMPLETED_SUCCESS))
    ending.start()
    wait_for(blocked_or_done(ending), timeout=10, what="the ending waiting for the start's lock")
    pause.go.set()
    b_run_id = starting.outcome()
    ending.outcome()
    assert starting.error is None and ending.error is None, (starting.error, ending.error)
    assert_released(b_run_id)
    assert reload(a_run_id).status == RunStatus.COMPLETED_SUCCESS.value
    drain(app)
    assert reload(b_run_id).status == RunStatus.COMPLETED_SUCCESS.value


def test_dependant_started_as_its_dependency_ends_ending_first(app, running_dependency):
    """The ending holds the row: the start waits, reads the run ended, queues at once."""
    b_id, a_run_id = running_dependency
    pause = Pause("end")
    ending = Side(app, "end", lambda: end_run(a_run_id, RunStatus.COMPLETED_SUCCESS, pause))
    ending.start()
    pause.wait_reached()  # A's run ended and released nobody, not committed
    starting = Side(app, "start", lambda: start_b(b_id))
    starting.start()
    wait_for(blocked_or_done(starting), timeout=10, what="the start waiting for the ending's lock")
    pause.go.set()
    ending.outcome()
    b_run_id = starting.outcome()
    assert starting.error is None and ending.error is None, (starting.error, ending.error)
    assert_released(b_run_id)
    assert [r.id for r in db.session.scalars(select(JobRun).where(JobRun.job_name == "A"))] == [
        a_run_id
    ]
    drain(app)
    assert reload(b_run_id).status == RunStatus.COMPLETED_SUCCESS.value


def test_dependency_failing_while_its_dependant_starts_refuses_the_start(app, running_dependency):
    b_id, a_run_id = running_dependency
    pause = Pause("end")
    ending = Side(app, "end", lambda: end_run(a_run_id, RunStatus.FAILED_UNEXPECTED, pause))
    ending.start()
    pause.wait_reached()
    starting = Side(app, "start", lambda: start_b(b_id))
    starting.start()
    wait_for(blocked_or_done(starting), timeout=10, what="the start waiting for the ending's lock")
    pause.go.set()
    ending.outcome()
    starting.outcome()
    assert isinstance(starting.error, Conflict), starting.error
    assert f"#{a_run_id} (A) FAILED_UNEXPECTED" in starting.error.message
    assert b_runs() == []
    assert run_count() == 1


def test_dependant_started_as_a_global_run_ends_in_one_statement(
    app, running_dependency, monkeypatch
):
    b_id, a_run_id = running_dependency
    pause = Pause("start")
    real_lock = runs._lock_waited_for

    def lock_then_pause(start: Any) -> None:
        real_lock(start)
        pause()

    def end_global() -> bool:
        values = {"message": "ok", "result": {"success": True, "message": "ok", "data": None}}
        ended = lifecycle.finish_global(
            db.session, a_run_id, 1, RunStatus.COMPLETED_SUCCESS, values
        )
        db.session.commit()
        return ended

    monkeypatch.setattr(runs, "_lock_waited_for", lock_then_pause)
    starting = Side(app, "start", lambda: start_b(b_id))
    starting.start()
    pause.wait_reached()
    ending = Side(app, "end", end_global)
    ending.start()
    wait_for(blocked_or_done(ending), timeout=10, what="the ending waiting for the start's lock")
    pause.go.set()
    b_run_id = starting.outcome()
    assert ending.outcome() is True
    assert_released(b_run_id)
    drain(app)
    assert reload(b_run_id).status == RunStatus.COMPLETED_SUCCESS.value
