"""Applying an approved change: one Rookery run, its devices in waves.

``start`` checks the change (approved, not being applied, its template renders for
every target) and, in one transaction, starts a run of the change's job (type
``change_apply``, made on the first apply) and writes a ``change_devices`` row per
target with its wave (the canary first, then waves of ``wave_size``) and commands.
Nothing is sent to a device before that commit.

The run's job module (app/jobs/change_apply.py) hands each part here:

- ``waves``: the runner asks for the next wave once the last one ended; between waves
  the failure budget is checked (failed devices: rolled back, rollback failed, failed
  pre-checks, uncertain). When it is spent, the remaining devices are not attempted
  and, with ``rollback: all``, one more wave rolls back every device applied so far.
- ``apply_device``: one device's unit: snapshot (committed to the config store as
  "before"; kept encrypted on its row for a later rollback), pre-checks, push,
  post-checks and, on a failure, an immediate rollback (app/changes/push.py); the
  config after it committed as "after". The row is committed as ``pushing`` before the
  first command is sent, so a run that dies mid-push leaves a device marked uncertain,
  never one assumed fine; a later attempt of the same run (a worker handed it back)
  rolls such a device back to its snapshot instead of pushing again, and never touches
  a device that already ended.
- ``rollback_device``: the rollback wave's unit.
- ``finish``: the run's summary; the snapshots are dropped.

A change's overall status (``status_of``) is its review status until it is applied,
then follows its latest run: applying, applied, partially_applied, rolled_back or
failed (a rollback that failed, or a device left uncertain).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app import audit, crypto, events
from app.changes import render as rendering
from app.drivers import DriverError
from app.errors import Conflict, ValidationError
from app.extensions import db
from app.job_api import DeviceTarget, JobLogger, NotRetryable, Wave
from app.models import (
    ACTIVE_STATUSES,
    Change,
    ChangeDevice,
    ChangeDeviceState,
    ChangeStatus,
    Job,
    JobRun,
    RunStatus,
    User,
)
from app.platforms import command_error
from app.services import actor_name, changes

logger = logging.getLogger(__name__)

JOB_TYPE = "change_apply"
PREVIEW_JOB_TYPE = "change_preview"
#: states that count against the failure budget
FAILED_STATES = (
    ChangeDeviceState.ROLLED_BACK.value,
    ChangeDeviceState.ROLLBACK_FAILED.value,
    ChangeDeviceState.FAILED_PRECHECK.value,
    ChangeDeviceState.PUSHING.value,
)
#: states a device ends in: a later attempt of the run leaves it alone
ENDED_STATES = (
    ChangeDeviceState.APPLIED.value,
    ChangeDeviceState.ROLLED_BACK.value,
    ChangeDeviceState.ROLLBACK_FAILED.value,
    ChangeDeviceState.FAILED_PRECHECK.value,
    ChangeDeviceState.NOT_ATTEMPTED.value,
)
ACTIVE_RUN = frozenset(status.value for status in ACTIVE_STATUSES)


# ---------------------------------------------------------------------- start


def plan_waves(count: int, canary: int, wave_size: int) -> list[int]:
    """Each of ``count`` devices' wave number: 0 for the canary's, then 1, 2..."""
    waves: list[int] = []
    for index in range(count):
        if index < canary:
            waves.append(0)
        else:
            waves.append(1 + (index - canary) // max(1, wave_size))
    return waves


def active_run(change: Change) -> JobRun | None:
    if change.run_id is None:
        return None
    run = db.session.get(JobRun, change.run_id)
    return run if run is not None and run.status in ACTIVE_RUN else None


def start(change_id: int, *, actor: User | str | None) -> JobRun:
    """Start applying an approved change (audited; commits); its run. On any error the
    session is rolled back (and the change's row lock released): nothing is left."""
    try:
        return _start(change_id, actor=actor)
    except BaseException:
        db.session.rollback()
        raise


def _start(change_id: int, *, actor: User | str | None) -> JobRun:
    from app.services import runs

    changes.get_change(change_id)  # a 404 for an unknown change
    # Locked until the run is committed: two applies at once cannot both start one.
    change = db.session.scalar(select(Change).where(Change.id == change_id).with_for_update())
    assert change is not None
    if change.status != ChangeStatus.APPROVED.value:
        raise Conflict(
            f"Change {change.name} is {change.status.replace('_', ' ')}: only an approved "
            "change is applied (submit it and have another operator approve it)."
        )
    running = active_run(change)
    if running is not None:
        raise Conflict(
            f"Change {change.name} is being applied by run #{running.id} "
            f"({running.status.lower()}): wait for it or cancel it."
        )
    devices = changes.target_devices(change.target_tags, change.target_device_ids)
    if not devices:
        raise ValidationError(
            "The change targets no enabled device now.", fields={"targets": "No device."}
        )
    commands: dict[int, str] = {}
    secrets = changes.secret_values(change)
    for device in devices:
        try:
            text = changes.render_for(change, device)
        except rendering.RenderError as exc:
            raise ValidationError(
                f"Nothing was sent: the template does not render for {device.name}: {exc}",
                fields={"template": str(exc)},
            ) from None
        if not text.strip():
            raise ValidationError(
                f"Nothing was sent: the template renders no command for {device.name}.",
                fields={"template": "No command."},
            )
        # shown on the rollout with the secret variables as ***; the unit renders again
        commands[device.id] = rendering.hide(text, secrets)
    job = ensure_job(change)
    run = runs.start_run(
        job,
        triggered_by=f"change #{change.id} applied by {actor_name(actor)}",
        actor=actor,
        device_ids=[d.id for d in devices],
        commit=False,
    )
    for device, wave in zip(
        devices, plan_waves(len(devices), change.canary, change.wave_size), strict=True
    ):
        db.session.add(
            ChangeDevice(
                change_id=change.id,
                run_id=run.id,
                device_id=device.id,
                device_name=device.name,
                wave=wave,
                commands=commands[device.id],
            )
        )
    change.run_id = run.id
    audit.record(
        actor=actor,
        action="change.apply",
        object_type="change",
        object_id=change.id,
        summary=f"Change {change.name} (version {change.version}) applied to "
        f"{len(devices)} device(s): run #{run.id}",
    )
    db.session.commit()
    return run


def _preview_job_name(change: Change) -> str:
    return f"Change #{change.id}: preview"


def ensure_preview_job(change: Change) -> Job:
    """The job whose runs preview the change against the devices' live configs."""
    job = db.session.scalar(select(Job).where(Job.name == _preview_job_name(change)))
    return job or _make_job(
        change,
        _preview_job_name(change),
        PREVIEW_JOB_TYPE,
        f"Previews change #{change.id} ({change.name}) against the running configs of its "
        "devices (read only); started from the change's page.",
    )


def start_live_preview(change_id: int, *, actor: User | str | None) -> JobRun:
    """A run fetching each target's running config to predict the change on it (read
    only; commits). A preview already running is reused."""
    from app.services import runs

    change = changes.get_change(change_id)
    devices = changes.target_devices(change.target_tags, change.target_device_ids)
    if not devices:
        raise ValidationError(
            "The change targets no enabled device now.", fields={"targets": "No device."}
        )
    job = ensure_preview_job(change)
    running = runs.active_run(job)
    if running is not None:
        return running
    return runs.start_run(
        job,
        triggered_by=f"live preview of change #{change.id} by {actor_name(actor)}",
        actor=actor,
        device_ids=[d.id for d in devices],
    )


def live_preview(change_id: int) -> tuple[JobRun | None, list[Any]]:
    """The latest live preview run of a change and its per-device previews (those done)."""
    from app.models import Device, DeviceResult

    change = changes.get_change(change_id)
    run = db.session.scalar(
        select(JobRun)
        .join(Job, Job.id == JobRun.job_id)
        .where(Job.name == _preview_job_name(change))
        .order_by(JobRun.id.desc())
        .limit(1)
    )
    if run is None:
        return None, []
    rows = db.session.execute(
        select(DeviceResult, Device)
        .join(Device, Device.id == DeviceResult.device_id)
        .where(DeviceResult.run_id == run.id)
        .order_by(Device.name)
    ).all()
    items = []
    for result, device in rows:
        data = result.data or {}
        ok = result.status == "success"
        items.append(
            changes.DevicePreview(
                device=device,
                commands=data.get("commands"),
                effective=data.get("effective") if ok else None,
                diff=data.get("diff") if ok else None,
                problem=None if ok else result.message,
                commit=None,
            )
        )
    return run, items


def preview_device(device: DeviceTarget, run_id: int, config: Any, session: Session) -> dict:
    """The live preview's unit: the device's running config, the change's commands for
    it, and hier_config's prediction (the config as stored: normalised, redacted)."""
    from app.changes.preview import predict
    from app.config_store import normalize_config

    change = session.get(Change, int(config["params"]["change_id"]))
    if change is None:
        raise NotRetryable("The change no longer exists.")
    try:
        commands = changes.render_for(change, device)
    except rendering.RenderError as exc:
        return {"success": False, "message": str(exc), "data": {}}
    secrets = changes.secret_values(change)
    session.commit()  # no transaction stays open while the device is talked to
    with device.connect() as driver:
        raw = driver.get_config()
    refusal = command_error(device.platform, raw)
    if refusal is not None:  # an error message is no config to predict on (as in backups)
        return {
            "success": False,
            "message": f"The device refused the configuration command: {refusal}",
            "data": {},
        }
    predicted = predict(normalize_config(device.platform, raw), commands, device.platform)
    changed = len(predicted.effective.splitlines())
    return {
        "success": True,
        "message": f"{changed} line(s) would change" if changed else "nothing would change",
        "data": {  # stored on the run's result, which every reader sees: secrets hidden
            "commands": rendering.hide(commands, secrets),
            "effective": rendering.hide(predicted.effective, secrets),
            "diff": rendering.hide(predicted.diff, secrets),
        },
    }


def ensure_job(change: Change) -> Job:
    """The change's job (made when it is first submitted: its webhooks, e.g. the
    ``rollback_failed`` event, can be set before the first apply). Retries off: a
    rollout is resumed only when its worker hands it back (see the module docstring)."""
    job = db.session.get(Job, change.job_id) if change.job_id else None
    if job is None:
        job = _make_job(
            change,
            f"Change #{change.id}: {change.name}"[:128],
            JOB_TYPE,
            f"Applies change #{change.id} ({change.name}); started by its Apply.",
        )
        change.job_id = job.id
    return job


def _make_job(change: Change, name: str, job_type: str, description: str) -> Job:
    """An internal job of the change (made by Rookery; retries off; commits)."""
    from app.services import jobs

    return jobs.create_job(
        name=name,
        job_type=job_type,
        actor="system",
        description=description,
        params={"change_id": change.id},
        max_retries=0,
    )


# ---------------------------------------------------------------------- waves


def _change_of_run(session: Session, run_id: int) -> Change:
    change = session.scalar(select(Change).where(Change.run_id == run_id))
    if change is None:
        raise NotRetryable(
            "This run applies no change: a change's Apply starts its runs (nothing was sent)."
        )
    return change


def failed_count(session: Session, run_id: int) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(ChangeDevice)
            .where(ChangeDevice.run_id == run_id, ChangeDevice.state.in_(FAILED_STATES))
        )
        or 0
    )


