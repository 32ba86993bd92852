"""Compliance checks of backed-up configs: declarative rules read with hier_config
(``engine``), and drop-in Python rule modules (``modules``). No database, no Flask."""

from __future__ import annotations

from app.compliance.engine import (
    MAX_LINE_LENGTH,
    MAX_LINES,
    MAX_NAME,
    REGEX_PREFIX,
    CompiledRule,
    Finding,
    ParsedConfig,
    RuleError,
    RuleSpec,
    check,
    compile_rule,
    hier_platform,
    in_scope,
    parse_config,
    rule_text_for,
)
from app.compliance.modules import (
    SEVERITIES,
    ModuleRule,
    SkippedModule,
    discover,
    run_module,
)

__all__ = [
    "MAX_LINES",
    "MAX_LINE_LENGTH",
    "MAX_NAME",
    "REGEX_PREFIX",
    "SEVERITIES",
    "CompiledRule",
    "Finding",
    "ModuleRule",
    "ParsedConfig",
    "RuleError",
    "RuleSpec",
    "SkippedModule",
    "check",
    "compile_rule",
    "discover",
    "hier_platform",
    "in_scope",
    "parse_config",
    "rule_text_for",
    "run_module",
]
