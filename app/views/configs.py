"""The config search page: a line, a pattern, across every device's latest config."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from flask_login import login_required

from app.errors import ValidationError
from app.services import config_search

bp = Blueprint("configs", __name__, url_prefix="/configs")


@bp.route("/search")
@login_required
def search() -> str | tuple[str, int]:
    """The search form and, when asked, the devices whose latest config matches."""
    args = request.args
    values = {
        "q": (args.get("q") or "")[:500],
        "regex": args.get("regex") == "1",
        "case": args.get("case") == "1",
        "context": args.get("context") or "2",
        "tag": (args.get("tag") or "").strip()[:64],
        "platform": (args.get("platform") or "").strip()[:64],
    }
    if not values["q"]:
        return render_template("configs/search.html", values=values, errors={}, result=None)
    try:
        context = int(values["context"])
    except ValueError:
        context = 2
    try:
        result = config_search.search(
            values["q"],
            regex=values["regex"],
            case=values["case"],
            context=context,
            tag=values["tag"] or None,
            platform=values["platform"] or None,
        )
    except ValidationError as exc:
        return render_template(
            "configs/search.html",
            values=values,
            errors=exc.fields,
            message=exc.message,
            result=None,
        ), 422
    return render_template("configs/search.html", values=values, errors={}, result=result)