def waves(
    run_id: int, targets: Sequence[DeviceTarget], config: Any, session: Session
) -> Iterator[Wave]:
    """The canary, then each wave (after the pause), while the failure budget lasts;
    then, if it is spent and the change says ``rollback: all``, the rollback wave."""
    log = JobLogger(run_id, JOB_TYPE)
    change = _change_of_run(session, run_id)
    if change.status != ChangeStatus.APPROVED.value:
        raise NotRetryable(f"Change {change.name} is {change.status}: nothing was sent.")
    rows = list(
        session.scalars(
            select(ChangeDevice)
            .where(ChangeDevice.run_id == run_id)
            .order_by(ChangeDevice.wave, ChangeDevice.device_name)
        )
    )
    numbers = sorted({row.wave for row in rows})
    name, budget, pause = change.name, change.max_failed, change.pause_seconds
    rollback_all = change.rollback == "all"
    log.info(
        f"Change {name}: {len(rows)} device(s) in {len(numbers)} wave(s), "
        f"stop after {budget} failed device(s), rollback: {change.rollback}"
    )
    session.commit()
    failed = 0
    for index, number in enumerate(numbers):
        failed = failed_count(session, run_id)
        if failed >= budget:
            break
        # Devices that already ended (an earlier attempt of this run) are in their wave
        # too: their unit reports how they ended and does not touch them again.
        ids = tuple(row.device_id for row in rows if row.wave == number and row.device_id)
        label = "Canary" if number == 0 else f"Wave {number}"
        session.commit()
        yield Wave(ids, label, pause_seconds=pause if index > 0 else 0)
    else:
        failed = failed_count(session, run_id)
    if failed < budget:
        session.commit()
        return "every wave ran"
    reason = f"the failure budget is spent ({failed} failed, budget {budget})"
    session.execute(
        update(ChangeDevice)
        .where(
            ChangeDevice.run_id == run_id,
            ChangeDevice.state == ChangeDeviceState.PENDING.value,
        )
        .values(state=ChangeDeviceState.NOT_ATTEMPTED.value, message=f"Not attempted: {reason}.")
    )
    log.error(f"Rollout stopped: {reason}")
    session.commit()
    if rollback_all:
        wave = rollback_wave(session, run_id)
        session.commit()
        if wave is not None:
            yield wave
    return reason


