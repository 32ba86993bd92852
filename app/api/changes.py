"""Change sets: ``/api/v1/changes`` — draft, preview, submit, approve or reject, apply."""

from __future__ import annotations

from typing import Any

from flask import request
from sqlalchemy import select

from app.api import paging
from app.api import schemas as s
from app.api.base import ID, actor, bp, requires, responses, spec
from app.api.jobs import device_ids
from app.models import Change, Role
from app.services import changes, rollouts


def _fields(body: Any) -> dict[str, Any]:
    values = body.model_dump(exclude_unset=True, exclude={"targets", "checks"})
    values = {k: v for k, v in values.items() if v is not None}
    if body.targets is not None:
        values["target_tags"] = body.targets.tags
        values["target_device_ids"] = device_ids(body.targets.devices, "targets")
    if body.checks is not None:
        values["checks"] = [c.model_dump() for c in body.checks]
    return values


@bp.get("/changes")
@spec.validate(query=s.Page, resp=responses(HTTP_200=s.ChangeList), tags=["changes"])
@requires(Role.VIEWER)
def list_changes():
    """Change sets, newest first."""
    q: s.Page = request.context.query
    rows, next_cursor = paging.page_query(
        select(Change),
        [paging.Key(Change.id, descending=True)],
        cursor=q.cursor,
        limit=q.limit,
        values=lambda c: (c.id,),
    )
    return paging.envelope([changes.view(c) for c in rows], next_cursor)


@bp.post("/changes")
@spec.validate(json=s.ChangeCreate, resp=responses(HTTP_201=s.ChangeOut), tags=["changes"])
@requires(Role.OPERATOR)
def create_change():
    """Draft a change set (audited)."""
    change = changes.create_change(actor=actor(), **_fields(request.context.json))
    return changes.view(change), 201


@bp.get(f"/changes/<{ID}:change_id>")
@spec.validate(resp=responses(HTTP_200=s.ChangeOut), tags=["changes"])
@requires(Role.VIEWER)
def get_change(change_id: int):
    """One change set, with its latest apply's devices (wave, state, commits)."""
    return changes.view(changes.get_change(change_id), devices=True)


@bp.patch(f"/changes/<{ID}:change_id>")
@spec.validate(json=s.ChangePatch, resp=responses(HTTP_200=s.ChangeOut), tags=["changes"])
@requires(Role.OPERATOR)
def update_change(change_id: int):
    """Edit a change set; editing what it does withdraws its approval (audited)."""
    change = changes.update_change(change_id, actor=actor(), **_fields(request.context.json))
    return changes.view(change)


@bp.post(f"/changes/<{ID}:change_id>/preview")
@spec.validate(resp=responses(HTTP_200=s.ChangePreviewOut), tags=["changes"])
@requires(Role.OPERATOR)
def preview_change(change_id: int):
    """Per target device: the rendered commands and what they change in its latest
    backed-up config (hier_config). Nothing is sent to any device. (Operators, who
    write and review changes; viewers see the preview on the change's page.)"""
    return changes.preview_view(changes.preview(change_id))


@bp.post(f"/changes/<{ID}:change_id>/preview/live")
@spec.validate(resp=responses(HTTP_201=s.ChangeApplied), tags=["changes"])
@requires(Role.OPERATOR)
def start_live_preview(change_id: int):
    """Preview against each device's running config, fetched live by a run (read only:
    only the command showing the config is sent); its ``run_id`` (one already running
    is reused). Read the result with GET."""
    return {"run_id": rollouts.start_live_preview(change_id, actor=actor()).id}, 201


@bp.get(f"/changes/<{ID}:change_id>/preview/live")
@spec.validate(resp=responses(HTTP_200=s.ChangeLivePreviewOut), tags=["changes"])
@requires(Role.VIEWER)
def live_preview(change_id: int):
    """The latest live preview: its run, whether it ended, and the devices done so far."""
    run, items = rollouts.live_preview(change_id)
    shown = changes.preview_view(items)
    return {
        **shown,
        "run_id": run.id if run else None,
        "status": run.status if run else None,
        "final": bool(run and run.run_status.is_final),
    }


@bp.post(f"/changes/<{ID}:change_id>/submit")
@spec.validate(resp=responses(HTTP_200=s.ChangeOut), tags=["changes"])
@requires(Role.OPERATOR)
def submit_change(change_id: int):
    """Ask for a review (the template must render for every target)."""
    return changes.view(changes.submit(change_id, actor=actor()))


@bp.post(f"/changes/<{ID}:change_id>/approve")
@spec.validate(json=s.ChangeReview, resp=responses(HTTP_200=s.ChangeOut), tags=["changes"])
@requires(Role.OPERATOR)
def approve_change(change_id: int):
    """Approve a submitted change (not its author's own, unless the setting allows)."""
    body: s.ChangeReview = request.context.json
    return changes.view(changes.review(change_id, actor=actor(), approve=True, note=body.note))


@bp.post(f"/changes/<{ID}:change_id>/reject")
@spec.validate(json=s.ChangeReview, resp=responses(HTTP_200=s.ChangeOut), tags=["changes"])
@requires(Role.OPERATOR)
def reject_change(change_id: int):
    """Turn a submitted change down, saying why."""
    body: s.ChangeReview = request.context.json
    return changes.view(changes.review(change_id, actor=actor(), approve=False, note=body.note))


@bp.post(f"/changes/<{ID}:change_id>/apply")
@spec.validate(resp=responses(HTTP_201=s.ChangeApplied), tags=["changes"])
@requires(Role.OPERATOR)
def apply_change(change_id: int):
    """Apply an approved change: a run pushes it in waves (canary first) with checks and
    rollback. A change not approved, being applied, or whose template does not render
    for a target is refused and nothing is sent."""
    return {"run_id": rollouts.start(change_id, actor=actor()).id}, 201
