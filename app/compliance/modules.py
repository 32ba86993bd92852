"""Drop-in compliance rule modules: one Python file in the rules folder = one rule.

A module (``*.py``, its name not starting with ``_``) defines::

    RULE_META = {
        "name": "ntp-servers",            # required, unique among the modules
        "description": "Both NTP servers are set.",   # optional (default: the docstring)
        "severity": "medium",             # low | medium | high | critical (default medium)
        "platforms": ["cisco_ios"],       # optional: netmiko device types, [] = every one
        "tags": ["core"],                 # optional: [] = every device
    }

    def check(config: str, device: dict) -> list:
        ...

``check`` gets the device's backed-up config text and ``{"name", "host", "platform",
"tags"}``, and returns its findings: an empty list when the device is compliant, else one
item per problem, a message (str) or a dict with any of ``message`` (str), ``missing`` and
``unexpected`` (lists of config lines, str) and ``remediation`` (commands, str).

``discover`` imports each module on its own (a module that fails to import, lacks
``RULE_META`` or ``check``, declares bad metadata, repeats a rule name … is skipped with
the reason, and the others go on) and keeps what it loaded: a module is imported again
only when its file changes (modification time or size), so calling ``discover`` before
every check costs a ``stat`` per file, and ``run_module`` never imports.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app import platforms, plugins
from app.compliance.engine import MAX_NAME, Finding, ParsedConfig

logger = logging.getLogger(__name__)

__all__ = ["SEVERITIES", "ModuleRule", "SkippedModule", "discover", "run_module"]

SEVERITIES = ("low", "medium", "high", "critical")
DEFAULT_SEVERITY = "medium"
#: the package rule modules are imported under (plus a hash of their folder)
MODULE_PREFIX = "rookery_compliance_rules"
#: the most entries a module's findings add to ``missing`` or ``unexpected``
MAX_ENTRIES = 1000
#: what stands for a finding that gives no message
NO_MESSAGE = "(the check gave no message)"

_META_KEYS = frozenset({"name", "description", "severity", "platforms", "tags"})
_FINDING_KEYS = ("message", "missing", "unexpected", "remediation")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class ModuleRule:
    """A discovered, valid rule module."""

    name: str
    description: str
    severity: str
    platforms: tuple[str, ...]
    tags: tuple[str, ...]
    path: str


@dataclass(frozen=True)
class SkippedModule:
    """A rule module that cannot be used, and why."""

    path: str
    reason: str


class _Skip(Exception):
    """A module breaks the rule module contract; the message is the reason."""


@dataclass(frozen=True)
class _Loaded:
    """What importing one version of a file gave: its rule and check, or why not."""

    version: tuple[int, int]
    rule: ModuleRule | None
    check: Callable[[str, dict[str, Any]], Any] | None
    reason: str = ""


_loaded: dict[str, _Loaded] = {}
_lock = threading.Lock()


def discover(folder: str | Path) -> tuple[list[ModuleRule], list[SkippedModule]]:
    """The rule modules in ``folder`` (files sorted by name) and those skipped, with the
    reason; a folder that does not exist holds none."""
    folder = Path(folder).expanduser()
    if not folder.exists():
        return [], []
    if not folder.is_dir():
        return [], [SkippedModule(str(folder), "the rules folder is not a folder")]
    rules: list[ModuleRule] = []
    skipped: list[SkippedModule] = []
    by_name: dict[str, ModuleRule] = {}
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith(("_", ".")) or not path.is_file():
            continue
        loaded = _load(path)
        if loaded.rule is None:
            logger.warning("Skipped compliance rule module %s: %s", path, loaded.reason)
            skipped.append(SkippedModule(str(path), loaded.reason))
            continue
        first = by_name.get(loaded.rule.name)
        if first is not None:
            reason = f"rule name {loaded.rule.name!r} is already used by {first.path}"
            logger.warning("Skipped compliance rule module %s: %s", path, reason)
            skipped.append(SkippedModule(str(path), reason))
            continue
        by_name[loaded.rule.name] = loaded.rule
        rules.append(loaded.rule)
    return rules, skipped


def run_module(rule: ModuleRule, config: ParsedConfig | str, device: Mapping[str, Any]) -> Finding:
    """Run ``rule``'s check on a config; never raises.

    Each finding adds its ``missing`` lines to ``missing`` and its ``unexpected`` lines to
    ``unexpected``. Its message (a str finding is a message) says what the check found
    wrong: it goes to ``unexpected``, or to ``missing`` (before its lines) when the
    finding lists missing lines only. The findings' remediations are joined, one after
    the other. A check that raises, returns something else than a list of findings, or
    whose module can no longer be loaded gives ``compliant=False`` and ``error``.
    """
    loaded = _load(Path(rule.path))
    if loaded.check is None or loaded.rule is None:
        return _failed(f"The rule module cannot be loaded: {loaded.reason}")
    if loaded.rule.name != rule.name:
        return _failed(
            f"The rule module changed since it was discovered: it is now rule {loaded.rule.name!r}."
        )
    text = config.text if isinstance(config, ParsedConfig) else config
    info = dict(device)
    info["tags"] = list(info.get("tags") or [])
    try:
        result = loaded.check(text, info)
    except (Exception, SystemExit) as exc:
        where = _where(exc, rule.path)
        logger.warning("Compliance rule module %s raised%s: %r", rule.name, where, exc)
        return _failed(f"check() raised {plugins.describe(exc)}{where}")
    try:
        return _finding(result)
    except _Skip as exc:
        return _failed(str(exc))


def _failed(error: str) -> Finding:
    return Finding(compliant=False, missing=[], unexpected=[], remediation="", error=error)


def _where(exc: BaseException, path: str) -> str:
    """`` (line 12 of ntp.py)``: the module's last line the exception went through."""
    name = Path(path).name
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).name == name]
    return f" (line {frames[-1].lineno} of {name})" if frames else ""


