"""Compliance rules and results: ``/api/v1/compliance``."""

from __future__ import annotations

from flask import request

from app.api import paging
from app.api import schemas as s
from app.api.base import ID, actor, bp, requires, responses, spec
from app.models import Role
from app.services import compliance


@bp.get("/compliance/rules")
@spec.validate(query=s.Page, resp=responses(HTTP_200=s.ComplianceRuleList), tags=["compliance"])
@requires(Role.VIEWER)
def list_compliance_rules():
    """Rules by name: text rules and registered Python rule modules."""
    q: s.Page = request.context.query
    compliance.sync_modules()
    rows, next_cursor = paging.page_items(
        compliance.list_rules(), lambda r: (r.name,), [str], cursor=q.cursor, limit=q.limit
    )
    return paging.envelope([compliance.rule_view(r) for r in rows], next_cursor)


@bp.post("/compliance/rules")
@spec.validate(
    json=s.ComplianceRuleCreate, resp=responses(HTTP_201=s.ComplianceRuleOut), tags=["compliance"]
)
@requires(Role.OPERATOR)
def create_compliance_rule():
    """Add a rule (audited); a check of every device in its scope starts."""
    body: s.ComplianceRuleCreate = request.context.json
    rule = compliance.create_rule(actor=actor(), **body.model_dump())
    return compliance.rule_view(rule), 201


@bp.get(f"/compliance/rules/<{ID}:rule_id>")
@spec.validate(resp=responses(HTTP_200=s.ComplianceRuleOut), tags=["compliance"])
@requires(Role.VIEWER)
def get_compliance_rule(rule_id: int):
    """One rule."""
    return compliance.rule_view(compliance.get_rule(rule_id))


@bp.patch(f"/compliance/rules/<{ID}:rule_id>")
@spec.validate(
    json=s.ComplianceRulePatch, resp=responses(HTTP_200=s.ComplianceRuleOut), tags=["compliance"]
)
@requires(Role.OPERATOR)
def update_compliance_rule(rule_id: int):
    """Change a rule (audited): a new version, checked again on every device in scope."""
    body: s.ComplianceRulePatch = request.context.json
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    rule = compliance.update_rule(rule_id, actor=actor(), **changes)
    return compliance.rule_view(rule)


@bp.delete(f"/compliance/rules/<{ID}:rule_id>")
@spec.validate(resp=responses(HTTP_204=None), tags=["compliance"])
@requires(Role.OPERATOR)
def delete_compliance_rule(rule_id: int):
    """Remove a rule with its results and history (audited)."""
    compliance.delete_rule(rule_id, actor=actor())
    return "", 204


@bp.get("/compliance")
@spec.validate(
    query=s.ComplianceQuery, resp=responses(HTTP_200=s.ComplianceSummaryOut), tags=["compliance"]
)
@requires(Role.VIEWER)
def compliance_summary():
    """Per rule: devices complying, failing, not checkable, out of scope (filters: tag,
    platform, severity)."""
    q: s.ComplianceQuery = request.context.query
    items = compliance.summary(tag=q.tag, platform=q.platform, severity=q.severity)
    rows, next_cursor = paging.page_items(
        items, lambda i: (i.rule.name,), [str], cursor=q.cursor, limit=q.limit
    )
    return paging.envelope(compliance.summary_view(rows), next_cursor)


@bp.get(f"/devices/<{ID}:device_id>/compliance")
@spec.validate(resp=responses(HTTP_200=s.DeviceComplianceOut), tags=["compliance"])
@requires(Role.VIEWER)
def device_compliance(device_id: int):
    """A device's result per rule in its scope, with the remediation commands."""
    return compliance.device_view(device_id)
