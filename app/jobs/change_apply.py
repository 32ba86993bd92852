"""Applies an approved change set to its devices: canary, waves, checks, rollback.

A built-in, internal job type: a change's Apply makes its job and starts its runs
(app/services/rollouts.py does the work; this module is the runner's way in). A run
started any other way sends nothing.
"""

from __future__ import annotations

JOB_META = {
    "job_type": "change_apply",
    "label": "Apply a change",
    "description": "Push an approved change set to its devices in waves: snapshot, "
    "pre-checks, push, post-checks and rollback per device, and a failure budget. "
    "Started by a change's Apply only.",
    "icon": "git-pull-request",
    "targets": "devices",
    "needs_credentials": True,
    "internal": True,
    "params": [
        {"name": "change_id", "type": "integer", "required": True, "help": "The change."},
    ],
}


def waves(run_id, targets, config, db):
    from app.services import rollouts

    return (yield from rollouts.waves(run_id, targets, config, db))


def run(device, job_id, config, db):
    from app.services import rollouts

    return rollouts.apply_device(device, job_id, config, db)


def rollback(device, job_id, config, db):
    from app.services import rollouts

    return rollouts.rollback_device(device, job_id, config, db)


def finalize(run_id, results, config, db):
    from app.services import rollouts

    return rollouts.finish(run_id, db)
