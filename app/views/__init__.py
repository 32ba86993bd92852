"""The web pages, one blueprint per feature; ``register`` wires them all into the app.

To add a feature: write ``app/views/<feature>.py`` with a ``bp`` Blueprint and add its
module name to ``BLUEPRINTS``.
"""

from __future__ import annotations

import importlib

from flask import Flask

BLUEPRINTS: tuple[str, ...] = (
    "main",
    "health",
)


def register(app: Flask) -> None:
    for name in BLUEPRINTS:
        module = importlib.import_module(f"app.views.{name}")
        app.register_blueprint(module.bp)