def _finding(result: Any) -> Finding:
    if not isinstance(result, list | tuple):
        raise _Skip(
            f"check() returned {type(result).__name__}, not a list of findings "
            "(an empty list when the device is compliant)."
        )
    missing: list[str] = []
    unexpected: list[str] = []
    remediation: list[str] = []
    for number, item in enumerate(result, 1):
        if isinstance(item, str):
            unexpected.append(item or NO_MESSAGE)
            continue
        if not isinstance(item, dict):
            raise _Skip(f"finding {number} is a {type(item).__name__}, not a message or a dict.")
        unknown = sorted(str(k) for k in item if k not in _FINDING_KEYS)
        if unknown:
            raise _Skip(
                f"finding {number} has unknown keys {', '.join(unknown)} "
                f"(a finding has {', '.join(_FINDING_KEYS)})."
            )
        message = item.get("message")
        if message is not None and not isinstance(message, str):
            raise _Skip(f'finding {number}: "message" must be text.')
        lines = {key: _lines(item, key, number) for key in ("missing", "unexpected")}
        fix = item.get("remediation") or ""
        if not isinstance(fix, str):
            raise _Skip(f'finding {number}: "remediation" must be text.')
        if message:
            only_missing = lines["missing"] and not lines["unexpected"]
            (missing if only_missing else unexpected).append(message)
        elif not lines["missing"] and not lines["unexpected"]:
            unexpected.append(NO_MESSAGE)
        missing.extend(lines["missing"])
        unexpected.extend(lines["unexpected"])
        if fix.strip() and fix.strip("\n") not in remediation:
            remediation.append(fix.strip("\n"))
    return Finding(
        compliant=not result,
        missing=_capped(missing),
        unexpected=_capped(unexpected),
        remediation="\n".join(remediation),
    )


def _lines(item: dict[str, Any], key: str, number: int) -> list[str]:
    value = item.get(key)
    if value is None:
        return []
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise _Skip(f'finding {number}: "{key}" must be a list of config lines (text).')
    return list(value)


