"""Runs: the list with filters and live badges, a run's live page, cancel and relaunch."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from app import live, registry
from app.auth import require_role
from app.errors import MAX_ID, Conflict, Forbidden, NotFound, ValidationError
from app.extensions import db
from app.models import DeviceResult, Event, JobLog, Role, RunStatus
from app.services import runs
from app.services.logs import LogFilter, query_logs
from app.views import common, streaming

logger = logging.getLogger(__name__)

bp = Blueprint("runs", __name__, url_prefix="/runs")

PAGE_SIZE = 50
#: log lines a run page shows at first (the newest); the rest stay in the API
LOG_TAIL = 500


def _day(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ValidationError(
            "Dates look like 2026-11-28.", fields={"date": "Use YYYY-MM-DD."}
        ) from None


@bp.route("")
@login_required
def index() -> str | tuple[str, int]:
    """Runs newest first; filter by status, job type, job and day; keyset pages."""
    status = request.args.get("status") or None
    job_type = request.args.get("job_type") or None
    job_id = common.arg_int("job_id")
    device = (request.args.get("device") or "").strip()[:128] or None
    trigger = request.args.get("trigger") or None
    before = common.arg_int("before")
    errors: dict[str, str] = {}
    page: list[Any] = []
    next_cursor = None
    try:
        day = _day(request.args.get("date"))
        page, next_cursor = runs.list_runs(
            status=status,
            job_type=job_type,
            job_id=job_id,
            device=device,
            trigger=trigger,
            since=day,
            until=day + timedelta(days=1) if day else None,
            before_id=before,
            limit=PAGE_SIZE,
            brief=True,
        )
    except ValidationError as exc:
        errors = exc.fields
    first_page = before is None and not (
        status or job_type or job_id or device or trigger or request.args.get("date")
    )
    context = {
        "runs": page,
        "errors": errors,
        "statuses": [s.value for s in RunStatus],
        "job_types": sorted(registry.current().types),
        "jobs": runs.job_names(),
        "triggers": list(runs.TRIGGERS),
        "any_failure": runs.ANY_FAILURE,
        "next_url": url_for("runs.index", **common.query_without(before=next_cursor))
        if next_cursor
        else None,
        "newer_url": url_for("runs.index", **common.query_without(before=None)) if before else None,
        "live_new": first_page,
    }
    return render_template("runs/index.html", **context), 422 if errors else 200


@bp.route("/stream")
@login_required
def index_stream() -> Response:
    """Every run's status changes, for the list's badges (and new rows on page one)."""
    try:
        sub = streaming.subscribe(None, {"run"})
    except streaming.StreamsFull as exc:
        abort(503, str(exc))

    def render(message: live.Message) -> list[tuple[str, str]]:
        html = message.rendered(
            "run-cells", lambda m: _html("runs/_run_cells.html", run=_Row(m.data))
        )
        pairs = [(f"run-{message.run_id}", html)]
        if message.data["status"] in ("PENDING", "QUEUED", "SCHEDULED", "WAITING") and (
            message.data["progress_done"] == 0
        ):
            row = message.rendered(
                "run-row", lambda m: _html("runs/_run_row.html", run=_Row(m.data))
            )
            pairs.append(("run-new", row))
        return pairs

    return streaming.sse_response(sub, cursor=live.Cursor(), replay=[], render=render)


@bp.route("/<int:run_id>")
@login_required
def detail(run_id: int) -> str:
    """One run: status and progress, per-device results, log lines and events, all live."""
    run = _get_run(run_id)
    lines, _ = query_logs(LogFilter(run_id=run.id), limit=LOG_TAIL)
    lines.reverse()
    results = runs.device_results(run.id)
    waiting, waiting_total = runs.waiting_devices(run)
    return render_template(
        "runs/detail.html",
        run=run,
        results=results,
        waiting=waiting,
        waiting_more=waiting_total - len(waiting),
        device_names={r.device_id: r.device_name for r in results},
        lines=lines,
        events=runs.run_events(run.id),
        cursor=_cursor_of(run.id),
        tail_cut=len(lines) == LOG_TAIL,
    )


@bp.route("/<int:run_id>/status")
@login_required
def status(run_id: int) -> str:
    """The status block alone (polled by pages that cannot stream)."""
    return render_template("runs/_status.html", run=_get_run(run_id))


@bp.route("/<int:run_id>/results")
@login_required
def results(run_id: int) -> str:
    """The per-device result rows alone (refreshed once a run has ended)."""
    run = _get_run(run_id)
    return render_template("runs/_results.html", results=runs.device_results(run.id))


@bp.route("/<int:run_id>/results/<int:result_id>/output")
@login_required
def output(run_id: int, result_id: int) -> str:
    """One device's output and parsed records, loaded when its row is expanded."""
    result = _get_result(run_id, result_id)
    return render_template("runs/_output.html", result=result, parsed=_parsed(result))


