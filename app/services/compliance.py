"""Compliance: the rules every backed-up config is checked against, and the results.

A rule is text (``required`` lines, ``forbidden`` lines, see app/compliance/engine.py)
edited on the pages or the API, or a drop-in Python rule module in the folder of
``ROOKERY_COMPLIANCE_RULES_PATH`` (registered here as a read-only rule row so that its
results, counts and history work like any other's).

Checks run

- in a config backup's finalize step, for the devices whose config changed, on the
  commit that holds them (``check``, called through ``app.jobs.check_compliance`` in a
  SAVEPOINT: a broken rule never fails a backup);
- as a run of its own (the "Compliance check" job) when a rule is created or edited:
  every device in scope whose result is missing or was computed by an older version of
  a rule is checked again (``check(stale_only=True)``).

Each device keeps one result per rule in scope (``compliance_results``, with the commit
it was computed on); a device falling out of or coming back into compliance adds a row
to ``compliance_changes`` (its history) and, for a transition, a ``compliance_changed``
entry in the run's result, which webhooks deliver.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import case, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, selectinload

from app import audit, compliance, config_store, platforms
from app.errors import Conflict, NotFound, ValidationError
from app.extensions import db
from app.models import (
    SEVERITIES,
    ComplianceChange,
    ComplianceResult,
    ComplianceRule,
    Device,
    Job,
    LatestConfig,
    Tag,
    User,
    utcnow,
)
from app.services import actor_name, flush_unique, get_row

logger = logging.getLogger(__name__)

#: the job whose runs re-check the fleet after a rule is created or edited
CHECK_JOB_NAME = "Compliance check"
CHECK_JOB_TYPE = "compliance_check"
#: devices read and checked per transaction step
BATCH = 500
#: transitions a run's result carries (for its webhooks) at most; the rest are counted
MAX_CHANGES_IN_RESULT = 200
MAX_NAME = 128
MAX_DESCRIPTION = 2000
MAX_LIST = 50


# --------------------------------------------------------------------------- rules


def list_rules(*, severity: str | None = None) -> list[ComplianceRule]:
    """Every rule by name (text rules and registered modules)."""
    query = select(ComplianceRule).order_by(ComplianceRule.name)
    if severity:
        query = query.where(ComplianceRule.severity == severity)
    return list(db.session.scalars(query))


def get_rule(rule_id: int) -> ComplianceRule:
    return get_row(ComplianceRule, rule_id, "compliance rule")


def _clean_list(value: Any, what: str, errors: dict[str, str]) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        errors[what] = f"{what.capitalize()} are a list of names."
        return []
    items = sorted({v.strip() for v in value if v.strip()})
    if len(items) > MAX_LIST or any(len(v) > 64 or "\x00" in v for v in items):
        errors[what] = f"At most {MAX_LIST} {what} of at most 64 characters."
    return items


def clean_rule(fields: dict[str, Any]) -> dict[str, Any]:
    """A rule's fields checked and tidied (the text compiled: a rule that cannot be used
    is refused here, with the line that is wrong), else ValidationError."""
    errors: dict[str, str] = {}
    name = str(fields.get("name") or "").strip()
    if not name:
        errors["name"] = "Give the rule a name."
    elif len(name) > MAX_NAME or "\x00" in name:
        errors["name"] = f"At most {MAX_NAME} characters, no NUL."
    description = str(fields.get("description") or "").strip()
    if len(description) > MAX_DESCRIPTION or "\x00" in description:
        errors["description"] = f"At most {MAX_DESCRIPTION} characters, no NUL."
    severity = str(fields.get("severity") or "medium").strip().lower()
    if severity not in SEVERITIES:
        errors["severity"] = f"Severity is one of {', '.join(SEVERITIES)}."
    rule_platforms = _clean_list(fields.get("platforms"), "platforms", errors)
    known = set(platforms.known_platforms())
    unknown = [p for p in rule_platforms if platforms.platform_key(p) not in known]
    if unknown and "platforms" not in errors:
        hint = platforms.suggest(unknown[0])
        errors["platforms"] = f"Unknown platform {unknown[0]!r}" + (
            f" (did you mean {hint!r}?)." if hint else "."
        )
    rule_platforms = sorted({platforms.platform_key(p) for p in rule_platforms})
    tags = _clean_list(fields.get("tags"), "tags", errors)
    required = _text(fields.get("required"))
    forbidden = _text(fields.get("forbidden"))
    cleaned = {
        "name": name,
        "description": description,
        "severity": severity,
        "platforms": rule_platforms,
        "tags": tags,
        "required": required,
        "forbidden": forbidden,
    }
    if "name" not in errors:
        try:
            compliance.compile_rule(_spec(cleaned))
        except compliance.RuleError as exc:
            errors[exc.field if exc.field in ("required", "forbidden") else "required"] = str(exc)
    if errors:
        raise ValidationError(" ".join(errors.values()), fields=errors)
    return cleaned


def _text(value: Any) -> str:
    text = "" if value is None else str(value)
    # a text area sends CRLF; trailing blanks are noise
    return "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n")).strip("\n")


def _spec(fields: dict[str, Any]) -> compliance.RuleSpec:
    return compliance.RuleSpec(
        name=fields["name"],
        required=fields.get("required") or "",
        forbidden=fields.get("forbidden") or "",
        platforms=tuple(fields.get("platforms") or ()),
        tags=tuple(fields.get("tags") or ()),
    )


def rule_view(rule: ComplianceRule) -> dict[str, Any]:
    """A rule as the API shows it."""
    return {
        "id": rule.id,
        "name": rule.name,
        "description": rule.description,
        "severity": rule.severity,
        "platforms": list(rule.platforms or []),
        "tags": list(rule.tags or []),
        "required": rule.required,
        "forbidden": rule.forbidden,
        "module": rule.module_path,
        "skipped_reason": rule.skipped_reason,
        "version": rule.version,
        "updated_at": rule.updated_at.isoformat() if rule.updated_at else None,
        "updated_by": rule.updated_by,
    }


def create_rule(*, actor: User | str | None, **fields: Any) -> ComplianceRule:
    """Add a text rule (audited; commits) and start a check of the devices in its scope."""
    cleaned = clean_rule(fields)
    rule = ComplianceRule(**cleaned, updated_by=actor_name(actor), version=1)
    db.session.add(rule)
    flush_unique(f"A rule named {cleaned['name']!r} exists.")
    audit.record(
        actor=actor,
        action="compliance_rule.create",
        object_type="compliance_rule",
        object_id=rule.id,
        summary=f"Compliance rule {rule.name} created",
        after=rule_view(rule),
    )
    db.session.commit()
    start_check(actor, f"rule {rule.name} created")
    return rule


def update_rule(rule_id: int, *, actor: User | str | None, **changes: Any) -> ComplianceRule:
    """Change a text rule (audited; commits): a new version, checked again fleet-wide."""
    rule = get_rule(rule_id)
    if rule.module_path:
        raise Conflict(
            f"Rule {rule.name!r} comes from the module {Path(rule.module_path).name}: "
            "edit the file."
        )
    before = rule_view(rule)
    current = {k: before[k] for k in ("name", "description", "severity", "platforms", "tags")}
    current.update(required=rule.required, forbidden=rule.forbidden)
    current.update({k: v for k, v in changes.items() if k in current})
    cleaned = clean_rule(current)
    for key, value in cleaned.items():
        setattr(rule, key, value)
    rule.version += 1
    rule.updated_at = utcnow()
    rule.updated_by = actor_name(actor)
    flush_unique(f"A rule named {cleaned['name']!r} exists.")
    audit.record(
        actor=actor,
        action="compliance_rule.update",
        object_type="compliance_rule",
        object_id=rule.id,
        summary=f"Compliance rule {rule.name} changed",
        before=before,
        after=rule_view(rule),
    )
    db.session.commit()
    start_check(actor, f"rule {rule.name} changed")
    return rule


def delete_rule(rule_id: int, *, actor: User | str | None) -> None:
    """Remove a text rule with its results and history (audited; commits)."""
    rule = get_rule(rule_id)
    if rule.module_path:
        raise Conflict(
            f"Rule {rule.name!r} comes from the module {Path(rule.module_path).name}: "
            "remove the file."
        )
    audit.record(
        actor=actor,
        action="compliance_rule.delete",
        object_type="compliance_rule",
        object_id=rule.id,
        summary=f"Compliance rule {rule.name} deleted",
        before=rule_view(rule),
    )
    db.session.delete(rule)
    db.session.commit()


def check_job() -> Job:
    """The job whose runs check the fleet again (made on first use, unscheduled)."""
    from app.services import jobs

    job = db.session.scalar(select(Job).where(Job.name == CHECK_JOB_NAME))
    if job is None:
        job = jobs.create_job(
            name=CHECK_JOB_NAME,
            job_type=CHECK_JOB_TYPE,
            description="Checks every device's latest config against the compliance rules "
            "that are new or changed since its last check. Started when a rule is saved.",
            actor="system",
        )
    return job


def start_check(actor: User | str | None, reason: str) -> int | None:
    """Start a run of the check job (unless one is queued already); its id, or None when
    it could not start (the job disabled): the next backup or run catches up."""
    from app.services import runs

    try:
        job = check_job()
        return runs.start_run(job, triggered_by=reason[:120], actor=actor).id
    except Conflict as exc:  # disabled, or a run already waiting that covers this
        logger.info("Compliance check not started: %s", exc)
        return None


# --------------------------------------------------------------- module rules

_modules_lock = threading.Lock()
_modules: dict[str, compliance.ModuleRule] = {}


def modules_folder() -> Path:
    """Where drop-in rule modules live: ROOKERY_COMPLIANCE_RULES_PATH, else
    ``<instance>/compliance_rules``."""
    setting = current_app.config.get("ROOKERY_COMPLIANCE_RULES_PATH") or ""
    if setting:
        return Path(setting).expanduser()
    return Path(current_app.instance_path) / "compliance_rules"


def sync_modules(session: Session | None = None) -> list[compliance.SkippedModule]:
    """Discover the rule modules and register each as a rule row; a module that is
    broken or gone keeps its row (and results) with the reason it is skipped. Returns
    the skipped modules."""
    session = session or db.session
    found, skipped = compliance.discover(modules_folder())
    by_name = {rule.name: rule for rule in found}
    rows = {r.name: r for r in session.scalars(select(ComplianceRule))}
    for name, module in by_name.items():
        row = rows.get(name)
        if row is not None and not row.module_path:
            skipped.append(
                compliance.SkippedModule(
                    path=module.path, reason=f"a text rule named {name!r} exists"
                )
            )
            continue
        values = {
            "description": module.description,
            "severity": module.severity,
            "platforms": sorted(module.platforms),
            "tags": sorted(module.tags),
            "module_path": module.path,
            "skipped_reason": None,
        }
        if row is None:
            session.add(
                ComplianceRule(name=name, required="", forbidden="", updated_by="module", **values)
            )
        elif any(getattr(row, k) != v for k, v in values.items()):
            for key, value in values.items():
                setattr(row, key, value)
            row.version += 1
            row.updated_at = utcnow()
    reasons = {Path(s.path).resolve(): s.reason for s in skipped}
    for row in rows.values():
        if row.module_path and row.name not in by_name:
            reason = reasons.get(Path(row.module_path).resolve(), "the module file is gone")
            if row.skipped_reason != reason:
                row.skipped_reason = reason
    session.flush()
    with _modules_lock:
        _modules.clear()
        _modules.update(by_name)
    return skipped


# ----------------------------------------------------------------------- checks


@dataclass
class _Rule:
    row_id: int
    name: str
    severity: str
    version: int
    platforms: tuple[str, ...]
    tags: tuple[str, ...]
    compiled: Any = None
    module: compliance.ModuleRule | None = None

    def in_scope(self, platform: str, tags: Iterable[str]) -> bool:
        return compliance.in_scope(self.compiled or self.module, platform, tags)


@dataclass
class CheckSummary:
    """What one check did: devices read, (device, rule) pairs checked, failing pairs,
    and the transitions (for the run's result and its webhooks)."""

    devices: int = 0
    checked: int = 0
    failing: int = 0
    changes: list[dict[str, Any]] = field(default_factory=list)
    changes_total: int = 0

    def as_result(self) -> dict[str, Any]:
        return {
            "devices_checked": self.devices,
            "checks": self.checked,
            "failing": self.failing,
            "compliance_changes": self.changes,
            "compliance_changes_total": self.changes_total,
        }


def _rules(session: Session, *, sync: bool = True) -> list[_Rule]:
    """The rules checks use now: text rules compiled, modules that load. ``sync``
    registers the rule modules first (it writes rows: not from a backup's device units,
    which run side by side)."""
    if sync:
        sync_modules(session)
        with _modules_lock:
            modules = dict(_modules)
    else:
        found, _ = compliance.discover(modules_folder())
        modules = {rule.name: rule for rule in found}
    rules = []
    for row in session.scalars(select(ComplianceRule).order_by(ComplianceRule.id)):
        rule = _Rule(
            row_id=row.id,
            name=row.name,
            severity=row.severity,
            version=row.version,
            platforms=tuple(row.platforms or ()),
            tags=tuple(row.tags or ()),
        )
        if row.module_path:
            if row.skipped_reason or row.name not in modules:
                continue
            rule.module = modules[row.name]
        else:
            try:
                rule.compiled = compliance.compile_rule(
                    _spec(
                        {
                            "name": row.name,
                            "required": row.required,
                            "forbidden": row.forbidden,
                            "platforms": row.platforms,
                            "tags": row.tags,
                        }
                    )
                )
            except compliance.RuleError as exc:  # saved before a stricter check: skipped
                logger.warning("Compliance rule %s is skipped: %s", row.name, exc)
                continue
        rules.append(rule)
    return rules


_cache_lock = threading.Lock()


#: runs whose backup units check configs: the rules and the stored configs' digests as
#: they were when the run's first unit asked (a few runs kept, newest last)
_RUNS_KEPT = 8
_runs: OrderedDict[tuple[str, int], tuple[list[_Rule], dict[int, str]]] = OrderedDict()


def _run_state(session: Session, run_id: int) -> tuple[list[_Rule], dict[int, str]]:
    """The rules a backup run checks with and the md5 of each device's latest config,
    read once per run (two queries, not two per device): a run checks with the rules as
    they were when it started; a rule saved meanwhile is caught up by its check run."""
    key = (str(session.get_bind().engine.url), run_id)  # run ids are per database
    with _cache_lock:
        if key in _runs:
            return _runs[key]
    if not session.scalar(select(func.count(ComplianceRule.id))):
        state: tuple[list[_Rule], dict[int, str]] = ([], {})
    else:
        digests = dict(
            session.execute(select(LatestConfig.device_id, func.md5(LatestConfig.body))).all()
        )
        state = (_rules(session, sync=False), digests)
    with _cache_lock:
        _runs[key] = state
        while len(_runs) > _RUNS_KEPT:
            _runs.popitem(last=False)
    return state


def evaluate(
    rules: Sequence[_Rule],
    device: dict[str, Any],
    text: str,
    *,
    only: set[int] | None = None,
) -> list[dict[str, Any]]:
    """One config (device: name, host, platform, tags) against every rule in its scope
    (or only the rules ``only`` names): a finding per rule, as plain data (it travels in
    a device result to the backup's finalize), secrets redacted."""
    wanted = [
        rule
        for rule in rules
        if (only is None or rule.row_id in only)
        and rule.in_scope(device["platform"], device["tags"])
    ]
    if not wanted:
        return []
    parsed = compliance.parse_config(text, device["platform"])
    findings = []
    for rule in wanted:
        if rule.module is not None:
            finding = compliance.run_module(rule.module, parsed, device)
        else:
            finding = compliance.check(rule.compiled, parsed)
        findings.append(
            {
                "rule_id": rule.row_id,
                "version": rule.version,
                "compliant": finding.compliant,
                "missing": list(finding.missing),
                "unexpected": [config_store.redact_secrets(x) for x in finding.unexpected],
                "remediation": config_store.redact_secrets(finding.remediation or ""),
                "error": finding.error,
            }
        )
    return findings


def findings_for_backup(
    session: Session, run_id: int, device: dict[str, Any], device_id: int, config: str
) -> list[dict[str, Any]] | None:
    """A backup unit's findings for the config it fetched, or None when there is no rule
    or the config is the device's latest already (the finalize stores changed ones only)."""
    rules, digests = _run_state(session, run_id)
    if not rules:
        return None
    if digests.get(device_id) == hashlib.md5(config.encode(), usedforsecurity=False).hexdigest():
        return None
    return evaluate(rules, device, config)


def check(
    session: Session,
    *,
    device_ids: Sequence[int] | None = None,
    stale_only: bool = False,
    run_id: int | None = None,
    progress: Any = None,
) -> CheckSummary:
    """Check devices' latest configs against the rules, in ``session`` (no commit).

    ``device_ids``: these devices, else every device with a backed-up config.
    ``stale_only``: only the (device, rule) pairs with no result yet or one computed by
    an older version of the rule or on an older config. Results of rules a device is out
    of scope of are removed. ``progress(done, total)`` is told per batch.
    """
    summary = CheckSummary()
    rules = _rules(session)
    query = select(Device.id).join(LatestConfig, LatestConfig.device_id == Device.id)
    if device_ids is not None:
        query = query.where(Device.id.in_(list(device_ids)))
    ids = list(session.scalars(query.order_by(Device.id)))
    for start in range(0, len(ids), BATCH):
        batch = ids[start : start + BATCH]
        devices = session.execute(
            select(Device, LatestConfig.commit, LatestConfig.body)
            .join(LatestConfig, LatestConfig.device_id == Device.id)
            .where(Device.id.in_(batch))
            .options(selectinload(Device.tags))
        ).all()
        previous = _previous(session, batch)
        checked = []
        for device, commit, body in devices:
            info = _info(device)
            only = None
            if stale_only:
                only = {
                    rule.row_id
                    for rule in rules
                    if (found := previous.get((device.id, rule.row_id))) is None
                    or found.rule_version != rule.version
                    or found.commit != commit
                }
            checked.append((device.id, info, commit, evaluate(rules, info, body, only=only)))
        _record(session, checked, rules, previous, run_id, summary)
        if progress is not None:
            progress(min(start + BATCH, len(ids)), len(ids))
    return summary


def record_backup(
    session: Session,
    found: dict[str, list[dict[str, Any]]],
    commit: str,
    run_id: int | None,
) -> CheckSummary:
    """Store a backup's findings (device name -> the findings its unit computed) on the
    commit that holds the configs; removes results of rules a device left the scope of."""
    summary = CheckSummary()
    if not found:
        return summary
    rules = _rules(session)
    devices = list(
        session.scalars(
            select(Device).where(Device.name.in_(list(found))).options(selectinload(Device.tags))
        )
    )
    for start in range(0, len(devices), BATCH):
        batch = devices[start : start + BATCH]
        previous = _previous(session, [d.id for d in batch])
        checked = [(d.id, _info(d), commit, found[d.name]) for d in batch]
        _record(session, checked, rules, previous, run_id, summary)
    return summary


def _info(device: Device) -> dict[str, Any]:
    return {
        "name": device.name,
        "host": device.host,
        "platform": device.platform,
        "tags": [t.name for t in device.tags],
    }


def _previous(session: Session, ids: list[int]) -> dict[tuple[int, int], Any]:
    """The results of these devices, as plain rows, by (device, rule)."""
    rows = session.execute(
        select(
            ComplianceResult.device_id,
            ComplianceResult.rule_id,
            ComplianceResult.rule_version,
            ComplianceResult.commit,
            ComplianceResult.compliant,
        ).where(ComplianceResult.device_id.in_(ids))
    )
    return {(row.device_id, row.rule_id): row for row in rows}


def _record(
    session: Session,
    checked: list[tuple[int, dict[str, Any], str, list[dict[str, Any]]]],
    rules: list[_Rule],
    previous: dict[tuple[int, int], Any],
    run_id: int | None,
    summary: CheckSummary,
) -> None:
    """Write findings (device id, device, commit, findings) as results; a change of
    compliance (or a first check) as history; results out of scope removed."""
    by_id = {rule.row_id: rule for rule in rules}
    rows: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    gone: list[tuple[int, int]] = []
    now = utcnow()
    for device_id, info, commit, findings in checked:
        summary.devices += 1
        for rule in rules:
            if (device_id, rule.row_id) in previous and not rule.in_scope(
                info["platform"], info["tags"]
            ):
                gone.append((device_id, rule.row_id))
        for finding in findings:
            rule = by_id.get(finding["rule_id"])
            if rule is None:  # deleted (or skipped) since the unit checked it
                continue
            before = previous.get((device_id, rule.row_id))
            compliant = finding["compliant"]
            summary.checked += 1
            summary.failing += 0 if compliant else 1
            rows.append(
                {
                    "device_id": device_id,
                    "rule_id": rule.row_id,
                    "commit": commit,
                    "checked_at": now,
                    "rule_version": finding["version"],
                    "compliant": compliant,
                    "missing": finding["missing"],
                    "unexpected": finding["unexpected"],
                    "remediation": finding["remediation"],
                    "error": finding["error"],
                }
            )
            if before is not None and before.compliant == compliant:
                continue
            changes.append(
                {
                    "at": now,
                    "device_id": device_id,
                    "rule_id": rule.row_id,
                    "commit": commit,
                    "compliant": compliant,
                    "missing": finding["missing"],
                    "unexpected": finding["unexpected"],
                    "run_id": run_id,
                }
            )
            if before is not None:  # a first check is history, not news
                summary.changes_total += 1
                if len(summary.changes) < MAX_CHANGES_IN_RESULT:
                    summary.changes.append(
                        {
                            "device": info["name"],
                            "rule": rule.name,
                            "severity": rule.severity,
                            "compliant": compliant,
                            "missing": finding["missing"],
                            "unexpected": finding["unexpected"],
                            "commit": commit,
                        }
                    )
    for device_id, rule_id in gone:
        session.execute(
            delete(ComplianceResult).where(
                ComplianceResult.device_id == device_id, ComplianceResult.rule_id == rule_id
            )
        )
    if rows:
        insert = pg_insert(ComplianceResult)
        session.execute(
            insert.on_conflict_do_update(
                index_elements=["device_id", "rule_id"],
                set_={
                    key: insert.excluded[key]
                    for key in rows[0]
                    if key not in ("device_id", "rule_id")
                },
            ),
            rows,
        )
    if changes:
        session.execute(pg_insert(ComplianceChange), changes)


# ----------------------------------------------------------------------- reading


@dataclass
class RuleSummary:
    rule: ComplianceRule
    compliant: int
    failing: int
    errors: int
    out_of_scope: int


def summary(
    *, tag: str | None = None, platform: str | None = None, severity: str | None = None
) -> list[RuleSummary]:
    """Per rule: how many devices (with a backed-up config, of the tag and platform
    asked for) comply, fail, could not be checked, or are out of its scope."""
    devices = select(Device.id).join(LatestConfig, LatestConfig.device_id == Device.id)
    if tag:
        devices = devices.where(Device.tags.any(Tag.name == tag))
    if platform:
        devices = devices.where(Device.platform == platform)
    device_ids = devices.subquery()
    total = db.session.scalar(select(func.count()).select_from(device_ids)) or 0
    counts = {
        row.rule_id: row
        for row in db.session.execute(
            select(
                ComplianceResult.rule_id,
                func.count().filter(ComplianceResult.compliant.is_(True)).label("ok"),
                func.count()
                .filter(ComplianceResult.compliant.is_(False), ComplianceResult.error.is_(None))
                .label("bad"),
                func.count().filter(ComplianceResult.error.isnot(None)).label("errors"),
            )
            .where(ComplianceResult.device_id.in_(select(device_ids.c.id)))
            .group_by(ComplianceResult.rule_id)
        )
    }
    items = []
    for rule in list_rules(severity=severity):
        row = counts.get(rule.id)
        ok, bad, errors = (row.ok, row.bad, row.errors) if row else (0, 0, 0)
        items.append(RuleSummary(rule, ok, bad, errors, max(0, total - ok - bad - errors)))
    return items


def summary_view(items: list[RuleSummary]) -> list[dict[str, Any]]:
    return [
        {
            "rule": {"id": s.rule.id, "name": s.rule.name},
            "severity": s.rule.severity,
            "compliant": s.compliant,
            "failing": s.failing,
            "errors": s.errors,
            "not_checked_or_out_of_scope": s.out_of_scope,
        }
        for s in items
    ]


def failing_devices(
    *, tag: str | None = None, platform: str | None = None, severity: str | None = None
) -> list[tuple[Device, list[ComplianceRule]]]:
    """Devices failing at least one rule, each with its failing rules (worst first)."""
    order = case({s: i for i, s in enumerate(reversed(SEVERITIES))}, value=ComplianceRule.severity)
    query = (
        select(Device, ComplianceRule)
        .join(ComplianceResult, ComplianceResult.device_id == Device.id)
        .join(ComplianceRule, ComplianceRule.id == ComplianceResult.rule_id)
        .where(ComplianceResult.compliant.is_(False))
        .order_by(Device.name, order, ComplianceRule.name)
    )
    if tag:
        query = query.where(Device.tags.any(Tag.name == tag))
    if platform:
        query = query.where(Device.platform == platform)
    if severity:
        query = query.where(ComplianceRule.severity == severity)
    grouped: dict[int, tuple[Device, list[ComplianceRule]]] = {}
    for device, rule in db.session.execute(query.limit(5000)):
        grouped.setdefault(device.id, (device, []))[1].append(rule)
    return list(grouped.values())


def device_results(device_id: int) -> list[tuple[ComplianceRule, ComplianceResult]]:
    """A device's result per rule in scope: failing first, then by name."""
    if db.session.get(Device, device_id) is None:
        raise NotFound(f"No device #{device_id}.")
    return [
        (rule, result)
        for result, rule in db.session.execute(
            select(ComplianceResult, ComplianceRule)
            .join(ComplianceRule, ComplianceRule.id == ComplianceResult.rule_id)
            .where(ComplianceResult.device_id == device_id)
            .order_by(ComplianceResult.compliant, ComplianceRule.name)
        )
    ]


def rule_results(rule_id: int, limit: int = 1000) -> list[tuple[Device, ComplianceResult]]:
    """A rule's results by device: failing (and not checkable) first, then by name."""
    return [
        (device, result)
        for result, device in db.session.execute(
            select(ComplianceResult, Device)
            .join(Device, Device.id == ComplianceResult.device_id)
            .where(ComplianceResult.rule_id == rule_id)
            .order_by(ComplianceResult.compliant, Device.name)
            .limit(limit)
        )
    ]


def device_view(device_id: int) -> dict[str, Any]:
    """``GET /api/v1/devices/{id}/compliance``."""
    results = device_results(device_id)
    latest = db.session.get(LatestConfig, device_id)
    checked = max((r.checked_at for _, r in results), default=None)
    return {
        "commit": latest.commit if latest else None,
        "checked_at": checked.isoformat() if checked else None,
        "items": [
            {
                "rule": {"id": rule.id, "name": rule.name},
                "severity": rule.severity,
                "compliant": result.compliant,
                "missing": result.missing,
                "unexpected": result.unexpected,
                "remediation": result.remediation,
                "error": result.error,
                "commit": result.commit,
                "checked_at": result.checked_at.isoformat(),
            }
            for rule, result in results
        ],
    }


def device_history(device_id: int, limit: int = 100) -> list[tuple[ComplianceChange, str]]:
    """A device's compliance changes, newest first, with each rule's name."""
    return [
        (change, name)
        for change, name in db.session.execute(
            select(ComplianceChange, ComplianceRule.name)
            .join(ComplianceRule, ComplianceRule.id == ComplianceChange.rule_id)
            .where(ComplianceChange.device_id == device_id)
            .order_by(ComplianceChange.at.desc(), ComplianceChange.id.desc())
            .limit(limit)
        )
    ]


def preview(fields: dict[str, Any], device_id: int) -> tuple[Device, compliance.Finding | None]:
    """A rule as typed, checked against one device's latest config (nothing saved):
    the device and its finding (None: the device is out of the rule's scope)."""
    cleaned = clean_rule({**fields, "name": fields.get("name") or "preview"})
    device = db.session.get(Device, device_id)
    if device is None:
        raise ValidationError("No such device.", fields={"device": "Choose a device."})
    latest = db.session.get(LatestConfig, device_id)
    if latest is None:
        raise ValidationError(
            f"{device.name} has no backed-up config yet: back it up first.",
            fields={"device": "No backup yet."},
        )
    rule = compliance.compile_rule(_spec(cleaned))
    if not compliance.in_scope(rule, device.platform, [t.name for t in device.tags]):
        return device, None
    finding = compliance.check(rule, compliance.parse_config(latest.body, device.platform))
    finding.remediation = config_store.redact_secrets(finding.remediation or "")
    return device, finding


def failing_counts() -> list[tuple[str, str, int]]:
    """(rule, severity, devices failing it) for every rule, for the metrics."""
    return [
        (name, severity, failing or 0)
        for name, severity, failing in db.session.execute(
            select(
                ComplianceRule.name,
                ComplianceRule.severity,
                func.count(ComplianceResult.device_id).filter(
                    ComplianceResult.compliant.is_(False)
                ),
            )
            .outerjoin(ComplianceResult, ComplianceResult.rule_id == ComplianceRule.id)
            .group_by(ComplianceRule.id)
            .order_by(ComplianceRule.name)
        )
    ]