def rollback_wave(session: Session, run_id: int) -> Wave | None:
    """Every device applied so far in ``run_id``, for the rollback wave (or None)."""
    ids = tuple(
        session.scalars(
            select(ChangeDevice.device_id).where(
                ChangeDevice.run_id == run_id,
                ChangeDevice.state == ChangeDeviceState.APPLIED.value,
                ChangeDevice.device_id.isnot(None),
            )
        )
    )
    return Wave(ids, "Rolling back every changed device", action="rollback") if ids else None


# ---------------------------------------------------------------------- units


def _row(session: Session, run_id: int, device_id: int) -> ChangeDevice:
    row = session.scalar(
        select(ChangeDevice).where(
            ChangeDevice.run_id == run_id, ChangeDevice.device_id == device_id
        )
    )
    if row is None:
        raise NotRetryable("This device is not part of the change's rollout (nothing was sent).")
    return row


def _result(row: ChangeDevice) -> dict[str, Any]:
    """The device's result from its row: success only for an applied device."""
    state = row.state
    data = {
        "state": state,
        "wave": row.wave,
        "before_commit": row.before_commit,
        "after_commit": row.after_commit,
        "rollback_method": row.rollback_method,
    }
    word = state.replace("_", " ")
    message = row.message or word
    if not message.lower().startswith(word):
        message = f"{word}: {message}"
    return {"success": state == ChangeDeviceState.APPLIED.value, "message": message, "data": data}


