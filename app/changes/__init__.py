"""Change sets: configuration pushed to many devices with a preview, an approval, canary
waves, post-checks and rollback. This package holds the parts with no database:
rendering a change's template per device (``render``) and predicting what it does to a
device's config with hier_config (``preview``), and applying a change to one device
with snapshot, checks and rollback (``push``)."""

from __future__ import annotations

from app.changes.preview import Prediction, predict
from app.changes.push import (
    Check,
    CheckResult,
    DeviceOutcome,
    RollbackResult,
    Snapshot,
    apply_to_device,
)
from app.changes.render import RenderError, check_template, device_context, render

__all__ = [
    "Check",
    "CheckResult",
    "DeviceOutcome",
    "Prediction",
    "RenderError",
    "RollbackResult",
    "Snapshot",
    "apply_to_device",
    "check_template",
    "device_context",
    "predict",
    "render",
]