@bp.route("/<int:run_id>/results/<int:result_id>/output.txt")
@login_required
def output_text(run_id: int, result_id: int) -> Response:
    """One device's output as a text file."""
    result = _get_result(run_id, result_id)
    return _attachment(result.output or "", f"run-{run_id}-{result.device_name}.txt")


@bp.route("/<int:run_id>/outputs.txt")
@login_required
def outputs_text(run_id: int) -> Response:
    """Every device's output of a run, one after the other, as a text file (streamed)."""
    _get_run(run_id)

    def chunks() -> Iterator[str]:
        for name, text in runs.device_outputs(run_id):
            yield f"--- {name} ---\n{text.rstrip()}\n\n"

    response = Response(stream_with_context(chunks()), mimetype="text/plain")
    response.headers["Content-Disposition"] = f'attachment; filename="run-{run_id}-outputs.txt"'
    return response


@bp.route("/<int:run_id>/stream")
@login_required
def stream(run_id: int) -> Response:
    """The run's live updates as SSE; replays what a reconnecting client missed."""
    _get_run(run_id)
    try:
        sub = streaming.subscribe(run_id, live.KINDS)
    except streaming.StreamsFull as exc:
        abort(503, str(exc))
    sent = streaming.client_cursor()
    cursor = sent or _cursor_of(run_id)
    replay = replay_since(run_id, cursor) if sent else []
    opening = [("status", _status_html(run_id))] if sent else []
    return streaming.sse_response(
        sub, cursor=cursor, replay=replay, render=render_message, opening=opening
    )


def render_message(message: live.Message) -> list[tuple[str, str]]:
    """A hub message as the run page's SSE events (rendered once for every viewer)."""
    if message.kind == "run":
        html = message.rendered(
            f"status:{current_user.role}",
            lambda m: _html("runs/_status.html", run=_RunView(m.data), live=True),
        )
        return [("status", html)]
    if message.kind == "log":
        html = message.rendered("log", lambda m: _html("runs/_log_line.html", line=_Row(m.data)))
        return [("log", html)]
    if message.kind == "event":
        html = message.rendered("event", lambda m: _html("runs/_event.html", event=_Row(m.data)))
        return [("event", html)]
    if message.kind == "result":
        html = message.rendered(
            "result", lambda m: _html("runs/_result_row.html", result=_Row(m.data))
        )
        return [("result", html)]
    return []


def replay_since(run_id: int, cursor: live.Cursor) -> list[live.Message]:
    """Rows of ``run_id`` after ``cursor``, read from the database, as hub messages."""
    messages: list[live.Message] = []
    results = runs.device_results(run_id)
    names = {r.device_id: r.device_name for r in results}
    lines: list[JobLog] = []
    after: int | None = cursor.log
    while after is not None:
        page, after = query_logs(
            LogFilter(run_id=run_id), after_id=after, oldest_first=True, limit=1000
        )
        lines.extend(page)
    for line in lines:
        data = _columns(line)
        data["device_name"] = names.get(line.device_id)
        messages.append(live.Message("log", run_id, line.id, data))
    messages.extend(
        live.Message("event", run_id, e.id, _columns(e))
        for e in runs.run_events(run_id, after_id=cursor.event)
    )
    messages.extend(
        live.Message("result", run_id, r.id, _columns(r)) for r in results if r.id > cursor.result
    )
    return messages


