"""The public API for job modules: everything a module in ``app/jobs/`` may import.

A job module defines ``JOB_META`` and ``run(device, job_id, config, db)`` (see
docs/writing-jobs.md). It logs through ``JobLogger`` and, for device jobs, gets a
``DeviceTarget`` whose ``connect()`` opens a driver session with credential
fallback. Modules never import Flask or other parts of Rookery.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from app.command_policy import APPROVED_BY, control_problem, policy_problem
from app.job_api import DeviceTarget, JobLogger, NotRetryable, ResolvedCredential, Wave
from app.platforms import command_error

__all__ = [
    "APPROVED_BY",
    "LEVELS",
    "DeviceTarget",
    "JobLogger",
    "NotRetryable",
    "ResolvedCredential",
    "Wave",
    "check_compliance",
    "command_error",
    "command_problem",
    "commit_configs",
    "compliance_findings",
    "normalize_config",
    "redact_secrets",
    "result",
    "stored_outputs",
]

LEVELS = ("debug", "info", "warning", "error", "critical")
#: outputs ``stored_outputs`` reads from the database at a time
OUTPUT_BATCH = 100

logger = logging.getLogger(__name__)


def result(
    message: str = "",
    *,
    success: bool = True,
    data: Mapping[str, Any] | None = None,
    pre_data: Mapping[str, Any] | None = None,
    post_data: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the dict a ``run()`` returns (a plain dict or string works too)."""
    value: dict[str, Any] = {"success": success, "message": message}
    if data is not None:
        value["data"] = dict(data)
    if pre_data is not None:
        value["pre_data"] = dict(pre_data)
    if post_data is not None:
        value["post_data"] = dict(post_data)
    return value


def normalize_config(platform: str, text: str, *, redact_secrets: bool = True) -> str:
    """A config without volatile lines (clock, uptime...) and, by default, without secrets."""
    from app import config_store

    return config_store.normalize_config(platform, text, redact_secrets=redact_secrets)


def redact_secrets(text: str, platform: str | None = None) -> str:
    """``text`` with the secrets a config backup removes replaced by ``<removed>`` (with
    ``platform``, its profile's own rules too)."""
    from app import config_store

    return config_store.redact_secrets(text, platform)


def command_problem(command: str, platform: str, *, approved: bool) -> str | None:
    """Why ``command`` may not be sent to a device of ``platform``, or None.

    A control character (CR, LF...) is never sent; a command that is not read-only (by
    the built-in list and the admins' rules) is sent only when an admin ``approved`` the
    job (see app/command_policy.py).
    """
    if approved:
        return control_problem(command)
    from app.services import command_rules

    return policy_problem(command, platform, command_rules.current())


def commit_configs(
    run_id: int, job_name: str, configs: Mapping[str, str] | Iterable[tuple[str, str]], db: Any
) -> Any:
    """Commit changed configs as one commit of the store: a mapping (device name ->
    normalised text) or (name, text) pairs, which are read one at a time (pass
    ``stored_outputs`` to stream a run's configs from the database).

    Serialised across workers with a PostgreSQL advisory lock taken on ``db``; the texts
    also become the devices' latest configs for the config search. Returns
    the store's CommitResult (sha or None, changed and unchanged device names, and
    ``push_error`` when the push to the remote failed: the commit is kept locally).
    """
    from flask import current_app

    from app import config_store
    from app.services import config_search

    pairs = configs.items() if isinstance(configs, Mapping) else configs
    store = config_store.store_for(current_app)
    # The configs as the config search reads them, in this run's transaction, a batch at
    # a time as they go by; their commit is named once it exists.
    pending = f"pending:{run_id}:{secrets.token_hex(8)}"  # one per call (units commit too)
    result = store.commit_run(
        run_id=run_id,
        job_name=job_name,
        configs=config_search.remembering(db, pairs, pending),
        lock=config_store.advisory_lock(db),
    )
    if store.remote:  # /health shows how pushes go; a worker retries a failed one
        config_store.record_push(db, store, result.push_error)
    config_search.settle(db, pending, result.sha or store.head())
    return result


def stored_outputs(run_id: int, db: Any) -> Iterator[tuple[str, str]]:
    """(device name, output) of each device of the run that succeeded with an output,
    read from the database a few rows at a time (a finalize over 10,000 configs holds a
    handful in memory, not all of them)."""
    from sqlalchemy import select

    from app.models import DeviceResult

    rows = db.execute(
        select(DeviceResult.device_name, DeviceResult.output)
        .where(
            DeviceResult.run_id == run_id,
            DeviceResult.status == "success",
            DeviceResult.output.is_not(None),
            DeviceResult.output != "",
        )
        .order_by(DeviceResult.id)
        .execution_options(yield_per=OUTPUT_BATCH)
    )
    yield from rows  # each row is a (name, output) tuple


def compliance_findings(
    run_id: int, device: DeviceTarget, text: str, db: Any
) -> list[dict[str, Any]] | None:
    """The compliance findings of a config a backup unit just fetched (it travels in the
    device's result to the finalize, which stores those of the configs that changed), or
    None when the config is the device's latest already. Never raises: a failure is
    logged and the finalize finds no findings for the device."""
    from app.services import compliance

    info = {"name": device.name, "host": device.host, "platform": device.platform}
    info["tags"] = list(device.tags)
    try:
        return compliance.findings_for_backup(db, run_id, info, device.id, text)
    except Exception:
        logger.exception("Compliance check of %s's config failed", device.name)
        return None


def check_compliance(
    run_id: int,
    db: Any,
    *,
    found: Mapping[str, list[dict[str, Any]]] | None = None,
    commit: str | None = None,
    stale_only: bool = False,
    log: JobLogger | None = None,
    report_progress: bool = False,
) -> dict[str, Any]:
    """Store compliance results in ``db``'s transaction: a backup's ``found`` findings
    (device name -> findings of its changed config, held by ``commit``), or else a check
    of every device's latest config (``stale_only``: only results missing or computed by
    an older rule version). Never raises: a failure is logged (on ``log``) and rolled back
    to a SAVEPOINT, so a broken rule never fails a backup. Returns the summary that goes
    in the run's result (its ``compliance_changes`` are what webhooks deliver).
    ``report_progress``: the run's progress bar follows the batches (only from a run's
    own unit: a finalize step holds the run's row, which the progress update waits for)."""
    from app.services import compliance

    def progress(done: int, total: int) -> None:
        if log is not None and report_progress:
            log.progress(done, total)

    try:
        with db.begin_nested():
            if found is not None:
                summary = compliance.record_backup(db, dict(found), commit or "", run_id)
            else:
                summary = compliance.check(
                    db, stale_only=stale_only, run_id=run_id, progress=progress
                )
    except Exception as exc:
        logger.exception("Compliance check of run %s failed", run_id)
        if log is not None:
            log.warning(f"Compliance check skipped: {type(exc).__name__}: {exc}")
        return {"compliance_error": f"{type(exc).__name__}: {exc}"}
    if log is not None and summary.checked:
        log.info(
            f"Compliance: {summary.checked} check(s) on {summary.devices} device(s), "
            f"{summary.failing} failing, {summary.changes_total} change(s)"
        )
    return summary.as_result()
