"""Previews a change set against each target device's running config, fetched live.

A built-in, internal job type: a change's "Preview live" makes its preview job and
starts its runs. Read only: each unit fetches the running config (as a backup does) and
predicts with hier_config what the change's commands would do to it; nothing is sent
but the command that shows the config (app/services/rollouts.py does the work).
"""

from __future__ import annotations

JOB_META = {
    "job_type": "change_preview",
    "label": "Preview a change live",
    "description": "Fetch each target device's running configuration and predict what a "
    "change set's commands would change in it (read only). Started from a change's page.",
    "icon": "eye",
    "targets": "devices",
    "needs_credentials": True,
    "internal": True,
    "params": [
        {"name": "change_id", "type": "integer", "required": True, "help": "The change."},
    ],
}


def run(device, job_id, config, db):
    from app.services import rollouts

    return rollouts.preview_device(device, job_id, config, db)