@bp.route("/<int:run_id>/cancel", methods=["POST"])
@require_role(Role.OPERATOR)
def cancel(run_id: int) -> Response | tuple[str, int]:
    """Cancel a run (at once when it has not started, within seconds when it runs)."""
    try:
        runs.cancel_run(run_id, actor=current_user)
    except NotFound:
        abort(404)
    except Conflict as exc:
        flash(exc.message, "error")
        return redirect(url_for("runs.detail", run_id=run_id))
    flash(f"Cancelling run #{run_id}.", "success")
    return redirect(url_for("runs.detail", run_id=run_id))


@bp.route("/<int:run_id>/relaunch", methods=["POST"])
@require_role(Role.OPERATOR)
def relaunch(run_id: int) -> Response:
    """Start the run again: all its devices, or only those that failed."""
    failed_only = request.form.get("failed_only") == "1"
    try:
        new_run = runs.relaunch_run(run_id, failed_only=failed_only, actor=current_user)
    except NotFound:
        abort(404)
    except (Conflict, ValidationError, Forbidden) as exc:
        flash(exc.message, "error")
        return redirect(url_for("runs.detail", run_id=run_id))
    flash(f"Relaunched as run #{new_run.id}.", "success")
    return redirect(url_for("runs.detail", run_id=new_run.id))


# -- helpers --------------------------------------------------------------------------


def _get_run(run_id: int) -> Any:
    try:
        return runs.get_run(run_id)
    except NotFound:
        abort(404)


def _get_result(run_id: int, result_id: int) -> Any:
    result = db.session.get(DeviceResult, result_id) if 1 <= result_id <= MAX_ID else None
    if result is None or result.run_id != run_id:
        abort(404)
    return result


def _parsed(result: Any) -> list[tuple[str, list[str], list[list[Any]]]]:
    """The TextFSM records of a result as tables: (command, columns, rows)."""
    tables = []
    for command, records in ((result.data or {}).get("parsed") or {}).items():
        if not isinstance(records, list):
            continue
        columns: list[str] = []
        for record in records:
            if isinstance(record, dict):
                columns += [key for key in record if key not in columns]
        rows = [[r.get(c, "") for c in columns] for r in records if isinstance(r, dict)]
        tables.append((command, columns, rows))
    return tables


def _attachment(text: str, file_name: str) -> Response:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in file_name)
    response = Response(text, mimetype="text/plain")
    response.headers["Content-Disposition"] = f'attachment; filename="{safe}"'
    return response


def _cursor_of(run_id: int) -> live.Cursor:
    """Where a page rendered now stands: the newest log, event and result of the run."""
    from sqlalchemy import func, select

    from app.models import DeviceResult

    row = db.session.execute(
        select(
            select(func.coalesce(func.max(JobLog.id), 0))
            .where(JobLog.run_id == run_id)
            .scalar_subquery(),
            select(func.coalesce(func.max(Event.id), 0))
            .where(Event.run_id == run_id)
            .scalar_subquery(),
            select(func.coalesce(func.max(DeviceResult.id), 0))
            .where(DeviceResult.run_id == run_id)
            .scalar_subquery(),
        )
    ).one()
    return live.Cursor(int(row[0]), int(row[1]), int(row[2]))


def _status_html(run_id: int) -> str:
    return _html("runs/_status.html", run=runs.get_run(run_id))


def _html(template: str, **context: Any) -> str:
    """A partial for an SSE message: no blank lines around it (each is a data: line)."""
    return render_template(template, **context).strip()


def _columns(row: Any) -> dict[str, Any]:
    return {c.key: getattr(row, c.key) for c in row.__table__.columns}


class _Row:
    """A hub row (a dict) seen through attributes, as templates read ORM rows."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.__dict__.update(data)

    def __getattr__(self, name: str) -> Any:
        return None


class _RunView(_Row):
    @property
    def run_status(self) -> RunStatus:
        return RunStatus(self.status)
