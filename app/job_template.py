"""The template a new job module starts from (``rookery new-job NAME``).

``TEMPLATE`` is a complete, working global job; ``render_template(name)`` returns it with
its ``job_type`` set to ``name``. docs/writing-jobs.md explains every part of it.
"""

from __future__ import annotations

import logging

from app import registry
from app.errors import ValidationError

logger = logging.getLogger(__name__)

PLACEHOLDER_JOB_TYPE = "my_job"

TEMPLATE = '''\
"""Describe the job in one line: it becomes the job type's description."""

from __future__ import annotations

from app.jobs import JobLogger

JOB_META = {
    # Required: lowercase letters, digits and underscores, starting with a letter.
    "job_type": "my_job",
    # Optional: shown in the pages (defaults: job_type in title case, the docstring's
    # first line above, and "gear").
    # "label": "My job",
    # "description": "What this job does.",
    # "icon": "gear",
    # "devices": run() once per targeted device, with `device` set (connect with
    #     device.connect()); "none": run() once, with `device` None (a global job).
    "targets": "none",
    # Whether targeted devices need credentials (default: true for device jobs).
    "needs_credentials": False,
    # A schedule offered when the job is created: kind "interval", "cron" or "once".
    # "default_schedule": {"kind": "interval", "minutes": 60},
    # "default_schedule": {"kind": "cron", "cron": "0 2 * * *"},
    # The parameters the create form renders and the API validates; the validated
    # values reach run() as config["params"].
    "params": [
        {"name": "greeting", "type": "string", "default": "hello", "help": "Text to log."},
        {"name": "repeat", "type": "integer", "default": 1, "help": "How many lines."},
        {"name": "threshold", "type": "number", "default": 0.5},
        {"name": "dry_run", "type": "boolean", "default": True},
        {
            "name": "level",
            "type": "choice",
            "choices": ["info", "warning"],
            "default": "info",
            "label": "Log level",
        },
        {"name": "items", "type": "list", "help": "One per line (a comma is part of an item)."},
        # A secret is encrypted at rest and never shown; it may not have a default.
        # {"name": "api_token", "type": "secret", "required": True},
    ],
}


def run(device, job_id, config, db):
    """Do the work of one unit: the whole job here, since targets is "none".

    device -- None for a global job; for a device job, the device with its resolved
              credentials (id, name, host, port, platform, tags) and device.connect(),
              which logs in trying the credentials in order and enters enable mode:
                  with device.connect() as session:
                      ...
    job_id -- the id of this run; JobLogger records its lines against it.
    config -- read-only settings, with this job's validated parameters in config["params"].
    db     -- a SQLAlchemy session bound to this unit's transaction.

    Return a dict (or a plain string, taken as the message). "success": False fails
    the unit without a retry; raising an exception fails it and the run is retried
    according to the job's retry policy.
    """
    params = config["params"]
    # In a device job, pass device_id=device.id so the lines show under the device.
    job_log = JobLogger(job_id, JOB_META["job_type"])
    job_log.log("info", "Starting", meta={"dry_run": params["dry_run"]})

    repeat = params["repeat"]
    for done in range(1, repeat + 1):
        job_log.log(params["level"], f"{params['greeting']} ({done}/{repeat})")
        job_log.progress(done, repeat)

    return {
        "success": True,
        "message": f"Logged {repeat} line(s)",
        "data": {"items": params["items"] or [], "threshold": params["threshold"]},
    }
'''

_JOB_TYPE_LINE = f'    "job_type": "{PLACEHOLDER_JOB_TYPE}",\n'


def render_template(name: str) -> str:
    """The template with its job_type set to ``name``; ValidationError if ``name`` is invalid."""
    if not isinstance(name, str) or not registry.JOB_TYPE_PATTERN.fullmatch(name):
        raise ValidationError(
            f"Invalid job type name {name!r}: use a lowercase letter, then up to 63 lowercase "
            "letters, digits or underscores (for example: backup_acl).",
            fields={"name": "Use lowercase letters, digits and underscores."},
        )
    return TEMPLATE.replace(_JOB_TYPE_LINE, f'    "job_type": "{name}",\n', 1)
