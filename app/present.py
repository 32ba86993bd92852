"""Rows as the JSON API and the CLI's ``--json`` show them: plain JSON-able dicts, secrets
redacted or left out. (Outside ``app.api``, so the CLI need not import the API's stack.)
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from app import crypto, registry
from app.models import (
    AuditEntry,
    Device,
    DeviceResult,
    Event,
    Job,
    JobRun,
    Priority,
    RunStatus,
    Schedule,
)
from app.services import schedules as schedule_service
from app.ssh_keys import HostKey

_PRIORITY_NAMES = {p.value: p.name.lower() for p in Priority}


def priority_name(value: int) -> str:
    """A priority as people say it (low, normal, high, critical), or its number when it
    is none of those."""
    return _PRIORITY_NAMES.get(value, str(value))


_RUN_IN_MESSAGE = re.compile(r"\brun #(\d+)\b", re.IGNORECASE)


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _secret_params(job_type: str) -> tuple[str, ...]:
    try:
        return registry.current().get(job_type).secret_params
    except registry.UnknownJobType:
        return ()


def schedule(row: Schedule) -> dict[str, Any]:
    return {
        "id": row.id,
        "job_id": row.job_id,
        "job_name": row.job.name if row.job is not None else None,
        "kind": row.kind,
        "minutes": row.interval_minutes,
        "expression": row.cron,
        "timezone": row.timezone,
        "at": iso(row.run_at),
        "enabled": row.enabled,
        "next_fire_at": iso(row.next_fire_at),
        "last_fire_at": iso(row.last_fire_at),
        "description": schedule_service.describe(row),
        "created_at": iso(row.created_at),
    }


def job(row: Job) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "job_type": row.job_type,
        "description": row.description or "",
        "labels": list(row.labels or []),
        "params": crypto.redact_params(row.params or {}, _secret_params(row.job_type)),
        "targets": {
            "tags": [t.name for t in row.target_tags],
            "devices": [d.id for d in row.target_devices],
        },
        "priority": row.priority,
        "priority_name": _PRIORITY_NAMES.get(row.priority),
        "max_retries": row.max_retries,
        "retry_backoff_seconds": row.retry_delay_seconds,
        "retry_backoff_max_seconds": row.retry_max_delay_seconds,
        "timeout_seconds": row.timeout_seconds,
        "max_parallel": row.max_parallel,
        "credentials": [c.name for c in row.credentials],
        "depends_on": sorted(d.id for d in row.depends_on),
        "allow_overlap": not row.no_overlap,
        "enabled": row.enabled,
        "schedules": [schedule(s) for s in sorted(row.schedules, key=lambda s: s.id)],
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def run(row: JobRun) -> dict[str, Any]:
    return {
        "id": row.id,
        "job_id": row.job_id,
        "job_name": row.job_name,
        "job_type": row.job_type,
        "status": row.status,
        "final": RunStatus(row.status).is_final,
        "attempt": row.attempt,
        "max_attempts": row.max_attempts,
        "priority": row.priority,
        "progress": {"done": row.progress_done, "total": row.progress_total},
        "message": row.message,
        "result": row.result,
        "error": row.error,
        "device_ids": list(row.device_ids) if row.device_ids is not None else None,
        "depends_on_runs": sorted(r.id for r in row.depends_on),
        "relaunch_of": row.relaunch_of_id,
        "triggered_by": row.triggered_by,
        "signal_id": row.signal_id,
        "worker": row.worker_name,
        "cancel_requested": row.cancel_requested_at is not None,
        "created_at": iso(row.created_at),
        "queued_at": iso(row.queued_at),
        "scheduled_at": iso(row.scheduled_at),
        "started_at": iso(row.started_at),
        "finished_at": iso(row.finished_at),
        "duration_ms": row.duration_ms,
    }


def device_result(row: DeviceResult) -> dict[str, Any]:
    return {
        "device": row.device_name,
        "device_id": row.device_id,
        "status": row.status,
        "message": row.message or "",
        "credential": row.credential_name,
        "changed": row.changed,
        "commit": row.commit_sha,
        "data": row.data,
        "output": row.output,
        "connect_attempts": row.connect_attempts or 0,
        "started_at": iso(row.started_at),
        "finished_at": iso(row.finished_at),
        "duration_ms": row.duration_ms,
    }


def run_detail(row: JobRun, results: list[DeviceResult]) -> dict[str, Any]:
    return {**run(row), "results": [device_result(r) for r in results]}


def event(row: Event) -> dict[str, Any]:
    return {
        "id": row.id,
        "type": row.type,
        "status": row.status,
        "message": row.message or "",
        "run_id": row.run_id,
        "job_id": row.job_id,
        "actor": row.actor,
        "result": row.result,
        "exception": row.exception,
        "data": row.data,
        "pre_data": row.pre_data,
        "post_data": row.post_data,
        "signal_id": row.signal_id,
        "created_at": iso(row.at),
    }


def device(row: Device) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "host": row.host,
        "port": row.port,
        "platform": row.platform,
        "driver": row.driver,
        "enabled": row.enabled,
        "notes": row.notes or "",
        "tags": [t.name for t in row.tags],
        "last_backup": (
            {
                "at": iso(row.backup.last_at),
                "status": row.backup.last_status,
                "commit": row.backup.last_commit,
                "last_success_at": iso(row.backup.last_success_at),
                "run_id": row.backup.last_run_id,
            }
            if row.backup is not None
            else None
        ),
        "credential_hold": (
            {
                "reason": row.credential_hold,
                "since": iso(row.credential_hold_at),
                "by": row.credential_hold_by,
            }
            if row.credential_hold
            else None
        ),
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "host_key": _host_key(
            row.pinned_host_key,
            row.host_key_seen_at,
            source=row.host_key_source,
            approved=row.host_key_approved,
        ),
        "host_key_pending": _host_key(row.pending_host_key, row.host_key_pending_seen_at),
    }


def _host_key(key: HostKey | None, seen_at: datetime | None, **extra: Any) -> dict[str, Any] | None:
    """A device's SSH host key: type, OpenSSH fingerprint, when seen, the public key."""
    if key is None:
        return None
    return {
        "type": key.type,
        "fingerprint": key.fingerprint,
        "seen_at": iso(seen_at),
        "public_key": key.openssh(),
        **extra,
    }


def config_version(version: Any) -> dict[str, Any]:
    """A config store version; backups name their run in the commit message."""
    found = _RUN_IN_MESSAGE.search(version.message or "")
    return {
        "commit": version.sha,
        "created_at": iso(version.committed_at),
        "run_id": int(found.group(1)) if found else None,
        "message": version.message,
        "author": version.author,
    }


def audit_entry(row: AuditEntry) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": iso(row.at),
        "actor": row.actor,
        "action": row.action,
        "object_type": row.object_type,
        "object_id": row.object_id,
        "summary": row.summary or "",
        "before": row.before,
        "after": row.after,
        "address": row.address,
    }
