"""The dashboard: outcomes over a chosen window, runs per day, the queue, the workers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from flask_login import login_required
from werkzeug.wrappers import Response

from app.services import inventory, runs, stats, system
from app.views import common

bp = Blueprint("main", __name__)

#: the windows a person can choose, in days
WINDOWS = {"1": "24 hours", "7": "7 days", "30": "30 days", "90": "90 days"}
CHART_OUTCOMES = ("success", "partial", "failure", "cancelled", "other")


@bp.route("/")
@login_required
def index() -> str:
    """Dashboard: counts by status and success rate over the window, chart, queue, workers."""
    window = request.args.get("days", "7")
    if window not in WINDOWS:
        window = "7"
    days = int(window)
    now = stats.db_now()
    figures = stats.statistics(since=now - timedelta(days=days), now=now)
    per_day = stats.runs_per_day(min(max(days, 7), 90), now=now)
    recent, _ = runs.list_runs(limit=10)
    context: dict[str, Any] = {
        "window": window,
        "windows": WINDOWS,
        "figures": figures,
        "chart": _chart(per_day),
        "recent": recent,
        "failing": stats.failing_devices(now - timedelta(days=days)),
        "health": system.health(),
        "backups": inventory.backup_health(),
    }
    template = "_dashboard_body.html" if common.is_htmx() else "index.html"
    return render_template(template, **context)


def _chart(per_day: list[dict[str, Any]]) -> dict[str, Any]:
    """Stacked bars of runs per day by outcome, laid out for an inline SVG."""
    width, height, gap = 720, 160, 2
    tallest = max((day["total"] for day in per_day), default=0) or 1
    bar = max(2, (width - gap * len(per_day)) // max(1, len(per_day)))
    bars = []
    for index, day in enumerate(per_day):
        x = index * (bar + gap)
        y = height
        segments = []
        for outcome in CHART_OUTCOMES:
            count = day.get(outcome, 0)
            if not count:
                continue
            h = max(1, round(height * count / tallest))
            y -= h
            segments.append({"outcome": outcome, "y": y, "h": h, "count": count})
        bars.append({"x": x, "date": day["date"], "total": day["total"], "segments": segments})
    return {"width": width, "height": height, "bar": bar, "bars": bars, "max": tallest}


@bp.route("/favicon.ico")
def favicon() -> Response:
    """Browsers that ask for /favicon.ico get the SVG icon (no 404 on every page)."""
    return redirect(url_for("static", filename="favicon.svg"), 301)
