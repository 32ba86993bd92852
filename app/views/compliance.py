"""Compliance pages: the fleet's compliance per rule and per device, and the rule editor
with a "test against a device" preview."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from app.auth import require_role
from app.errors import Conflict, ValidationError
from app.extensions import db
from app.models import SEVERITIES, Device, LatestConfig, Role
from app.services import compliance, inventory
from app.views.common import form_text, refuse_nul

bp = Blueprint("compliance", __name__, url_prefix="/compliance")

FIELDS = ("name", "description", "severity", "platforms", "tags", "required", "forbidden")


def _filters() -> dict[str, str | None]:
    severity = request.args.get("severity") or None
    return {
        "tag": (request.args.get("tag") or "").strip()[:64] or None,
        "platform": (request.args.get("platform") or "").strip()[:64] or None,
        "severity": severity if severity in SEVERITIES else None,
    }


@bp.route("")
@login_required
def index() -> str:
    """Per rule: devices complying, failing, out of scope; per device: its failing rules."""
    filters = _filters()
    compliance.sync_modules()
    db.session.commit()
    return render_template(
        "compliance/index.html",
        summary=compliance.summary(**filters),
        failing=compliance.failing_devices(**filters),
        filters=filters,
        severities=SEVERITIES,
        tags=[t for t, _ in db.session.execute(inventory.list_tags())],
        platforms=sorted(p for p in db.session.scalars(select(Device.platform).distinct()) if p),
    )


def _form_values() -> dict[str, Any]:
    values = {k: request.form.get(k, "") for k in FIELDS}
    for key in ("name", "description", "severity", "platforms", "tags"):
        values[key] = form_text(key)
    return values


def _rule_values(rule: Any) -> dict[str, Any]:
    return {
        "name": rule.name,
        "description": rule.description,
        "severity": rule.severity,
        "platforms": " ".join(rule.platforms or []),
        "tags": " ".join(rule.tags or []),
        "required": rule.required,
        "forbidden": rule.forbidden,
    }


def _form(values: dict[str, Any], rule: Any = None, **context: Any) -> str:
    devices = db.session.execute(
        select(Device.id, Device.name)
        .join(LatestConfig, LatestConfig.device_id == Device.id)
        .order_by(Device.name)
        .limit(2000)
    ).all()
    return render_template(
        "compliance/form.html",
        values=values,
        rule=rule,
        severities=SEVERITIES,
        devices=devices,
        **context,
    )


@bp.route("/rules/new", methods=["GET", "POST"])
@require_role(Role.OPERATOR)
def create_rule() -> str | Response | tuple[str, int]:
    """The new-rule form; saves on POST (a check of the fleet starts)."""
    if request.method == "GET":
        return _form({"severity": "medium"})
    values = _form_values()
    try:
        refuse_nul(values)
        rule = compliance.create_rule(actor=current_user, **values)
    except ValidationError as exc:
        return _form(values, errors=exc.fields, message=exc.message), 422
    except Conflict as exc:
        return _form(values, errors={"name": exc.message}, message=exc.message), 409
    flash(f"Rule {rule.name} saved; every device in its scope is being checked.", "success")
    return redirect(url_for(".show_rule", rule_id=rule.id))


@bp.route("/rules/<int:rule_id>")
@login_required
def show_rule(rule_id: int) -> str:
    """One rule: what it asserts, and each failing device with its remediation."""
    rule = compliance.get_rule(rule_id)
    return render_template(
        "compliance/rule.html",
        rule=rule,
        results=compliance.rule_results(rule.id),
    )


@bp.route("/rules/<int:rule_id>/edit", methods=["GET", "POST"])
@require_role(Role.OPERATOR)
def edit_rule(rule_id: int) -> str | Response | tuple[str, int]:
    """Edit a text rule; saving makes a new version, checked again fleet-wide."""
    rule = compliance.get_rule(rule_id)
    if rule.module_path:
        abort(404)
    if request.method == "GET":
        return _form(_rule_values(rule), rule)
    values = _form_values()
    try:
        refuse_nul(values)
        rule = compliance.update_rule(rule_id, actor=current_user, **values)
    except ValidationError as exc:
        return _form(values, rule, errors=exc.fields, message=exc.message), 422
    except Conflict as exc:
        return _form(values, rule, errors={"name": exc.message}, message=exc.message), 409
    flash(f"Rule {rule.name} saved; every device in its scope is being checked again.", "success")
    return redirect(url_for(".show_rule", rule_id=rule.id))


@bp.route("/rules/<int:rule_id>/delete", methods=["POST"])
@require_role(Role.OPERATOR)
def delete_rule(rule_id: int) -> Response:
    """Remove a text rule with its results."""
    rule = compliance.get_rule(rule_id)
    try:
        compliance.delete_rule(rule_id, actor=current_user)
    except Conflict as exc:
        flash(exc.message, "error")
        return redirect(url_for(".show_rule", rule_id=rule_id))
    flash(f"Rule {rule.name} deleted.", "success")
    return redirect(url_for(".index"))


@bp.route("/rules/preview", methods=["POST"])
@require_role(Role.OPERATOR)
def preview() -> str:
    """The rule as typed, checked against one device's latest config (nothing saved); a
    fragment for the form, its problems included (a 200: htmx swaps only those)."""
    values = _form_values()
    device_id = request.form.get("device", "")
    try:
        refuse_nul(values)
        if not device_id.isdigit():
            raise ValidationError("Choose a device.", fields={"device": "Choose a device."})
        device, finding = compliance.preview(values, int(device_id))
    except ValidationError as exc:
        return render_template("compliance/_preview.html", message=exc.message)
    return render_template("compliance/_preview.html", device=device, finding=finding)