def _commit_config(
    session: Session, run_id: int, change: Change, device: DeviceTarget, text: str, what: str
) -> str | None:
    """``text`` committed to the config store as the device's config ``what`` the change
    (its sha, or the store's head when the text is what the store holds already)."""
    from flask import current_app

    from app import config_store
    from app.jobs import commit_configs

    result = commit_configs(
        run_id, f"change #{change.id} {change.name}, {what}", {device.name: text}, session
    )
    if result.changed:
        _recheck_compliance(session, device)
    return result.sha or config_store.store_for(current_app).head()


def _recheck_compliance(session: Session, device: DeviceTarget) -> None:
    """The device's compliance on the config just committed (its latest now): a later
    backup finds it unchanged and would not check it. Never fails the device's unit."""
    from app.services import compliance

    try:
        with session.begin_nested():
            compliance.check(session, device_ids=[device.id])
    except Exception:
        logger.exception("Compliance check of %s after a change failed", device.name)


def apply_device(device: DeviceTarget, run_id: int, config: Any, session: Session) -> dict:
    """One device's unit (see the module's docstring)."""
    from app.changes import push

    log = JobLogger(run_id, JOB_TYPE, device.id)
    change = _change_of_run(session, run_id)
    row = _row(session, run_id, device.id)
    if row.state in ENDED_STATES:
        log.info(f"{device.name}: already {row.state.replace('_', ' ')} in this run; left alone")
        return _result(row)
    if row.state == ChangeDeviceState.PUSHING.value:
        # An earlier attempt died while this device was being changed: back to its
        # snapshot, never a second push.
        log.warning(f"{device.name}: interrupted while being changed; rolling back")
        return _restore(device, run_id, change, row, session, log, "interrupted mid-change")
    failed = failed_count(session, run_id)
    if failed >= change.max_failed:
        row.state = ChangeDeviceState.NOT_ATTEMPTED.value
        row.message = f"Not attempted: the failure budget is spent ({failed} failed)."
        session.commit()
        return _result(row)
    change_id, name, checks = change.id, change.name, list(change.checks)
    # rendered again here, secrets and all (the row shows them as ***)
    commands, secrets = changes.render_for(change, device), changes.secret_values(change)
    reachability = change.reachability
    session.commit()  # no transaction stays open while the device is talked to

    def before_push(taken: Any) -> None:
        # Committed before the first command is sent: the snapshot a rollback needs
        # survives this process, and the device is known to be in flight.
        row.before_commit = _commit_config(session, run_id, change, device, taken.stored, "before")
        row.snapshot_enc = crypto.encrypt(taken.config)
        row.checkpoint = taken.checkpoint
        row.state = ChangeDeviceState.PUSHING.value
        session.commit()

    with device.connect() as driver:
        outcome = push.apply_to_device(
            driver,
            platform=device.platform,
            commands=commands,
            checks=checks,
            snapshot_name=f"rookery-change-{change_id}-{run_id}",
            before_push=before_push,
            reconnect=device.connect,
            login_check=(lambda: device.connect().close()) if reachability else None,
        )
    outcome = push.masked(outcome, secrets)
    session.rollback()  # whatever before_push left unfinished (it commits what it keeps)
    row = _row(session, run_id, device.id)
    row.state = outcome.state
    row.message = " ".join(outcome.messages)[:10000]
    row.rollback_method = outcome.rollback.method if outcome.rollback else None
    row.details = {
        "prechecks": [vars(c) for c in outcome.prechecks],
        "postchecks": [vars(c) for c in outcome.postchecks],
        "rollback_attempts": outcome.rollback.attempts if outcome.rollback else [],
    }
    if outcome.after is not None and outcome.state != "failed_precheck":
        what = "after" if outcome.state == "applied" else "after its rollback"
        row.after_commit = _commit_config(session, run_id, change, device, outcome.after, what)
    _log_outcome(log, device.name, name, row)
    session.commit()
    return _result(row)


