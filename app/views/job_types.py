"""The job types page: every registered job module with its metadata, and the skipped ones;
the platforms the network jobs support (their profiles), and the profile files skipped."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import login_required

from app import profiles, registry

bp = Blueprint("job_types", __name__, url_prefix="/job-types")


@bp.route("")
@login_required
def index() -> str:
    """Registered job types (label, targets, parameters, schedule) and skipped modules;
    supported platforms and skipped profile files."""
    current = registry.current()
    platforms = profiles.current()
    return render_template(
        "job_types/index.html",
        job_types=current.sorted(),
        skipped=current.skipped,
        platforms=platforms.sorted(),
        skipped_profiles=platforms.skipped,
    )
