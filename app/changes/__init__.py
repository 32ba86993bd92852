"""Change sets: configuration pushed to many devices with a preview, an approval, canary
waves, post-checks and rollback. This package holds the parts with no database:
rendering a change's template per device (``render``) and predicting what it does to a
device's config with hier_config (``preview``)."""

from __future__ import annotations

from app.changes.preview import Prediction, predict
from app.changes.render import RenderError, check_template, device_context, render

__all__ = [
    "Prediction",
    "RenderError",
    "check_template",
    "device_context",
    "predict",
    "render",
]
