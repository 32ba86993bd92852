"""Checks the fleet's latest configs against compliance rules that are new or changed."""

from __future__ import annotations

from app.jobs import JobLogger, check_compliance

JOB_META = {
    "job_type": "compliance_check",
    "label": "Compliance check",
    "description": "Check every device's latest backed-up config against the compliance "
    "rules it has no current result for (a rule created or edited since). Backups check "
    "the configs they change on their own; this job catches up after rule edits.",
    "icon": "shield-check",
    "targets": "none",
    "params": [
        {
            "name": "all",
            "type": "boolean",
            "default": False,
            "help": "Check every device against every rule, not only what is out of date.",
        }
    ],
}


def run(device, job_id, config, db):
    log = JobLogger(job_id, JOB_META["job_type"])
    stale_only = not config["params"].get("all")
    summary = check_compliance(job_id, db, stale_only=stale_only, log=log, report_progress=True)
    if "compliance_error" in summary:
        return {"success": False, "message": summary["compliance_error"], "data": summary}
    message = (
        f"{summary['checks']} check(s) on {summary['devices_checked']} device(s): "
        f"{summary['failing']} failing"
    )
    return {"success": True, "message": message, "data": summary}
