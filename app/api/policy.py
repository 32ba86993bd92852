"""The command policy of run_commands: the built-in read-only list and the admins' rules."""

from __future__ import annotations

from flask import request

from app.api import schemas as s
from app.api.base import ID, actor, bp, requires, responses, spec
from app.models import Role
from app.services import command_rules


@bp.get("/command-policy")
@spec.validate(resp=responses(HTTP_200=s.CommandPolicyOut), tags=["command policy"])
@requires(Role.VIEWER)
def command_policy():
    """What operators may send: the built-in read-only verbs and filters by platform, and
    the admins' allow and deny rules."""
    return {
        "builtin": command_rules.builtin(),
        "rules": [command_rules.view(r) for r in command_rules.list_rules()],
    }


@bp.post("/command-policy/rules")
@spec.validate(
    json=s.CommandRuleCreate, resp=responses(HTTP_201=s.CommandRuleOut), tags=["command policy"]
)
@requires(Role.ADMIN)
def create_command_rule():
    """Allow operators commands starting with these words, or deny them (audited)."""
    body: s.CommandRuleCreate = request.context.json
    row = command_rules.create_rule(
        kind=body.kind, words=body.words, platform=body.platform, note=body.note, actor=actor()
    )
    return command_rules.view(row), 201


@bp.delete(f"/command-policy/rules/<{ID}:rule_id>")
@spec.validate(resp=responses(HTTP_204=None), tags=["command policy"])
@requires(Role.ADMIN)
def delete_command_rule(rule_id: int):
    """Remove a rule (audited)."""
    command_rules.delete_rule(rule_id, actor=actor())
    return "", 204
