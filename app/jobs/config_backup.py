"""Backs up running configs into the git config store: one commit per run, changed files only."""

from __future__ import annotations

import hashlib

from app.jobs import (
    JobLogger,
    check_compliance,
    command_error,
    commit_configs,
    compliance_findings,
    normalize_config,
    stored_outputs,
)

JOB_META = {
    "job_type": "config_backup",
    "label": "Config backup",
    "description": "Fetch each device's running configuration and commit the ones that "
    "changed to the git config store (volatile lines and secrets removed).",
    "icon": "archive",
    "targets": "devices",
    "needs_credentials": True,
    "default_schedule": {"kind": "cron", "cron": "0 2 * * *"},
    "params": [],
}


def run(device, job_id, config, db):
    log = JobLogger(job_id, JOB_META["job_type"], device.id)
    with device.connect() as session:
        # the platform profile's commands: the config, and any extras as a comment block
        raw = session.backup_config()
    refusal = command_error(device.platform, raw)
    if refusal is not None:
        # An error message is no configuration: committed, it would replace the last good
        # one in git (a platform set wrongly, a user without the right to read it).
        log.error(f"{device.name} refused the configuration command: {refusal}")
        return {
            "success": False,
            "message": f"The device refused the configuration command: {refusal}",
        }
    text = normalize_config(
        device.platform, raw, redact_secrets=config.get("ROOKERY_CONFIG_REDACT_SECRETS", True)
    )
    lines = text.count("\n")
    if not text.strip():
        return {"success": False, "message": "The device returned an empty configuration."}
    digest = hashlib.sha256(text.encode()).hexdigest()
    log.info(f"Fetched {lines} lines from {device.name}", {"sha256": digest[:12]})
    data = {"lines": lines, "sha256": digest}
    # checked here, while other devices' sessions wait on the network, not in finalize
    findings = compliance_findings(job_id, device, text, db)
    if findings is not None:
        data["compliance"] = findings
    return {"success": True, "message": f"{lines} lines", "output": text, "data": data}


def finalize(run_id, results, config, db):
    """One git commit for the whole run, holding only the configs that changed."""
    if not any(r.status == "success" for r in results):
        return {"commit": None, "changed": []}
    # the configs stream from the database into git: never all of them in memory
    commit = commit_configs(run_id, config["job_name"], stored_outputs(run_id, db), db)
    changed = set(commit.changed)
    stored = changed.union(commit.unchanged)
    for result in results:
        if result.device_name in stored:
            result.changed = result.device_name in changed
            result.commit_sha = commit.sha if result.changed else None
    log = JobLogger(run_id, JOB_META["job_type"])
    log.info(
        f"Config store: {len(changed)} changed, {len(commit.unchanged)} unchanged"
        + (f", commit {commit.sha[:10]}" if commit.sha else ", nothing to commit"),
        {"changed": sorted(changed), "commit": commit.sha},
    )
    message = f"{len(changed)} config(s) changed" if changed else "no config changed"
    summary = {"commit": commit.sha, "changed": sorted(changed), "unchanged": len(commit.unchanged)}
    # the changed configs' compliance findings (computed by their units), on the commit
    found = {
        r.device_name: r.data["compliance"]
        for r in results
        if r.device_name in changed and isinstance(r.data, dict) and "compliance" in r.data
    }
    summary.update(check_compliance(run_id, db, found=found, commit=commit.sha, log=log))
    if commit.push_error:
        # A warning, not a failure: the commit is made and recorded; a worker pushes it
        # again every ROOKERY_CONFIG_PUSH_RETRY_SECONDS (and so does the next backup).
        log.warning(f"Config store: push failed, kept locally: {commit.push_error}")
        summary["push_error"] = commit.push_error
        message += "; push to the remote failed (kept locally, retried later)"
    return {**summary, "message": message}
