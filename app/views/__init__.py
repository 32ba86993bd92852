"""The web pages, one blueprint per feature; ``register`` wires them all into the app.

To add a feature: write a module with a ``bp`` Blueprint (``app/views/<feature>.py``
for pages) and add its dotted path to ``BLUEPRINTS``.
"""

from __future__ import annotations

import importlib

from flask import Flask

BLUEPRINTS: tuple[str, ...] = (
    "app.views.main",
    "app.views.health",
    "app.views.runs",
    "app.views.jobs",
    "app.views.tokens",
    "app.views.metrics",
    "app.views.devices",
    "app.views.configs",
    "app.views.credentials",
    "app.views.job_types",
    "app.views.policy",
    "app.views.compliance",
    "app.views.changes",
    "app.views.admin",
    "app.api",
)


def register(app: Flask) -> None:
    from app import present
    from app.views import common

    app.jinja_env.globals.update(
        status_display=common.status_display,
        badge_html=common.badge,
        time_html=common.when,
        duration_html=common.duration,
        run_row=common.run_row,
        run_cells=common.run_cells,
        trigger_html=common.trigger,
        icon=common.icon,
        priority_name=present.priority_name,
    )
    for name in BLUEPRINTS:
        module = importlib.import_module(name)
        app.register_blueprint(module.bp)