def _log_outcome(log: JobLogger, device: str, change: str, row: ChangeDevice) -> None:
    """The device's outcome in the run's log; a failed rollback is also a run event
    (``change.rollback_failed``, on the run's page and its live stream)."""
    if row.state == ChangeDeviceState.APPLIED.value:
        log.info(f"{device}: change {change} applied")
    elif row.state == ChangeDeviceState.ROLLBACK_FAILED.value:
        log.log("critical", f"{device}: ROLLBACK FAILED for change {change}: {row.message}")
        session = db.session
        run = session.get(JobRun, row.run_id)
        if run is not None:
            events.record(
                session,
                run,
                events.ROLLBACK_FAILED,
                f"{device}: rollback failed, its config differs from its snapshot",
                data={"device": device, "device_id": row.device_id},
            )
    else:
        log.error(f"{device}: {row.state.replace('_', ' ')}: {row.message}")


def rollback_device(device: DeviceTarget, run_id: int, config: Any, session: Session) -> dict:
    """The rollback wave's unit: an applied device back to its snapshot."""
    log = JobLogger(run_id, JOB_TYPE, device.id)
    change = _change_of_run(session, run_id)
    row = _row(session, run_id, device.id)
    if row.state != ChangeDeviceState.APPLIED.value:
        return _result(row)
    return _restore(device, run_id, change, row, session, log, "the failure budget was spent")


def _restore(
    device: DeviceTarget,
    run_id: int,
    change: Change,
    row: ChangeDevice,
    session: Session,
    log: JobLogger,
    why: str,
) -> dict:
    from app.changes import push

    if row.snapshot_enc is None:
        row.state = ChangeDeviceState.ROLLBACK_FAILED.value
        row.message = f"ROLLBACK FAILED ({why}): no snapshot is kept for this device."
        _log_outcome(log, device.name, change.name, row)
        session.commit()
        return _result(row)
    taken = push.Snapshot(
        name=f"rookery-change-{change.id}-{run_id}",
        platform=device.platform,
        config=crypto.decrypt(row.snapshot_enc),
        checkpoint=row.checkpoint,
    )
    session.commit()  # no transaction stays open while the device is talked to
    try:
        with device.connect() as driver:
            result = push.rollback(driver, taken, device.platform)
    except DriverError as exc:
        row.state = ChangeDeviceState.ROLLBACK_FAILED.value
        row.message = f"ROLLBACK FAILED ({why}): {exc}"
    else:
        row.rollback_method = result.method
        attempts = [rendering.hide(a, changes.secret_values(change)) for a in result.attempts]
        row.details = {**(row.details or {}), "rollback_attempts": attempts}
        verified = "config equals the snapshot" if result.verified else "config differs"
        if result.verified:
            row.state = ChangeDeviceState.ROLLED_BACK.value
            row.message = f"Rolled back ({why}; {result.method}): {verified}."
        else:
            row.state = ChangeDeviceState.ROLLBACK_FAILED.value
            row.message = f"ROLLBACK FAILED ({why}; {result.method}): {verified}."
        if result.after is not None:
            row.after_commit = _commit_config(
                session, run_id, change, device, result.after, "after its rollback"
            )
    _log_outcome(log, device.name, change.name, row)
    session.commit()
    return _result(row)


