"""Small helpers every page blueprint shares: form parsing, HTMX detection, paging."""

from __future__ import annotations

import functools
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import request
from markupsafe import Markup, escape

from app.errors import MAX_ID, ValidationError


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


#: How each run status looks everywhere: (icon, text); icons are names of the vendored
#: lucide sprite (app/static/vendor/lucide-sprite.svg). Colours: .badge-<status> in CSS.
STATUS_DISPLAY: dict[str, tuple[str, str]] = {
    "PENDING": ("circle-dashed", "Pending"),
    "QUEUED": ("clock", "Queued"),
    "SCHEDULED": ("calendar-clock", "Scheduled"),
    "WAITING": ("hourglass", "Waiting for dependencies"),
    "RUNNING": ("play", "Running"),
    "COMPLETED_SUCCESS": ("circle-check", "Success"),
    "COMPLETED_PARTIAL_FAILURE": ("circle-alert", "Partial failure"),
    "COMPLETED_FAILURE": ("circle-x", "Failed"),
    "COMPLETED_NO_DEVICES": ("circle-minus", "No devices"),
    "COMPLETED_NO_CREDENTIALS": ("key-round", "No credentials found"),
    "FAILED_CREDENTIAL_RESOLUTION": ("lock", "Credential error"),
    "FAILED_DISPATCHER_ERROR": ("triangle-alert", "Dispatcher error"),
    "FAILED_UNEXPECTED": ("octagon-x", "Unexpected error"),
    "CANCELLED": ("square", "Cancelled"),
    "TIMEOUT": ("timer-off", "Timed out"),
}

#: Device result statuses (DeviceResult.status) the same way.
RESULT_DISPLAY: dict[str, tuple[str, str]] = {
    "success": ("circle-check", "Success"),
    "failed": ("circle-x", "Failed"),
    "skipped": ("skip-forward", "Skipped"),
    "no_credentials": ("key-round", "No credentials"),
    "auth_failed": ("lock", "Authentication failed"),
    "unreachable": ("unplug", "Unreachable"),
    "timeout": ("timer-off", "Timed out"),
    "cancelled": ("square", "Cancelled"),
    "waiting": ("hourglass", "Waiting"),
    "working": ("loader", "Working"),
    "host_key_changed": ("shield-alert", "Host key changed"),
    "host_key_unapproved": ("shield-question-mark", "Host key not approved"),
}

#: the vendored icon sprite (lucide-static, see app/static/vendor/VERSIONS.txt)
ICON_SPRITE = "/static/vendor/lucide-sprite.svg"


@functools.cache
def icon_names() -> frozenset[str]:
    """Every icon the sprite holds (read once per process)."""
    sprite = Path(__file__).resolve().parent.parent / "static" / "vendor" / "lucide-sprite.svg"
    return frozenset(re.findall(r'<symbol id="([^"]+)"', sprite.read_text()))


def icon(name: str | None) -> Markup:
    """An icon of the sprite as inline SVG; nothing for a name the sprite lacks (a job
    module may name any lucide icon)."""
    if not name or name not in icon_names():
        return Markup("")
    return Markup(
        f'<svg class="icon" aria-hidden="true" focusable="false">'
        f'<use href="{ICON_SPRITE}#{escape(name)}"></use></svg>'
    )


def status_display(status: str) -> tuple[str, str]:
    return STATUS_DISPLAY.get(status, RESULT_DISPLAY.get(status, ("circle-help", status)))


def badge(status: str, id: str | None = None) -> Markup:
    """A status badge: colour (``.badge-<status>``), icon and text (the _badges macro)."""
    icon_name, text = status_display(status)
    ident = f' id="{escape(id)}"' if id else ""
    return Markup(
        f'<span class="badge badge-{escape(status.lower())}" data-status="{escape(status)}" '
        f'title="{escape(status)}"{ident}>{icon(icon_name)} {escape(text)}</span>'
    )


def when(value: datetime | None) -> Markup:
    """A timestamp as ``<time>``, labelled with its zone (UTC as PostgreSQL sends it), or a
    muted dash."""
    if value is None:
        return Markup('<span class="muted">—</span>')
    iso = value.isoformat()
    offset = value.utcoffset()
    zone = "UTC" if not offset else "UTC" + iso[-6:]  # isoformat ends with +HH:MM
    return Markup(f'<time datetime="{iso}" title="{iso}">{iso[:10]} {iso[11:19]} {zone}</time>')


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


def trigger(triggered_by: str | None) -> Markup:
    """What started a run, in words, with a link to the run it relaunched."""
    text = triggered_by or ""
    kind, _, rest = text.partition(":")
    if kind == "relaunch" and rest.isdigit():
        return Markup(f'relaunch of <a href="/runs/{int(rest)}">#{int(rest)}</a>')
    if kind == "schedule" and rest.isdigit():
        return Markup(f"schedule #{int(rest)}")
    if kind in ("user", "api") and rest:
        where = "page" if kind == "user" else "API"
        return escape(rest) + Markup(f' <span class="muted">({where})</span>')
    return escape(text)


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
        f'<td class="small">{trigger(run.triggered_by)}</td>'
        f'<td class="small">{when(run.created_at)}</td>'
        f'<td class="small right">{duration(run.duration_ms)}</td>'
        "</tr>"
    )


def refuse_nul(values: dict[str, Any]) -> None:
    """A NUL character is a field error, as in the API: PostgreSQL text cannot hold one."""
    bad: dict[str, str] = {}
    for key, value in values.items():
        texts = value if isinstance(value, list) else [value]
        if any(isinstance(text, str) and "\x00" in text for text in texts):
            bad[key] = "No NUL characters."
    if bad:
        raise ValidationError("Text may not contain NUL characters.", fields=bad)
