"""The home page."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import login_required

from app.services import system

bp = Blueprint("main", __name__)


@bp.route("/")
@login_required
def index() -> str:
    """Home: the state of the database, the schema and the workers."""
    return render_template("index.html", health=system.health())