# ---------------------------------------------------------------------- end


def finish(run_id: int, session: Session) -> dict[str, Any]:
    """The run's summary (in its ending's transaction): devices no unit reached are
    not attempted, the snapshots are dropped, the states counted."""
    session.execute(
        update(ChangeDevice)
        .where(
            ChangeDevice.run_id == run_id,
            ChangeDevice.state == ChangeDeviceState.PENDING.value,
        )
        .values(state=ChangeDeviceState.NOT_ATTEMPTED.value, message="Not attempted.")
    )
    session.execute(
        update(ChangeDevice).where(ChangeDevice.run_id == run_id).values(snapshot_enc=None)
    )
    counts = Counter(
        session.scalars(select(ChangeDevice.state).where(ChangeDevice.run_id == run_id))
    )
    shown = ", ".join(f"{n} {state.replace('_', ' ')}" for state, n in sorted(counts.items()))
    summary: dict[str, Any] = {"change_devices": dict(counts), "message": f"change: {shown}"}
    if counts[ChangeDeviceState.ROLLBACK_FAILED.value]:
        # the rollback_failed webhook event (app/webhooks.py) names them
        summary["rollback_failed"] = sorted(
            session.scalars(
                select(ChangeDevice.device_name).where(
                    ChangeDevice.run_id == run_id,
                    ChangeDevice.state == ChangeDeviceState.ROLLBACK_FAILED.value,
                )
            )
        )
    return summary


def status_of(change: Change) -> str:
    """The change's status as people read it: its review status until it is applied,
    then its latest run's: applying, applied, partially_applied, rolled_back, failed."""
    if change.run_id is None:
        return change.status
    run = db.session.get(JobRun, change.run_id)
    if run is None:
        return change.status
    if run.status in ACTIVE_RUN:
        return "applying"
    counts = Counter(
        db.session.scalars(select(ChangeDevice.state).where(ChangeDevice.run_id == run.id))
    )
    applied = counts[ChangeDeviceState.APPLIED.value]
    if counts[ChangeDeviceState.ROLLBACK_FAILED.value] or counts[ChangeDeviceState.PUSHING.value]:
        return "failed"
    if run.status == RunStatus.CANCELLED.value and not applied:
        return "cancelled"
    if applied and applied == sum(counts.values()):
        return "applied"
    if applied:
        return "partially_applied"
    if counts[ChangeDeviceState.ROLLED_BACK.value]:
        return "rolled_back"
    return "failed"


def device_states(run_id: int) -> list[ChangeDevice]:
    return list(
        db.session.scalars(
            select(ChangeDevice)
            .where(ChangeDevice.run_id == run_id)
            .order_by(ChangeDevice.wave, ChangeDevice.device_name)
        )
    )


def state_view(row: ChangeDevice, *, run_ended: bool) -> dict[str, Any]:
    """A device's row as the API shows it (never the snapshot); a device still pending
    when its run ended (cancelled before its wave) is shown as not attempted."""
    state = row.state
    if run_ended and state == ChangeDeviceState.PENDING.value:
        state = ChangeDeviceState.NOT_ATTEMPTED.value
    return {
        "device": {"id": row.device_id, "name": row.device_name},
        "wave": row.wave,
        "state": state,
        "message": row.message,
        "commands": row.commands,
        "rollback_method": row.rollback_method,
        "before_commit": row.before_commit,
        "after_commit": row.after_commit,
        "checks": row.details or {},
        "updated_at": row.updated_at.isoformat() if row.updated_at else None,
    }