def _capped(entries: list[str]) -> list[str]:
    if len(entries) <= MAX_ENTRIES:
        return entries
    return [*entries[: MAX_ENTRIES - 1], f"… and {len(entries) - MAX_ENTRIES + 1} more"]


# ------------------------------------------------------------------------ loading


def _load(path: Path) -> _Loaded:
    """The module at ``path``, imported once per version of the file."""
    key = str(path.resolve())
    try:
        stat = path.stat()
    except OSError as exc:
        return _Loaded((0, 0), None, None, f"cannot be read: {exc.strerror or exc}")
    version = (stat.st_mtime_ns, stat.st_size)
    with _lock:
        loaded = _loaded.get(key)
        if loaded is None or loaded.version != version:
            try:
                rule, check = _import(path)
                loaded = _Loaded(version, rule, check)
            except _Skip as exc:
                loaded = _Loaded(version, None, None, str(exc))
            _loaded[key] = loaded
    return loaded


def _import(path: Path) -> tuple[ModuleRule, Callable[[str, dict[str, Any]], Any]]:
    try:
        module = plugins.import_file(path, MODULE_PREFIX)
    except plugins.ImportFailed as exc:
        raise _Skip(str(exc)) from None
    name = module.__name__
    try:
        return _rule(module, path), _check(getattr(module, "check", None))
    except _Skip:
        sys.modules.pop(name, None)
        raise
    except Exception as exc:  # whatever odd value a module declares
        sys.modules.pop(name, None)
        raise _Skip(f"invalid RULE_META or check: {plugins.describe(exc)}") from None


def _rule(module: Any, path: Path) -> ModuleRule:
    meta = getattr(module, "RULE_META", None)
    if meta is None:
        raise _Skip("no RULE_META defined")
    if not isinstance(meta, dict):
        raise _Skip(f"RULE_META must be a dict, not {type(meta).__name__}")
    unknown = sorted(str(k) for k in meta if k not in _META_KEYS)
    if unknown:
        logger.warning("Rule module %s: RULE_META ignores unknown keys %s", path, unknown)
    name = meta.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _Skip('RULE_META needs a "name" (text)')
    name = name.strip()
    if len(name) > MAX_NAME or _CONTROL.search(name):
        raise _Skip(f'RULE_META["name"] must be one line of at most {MAX_NAME} characters')
    description = meta.get("description")
    if description is None:
        lines = (module.__doc__ or "").strip().splitlines()
        description = lines[0].strip() if lines else ""
    if not isinstance(description, str):
        raise _Skip('RULE_META["description"] must be text')
    severity = meta.get("severity", DEFAULT_SEVERITY)
    if not isinstance(severity, str) or severity.strip().lower() not in SEVERITIES:
        choices = ", ".join(SEVERITIES)
        raise _Skip(f'RULE_META["severity"] must be one of {choices}, not {severity!r}')
    rule_platforms = (platforms.platform_key(p) for p in _names(meta, "platforms"))
    return ModuleRule(
        name=name,
        description=description.strip(),
        severity=severity.strip().lower(),
        platforms=tuple(dict.fromkeys(rule_platforms)),
        tags=tuple(dict.fromkeys(t.strip() for t in _names(meta, "tags"))),
        path=str(path),
    )


def _names(meta: dict[str, Any], key: str) -> list[str]:
    value = meta.get(key, [])
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise _Skip(f'RULE_META["{key}"] must be a list of names, not {type(value).__name__}')
    if not all(isinstance(v, str) and v.strip() for v in value):
        raise _Skip(f'RULE_META["{key}"] must hold names (non-empty text) only')
    return list(value)


def _check(check: Any) -> Callable[[str, dict[str, Any]], Any]:
    problem = plugins.function_problem(check, "check", ("config", "device"))
    if problem is not None:
        raise _Skip(problem)
    return check
