"""Small helpers every page blueprint shares: form parsing, HTMX detection, paging."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import request
from markupsafe import Markup, escape

from app.errors import MAX_ID


def is_htmx() -> bool:
    """True when HTMX asked (a partial is enough); boosted navigations want the page."""
    headers = request.headers
    return (
        headers.get("HX-Request") == "true"
        and not headers.get("HX-Boosted")
        and not headers.get("HX-History-Restore-Request")  # back button: the whole page
    )


def form_text(name: str, default: str = "") -> str:
    return (request.form.get(name) or default).strip()


def form_bool(name: str) -> bool:
    """A checkbox rendered by ``_forms.html``: a hidden "0" then the box's "1"."""
    return "1" in request.form.getlist(name)


def form_list(name: str) -> list[str]:
    """A multi-select, or a comma/newline separated text field."""
    values: list[str] = []
    for raw in request.form.getlist(name):
        values.extend(part.strip() for part in raw.replace("\n", ",").split(","))
    return [v for v in values if v]


def split_names(text: str) -> list[str]:
    """Names typed into one field, separated by commas or new lines."""
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


def form_ints(name: str) -> list[int]:
    """Ids from a multi-select; anything not a number is dropped (the service validates)."""
    ids: list[int] = []
    for value in form_list(name):
        try:
            ids.append(int(value))
        except ValueError:
            continue
    return ids


def arg_int(name: str, default: int | None = None) -> int | None:
    """A whole number from the query string (``default`` if it is not one), kept within
    what a PostgreSQL ``integer`` holds, so a huge one filters to nothing instead of
    failing the query."""
    try:
        value = int(request.args.get(name, ""))
    except ValueError:
        return default
    return max(-MAX_ID, min(MAX_ID, value))


def query_without(**changes: Any) -> dict[str, Any]:
    """The current query string with some keys changed (None removes a key)."""
    args = {k: v for k, v in request.args.items() if v != ""}
    for key, value in changes.items():
        if value is None:
            args.pop(key, None)
        else:
            args[key] = value
    return args


#: How each run status looks everywhere: (icon, text). Colours: .badge-<status> in CSS.
STATUS_DISPLAY: dict[str, tuple[str, str]] = {
    "PENDING": ("…", "Pending"),
    "QUEUED": ("⏳", "Queued"),
    "SCHEDULED": ("🕒", "Scheduled"),
    "WAITING": ("⛓", "Waiting for dependencies"),
    "RUNNING": ("▶", "Running"),
    "COMPLETED_SUCCESS": ("✔", "Success"),
    "COMPLETED_PARTIAL_FAILURE": ("◐", "Partial failure"),
    "COMPLETED_FAILURE": ("✖", "Failed"),
    "COMPLETED_NO_DEVICES": ("∅", "No devices"),
    "COMPLETED_NO_CREDENTIALS": ("🔑", "No credentials found"),
    "FAILED_CREDENTIAL_RESOLUTION": ("🔒", "Credential error"),
    "FAILED_DISPATCHER_ERROR": ("⚠", "Dispatcher error"),
    "FAILED_UNEXPECTED": ("💥", "Unexpected error"),
    "CANCELLED": ("⏹", "Cancelled"),
    "TIMEOUT": ("⌛", "Timed out"),
}

#: Device result statuses (DeviceResult.status) the same way.
RESULT_DISPLAY: dict[str, tuple[str, str]] = {
    "success": ("✔", "Success"),
    "failed": ("✖", "Failed"),
    "skipped": ("↷", "Skipped"),
    "no_credentials": ("🔑", "No credentials"),
    "auth_failed": ("🔒", "Authentication failed"),
    "unreachable": ("⚡", "Unreachable"),
    "timeout": ("⌛", "Timed out"),
    "cancelled": ("⏹", "Cancelled"),
    "host_key_changed": ("⚠", "Host key changed"),
    "host_key_unapproved": ("🔏", "Host key not approved"),
}


def status_display(status: str) -> tuple[str, str]:
    return STATUS_DISPLAY.get(status, RESULT_DISPLAY.get(status, ("•", status)))


def badge(status: str, id: str | None = None) -> Markup:
    """A status badge: colour (``.badge-<status>``), icon and text (the _badges macro)."""
    icon, text = status_display(status)
    ident = f' id="{escape(id)}"' if id else ""
    return Markup(
        f'<span class="badge badge-{escape(status.lower())}" data-status="{escape(status)}" '
        f'title="{escape(status)}"{ident}><span aria-hidden="true">{escape(icon)}</span> '
        f"{escape(text)}</span>"
    )


def when(value: datetime | None) -> Markup:
    """A timestamp as ``<time>`` (its zone as PostgreSQL sent it), or a muted dash."""
    if value is None:
        return Markup('<span class="muted">—</span>')
    iso = value.isoformat()
    return Markup(f'<time datetime="{iso}" title="{iso}">{iso[:10]} {iso[11:19]}</time>')


def duration(ms: int | None) -> Markup:
    """Milliseconds for people: 840 ms, 3.2 s, 4 min 12 s."""
    if ms is None:
        return Markup('<span class="muted">—</span>')
    if ms < 1000:
        return Markup(f"{ms} ms")
    if ms < 60_000:
        return Markup(f"{ms / 1000:.1f} s")
    return Markup(f"{ms // 60_000} min {(ms % 60_000) // 1000} s")


def run_cells(run: Any) -> Markup:
    """A run's status cell: its badge, and devices done/total while it has some."""
    html = badge(run.status)
    if run.progress_total:
        html += Markup(
            f' <span class="muted small">{run.progress_done}/{run.progress_total}</span>'
        )
    return html


def run_row(run: Any) -> Markup:
    """One row of the runs list, also sent live to page one.

    Python rather than a Jinja macro: the list renders 50 of these per request and a
    macro's call and escaping overhead made rows most of the page's time (the runs
    page must stay within 2x of an empty one, see bench/live.py).
    """
    job = (
        Markup(f'<a href="/jobs/{int(run.job_id)}">{escape(run.job_name)}</a>')
        if run.job_id
        else escape(run.job_name)
    )
    return Markup(
        f'<tr id="run-row-{int(run.id)}">'
        f'<td><a href="/runs/{int(run.id)}">#{int(run.id)}</a></td>'
        f"<td>{job}</td>"
        f'<td class="mono">{escape(run.job_type)}</td>'
        f'<td id="run-{int(run.id)}-status" sse-swap="run-{int(run.id)}">{run_cells(run)}</td>'
        f'<td class="small">{escape(run.triggered_by or "")}</td>'
        f'<td class="small">{when(run.created_at)}</td>'
        f'<td class="small right">{duration(run.duration_ms)}</td>'
        "</tr>"
    )
