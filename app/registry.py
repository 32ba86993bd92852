"""The job registry: drop-in job modules discovered at start-up, and their parameter schema.

Every ``*.py`` file in ``app/jobs/`` and in the folders of ``ROOKERY_JOBS_PATH`` is one job
type: it defines ``JOB_META`` (``job_type`` plus optional label, description, icon,
default_schedule, params, targets, needs_credentials) and ``run(device, job_id, config, db)``.
A module that cannot be used is logged and kept in ``Registry.skipped`` with the reason, so
one broken plugin never stops the others (or the app) from starting.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from flask import Flask, current_app

from app import plugins
from app.errors import ConfigError, RookeryError, ValidationError

logger = logging.getLogger(__name__)

PARAM_TYPES = ("string", "integer", "number", "boolean", "choice", "list", "secret")
TARGETS = ("devices", "none")
SCHEDULE_KINDS = ("interval", "cron", "once")
JOB_TYPE_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")
EXTENSION_KEY = "rookery_registry"
MODULE_PREFIX = "rookery_jobs"
REQUIRED_MESSAGE = "This parameter is required."

_META_KEYS = frozenset(
    {
        "job_type",
        "label",
        "description",
        "icon",
        "default_schedule",
        "params",
        "targets",
        "needs_credentials",
        "internal",
    }
)
_PARAM_KEYS = frozenset({"name", "type", "label", "help", "default", "required", "choices"})
_TRUE_WORDS = frozenset({"true", "on", "1", "yes"})
_FALSE_WORDS = frozenset({"false", "off", "0", "no"})
_INTEGER_TEXT = re.compile(r"[+-]?\d+")
#: what separates the items of a list parameter given as text (never a comma)
_LINE_BREAK = re.compile(r"\r\n?|\n")


class UnknownJobType(RookeryError):
    """No job type of that name is registered."""


@dataclass(frozen=True, kw_only=True)
class ParamSpec:
    """One parameter a job type takes: what the create form renders and the API validates."""

    name: str
    type: str
    label: str
    help: str = ""
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] = ()

    @property
    def secret(self) -> bool:
        """Encrypted at rest and redacted in events, logs, pages and the API."""
        return self.type == "secret"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "label": self.label,
            "help": self.help,
            "default": list(self.default) if isinstance(self.default, tuple) else self.default,
            "required": self.required,
            "choices": list(self.choices),
            "secret": self.secret,
        }


@dataclass(frozen=True, kw_only=True)
class JobType:
    """A registered job module: its metadata and its ``run`` callable."""

    job_type: str
    label: str
    description: str
    icon: str
    default_schedule: dict[str, Any] | None
    params: tuple[ParamSpec, ...]
    targets: str
    needs_credentials: bool
    source: str
    run: Callable[..., Any]
    #: optional ``finalize(run_id, results, config, db)``: once per run, after every
    #: device unit, in the transaction that writes the final status (the config
    #: backup commits its git commit there)
    finalize: Callable[..., Any] | None = None
    #: optional ``waves(run_id, targets, config, db)``: a generator of ``Wave``s, asked
    #: for the next one after each wave ends (see app/engine/runner/attempt.py); without
    #: it, every device is one wave
    waves: Callable[..., Any] | None = None
    #: optional ``rollback(device, run_id, config, db)``: the unit of a wave whose
    #: ``action`` is ``"rollback"`` (its result replaces the device's earlier one)
    rollback: Callable[..., Any] | None = None
    #: started by Rookery itself (a change's Apply), never created as a job by people
    internal: bool = False

    def param(self, name: str) -> ParamSpec | None:
        """The parameter called ``name``, or None."""
        for spec in self.params:
            if spec.name == name:
                return spec
        return None

    @property
    def secret_params(self) -> tuple[str, ...]:
        """Names of the parameters whose values must never be shown."""
        return tuple(spec.name for spec in self.params if spec.secret)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able metadata for the API and the pages (everything but ``run``)."""
        return {
            "job_type": self.job_type,
            "label": self.label,
            "description": self.description,
            "icon": self.icon,
            "default_schedule": (
                dict(self.default_schedule) if self.default_schedule is not None else None
            ),
            "params": [spec.to_dict() for spec in self.params],
            "targets": self.targets,
            "needs_credentials": self.needs_credentials,
            "source": self.source,
            "internal": self.internal,
        }


@dataclass(frozen=True)
class SkippedModule:
    """A job module (or jobs folder) that could not be registered, and why."""

    source: str
    reason: str


@dataclass
class Registry:
    """The job types found by ``discover``, and the modules it had to skip."""

    types: dict[str, JobType] = field(default_factory=dict)
    skipped: list[SkippedModule] = field(default_factory=list)

    def get(self, job_type: str) -> JobType:
        """The job type called ``job_type``; UnknownJobType if none is registered."""
        try:
            return self.types[job_type]
        except KeyError:
            known = ", ".join(sorted(self.types)) or "(none)"
            raise UnknownJobType(f"Unknown job type {job_type!r}; registered: {known}") from None

    def __contains__(self, job_type: object) -> bool:
        return job_type in self.types

    def sorted(self) -> list[JobType]:
        """Job types in display order: by label, then by name."""
        return sorted(self.types.values(), key=lambda t: (t.label.lower(), t.job_type))


class _Skip(Exception):
    """A module breaks the job module contract; the message is the reason."""


# --- discovery -------------------------------------------------------------------------


def builtin_jobs_dir() -> Path:
    """The ``app/jobs`` folder that ships with Rookery."""
    return Path(__file__).resolve().parent / "jobs"


def job_paths(jobs_path_setting: str) -> list[Path]:
    """The built-in jobs folder, then each folder of ``ROOKERY_JOBS_PATH`` (once each)."""
    paths = [builtin_jobs_dir()]
    seen = {paths[0]}
    for item in (jobs_path_setting or "").split(os.pathsep):
        if not item.strip():
            continue
        path = Path(item.strip()).expanduser().resolve()
        if path not in seen:
            seen.add(path)
            paths.append(path)
    return paths


def discover(paths: Sequence[Path]) -> Registry:
    """Import every job module in ``paths`` (in order; files sorted) and register it."""
    registry = Registry()
    for folder in paths:
        folder = Path(folder)
        if not folder.is_dir():
            _skip(registry, str(folder), "jobs folder does not exist or is not a folder")
            continue
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith(("_", ".")) or not path.is_file():
                continue
            source = str(path)
            try:
                job = _load(path)
            except _Skip as exc:
                _skip(registry, source, str(exc))
                continue
            existing = registry.types.get(job.job_type)
            if existing is not None:
                sys.modules.pop(plugins.module_name(path, MODULE_PREFIX), None)
                _skip(
                    registry,
                    source,
                    f"job type {job.job_type!r} is already registered by {existing.source}",
                )
                continue
            registry.types[job.job_type] = job
            logger.info("Registered job type %s from %s", job.job_type, source)
    return registry


def _skip(registry: Registry, source: str, reason: str) -> None:
    logger.warning("Skipped job module %s: %s", source, reason)
    registry.skipped.append(SkippedModule(source=source, reason=reason))


def _import(path: Path) -> ModuleType:
    try:
        return plugins.import_file(path, MODULE_PREFIX)
    except plugins.ImportFailed as exc:
        raise _Skip(str(exc)) from None


def _load(path: Path) -> JobType:
    module = _import(path)
    try:
        return _build(module, path)
    except _Skip:
        sys.modules.pop(module.__name__, None)
        raise
    except Exception as exc:
        # Whatever odd value a module declares, one plugin must not stop start-up.
        sys.modules.pop(module.__name__, None)
        raise _Skip(f"invalid JOB_META: {type(exc).__name__}: {exc}") from None


def _build(module: ModuleType, path: Path) -> JobType:
    meta = getattr(module, "JOB_META", None)
    if meta is None:
        raise _Skip("no JOB_META defined")
    if not isinstance(meta, dict):
        raise _Skip(f"JOB_META must be a dict, not {type(meta).__name__}")
    run = _check_run(getattr(module, "run", None))

    job_type = meta.get("job_type")
    if job_type is None:
        raise _Skip('JOB_META has no "job_type"')
    if not isinstance(job_type, str):
        raise _Skip(f'JOB_META["job_type"] must be a string, not {type(job_type).__name__}')
    if not JOB_TYPE_PATTERN.fullmatch(job_type):
        raise _Skip(
            f'JOB_META["job_type"] {job_type!r} is invalid: use a lowercase letter, then up to '
            "63 lowercase letters, digits or underscores"
        )
    unknown = sorted(str(k) for k in meta if k not in _META_KEYS)
    if unknown:
        # A typo must not pass silently, but it is no reason to lose the job type.
        logger.warning("Job module %s: JOB_META ignores unknown keys %s", path, ", ".join(unknown))

    label = _text(meta, "label", job_type.replace("_", " ").title())
    description = _text(meta, "description", _first_doc_line(module))
    icon = _text(meta, "icon", "gear")

    targets = meta.get("targets", "devices")
    if targets not in TARGETS:
        raise _Skip(f'JOB_META["targets"] must be "devices" or "none", not {targets!r}')
    needs_credentials = meta.get("needs_credentials", targets == "devices")
    if not isinstance(needs_credentials, bool):
        raise _Skip('JOB_META["needs_credentials"] must be true or false')

    return JobType(
        job_type=job_type,
        label=label,
        description=description,
        icon=icon,
        default_schedule=_schedule(meta.get("default_schedule")),
        params=_params(meta.get("params", [])),
        targets=targets,
        needs_credentials=needs_credentials,
        source=str(path),
        run=run,
        finalize=_check_finalize(getattr(module, "finalize", None)),
        waves=_check_hook(module, "waves", "(run_id, targets, config, db)"),
        rollback=_check_hook(module, "rollback", "(device, run_id, config, db)"),
        internal=bool(meta.get("internal", False)),
    )


def _check_hook(module: Any, name: str, signature: str) -> Callable[..., Any] | None:
    """An optional four-argument function of a job module, or None."""
    hook = getattr(module, name, None)
    if hook is None:
        return None
    if not callable(hook):
        raise _Skip(f"{name} is not callable")
    try:
        inspect.signature(hook).bind(None, None, None, None)
    except TypeError:
        raise _Skip(f"{name}() must accept {signature}") from None
    return hook


def _check_finalize(finalize: Any) -> Callable[..., Any] | None:
    if finalize is None:
        return None
    if not callable(finalize):
        raise _Skip("finalize is not callable")
    try:
        inspect.signature(finalize).bind(None, None, None, None)
    except TypeError:
        raise _Skip("finalize() must accept (run_id, results, config, db)") from None
    return finalize


def _check_run(run: Any) -> Callable[..., Any]:
    problem = plugins.function_problem(run, "run", ("device", "job_id", "config", "db"))
    if problem is not None:
        raise _Skip(problem)
    return run


def _text(meta: Mapping[str, Any], key: str, default: str) -> str:
    value = meta.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise _Skip(f"JOB_META[{key!r}] must be a string, not {type(value).__name__}")
    return value.strip() or default


def _first_doc_line(module: ModuleType) -> str:
    lines = (module.__doc__ or "").strip().splitlines()
    return lines[0].strip() if lines else ""


def _schedule(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _Skip('JOB_META["default_schedule"] must be a dict')
    if value.get("kind") not in SCHEDULE_KINDS:
        raise _Skip(
            'JOB_META["default_schedule"]["kind"] must be "interval", "cron" or "once", '
            f"not {value.get('kind')!r}"
        )
    return dict(value)


def _params(value: Any) -> tuple[ParamSpec, ...]:
    if not isinstance(value, list | tuple):
        raise _Skip('JOB_META["params"] must be a list of dicts')
    specs: list[ParamSpec] = []
    seen: set[str] = set()
    for index, item in enumerate(value):
        spec = _param(index, item)
        if spec.name in seen:
            raise _Skip(f"parameter {spec.name!r} is declared twice")
        seen.add(spec.name)
        specs.append(spec)
    return tuple(specs)


def _param(index: int, item: Any) -> ParamSpec:
    if not isinstance(item, dict):
        raise _Skip(f"params[{index}] must be a dict, not {type(item).__name__}")
    name = item.get("name")
    if not isinstance(name, str) or not name.isidentifier():
        raise _Skip(f"params[{index}] needs a name that is a Python identifier, not {name!r}")
    where = f"parameter {name!r}"
    unknown = sorted(str(k) for k in item if k not in _PARAM_KEYS)
    if unknown:
        raise _Skip(f"{where} has unknown keys: {', '.join(unknown)}")
    kind = item.get("type", "string")
    if kind not in PARAM_TYPES:
        raise _Skip(f"{where} has unknown type {kind!r}; use one of {', '.join(PARAM_TYPES)}")
    spaced = name.replace("_", " ")
    label = item.get("label", spaced[:1].upper() + spaced[1:])
    help_text = item.get("help", "")
    required = item.get("required", False)
    if not isinstance(label, str) or not isinstance(help_text, str):
        raise _Skip(f"{where}: label and help must be strings")
    if not isinstance(required, bool):
        raise _Skip(f"{where}: required must be true or false")

    choices: tuple[str, ...] = ()
    raw_choices = item.get("choices")
    if kind == "choice":
        if (
            not isinstance(raw_choices, list | tuple)
            or not raw_choices
            or not all(isinstance(c, str) and c for c in raw_choices)
        ):
            raise _Skip(f"{where} is a choice and needs a non-empty list of string choices")
        choices = tuple(raw_choices)
        if len(set(choices)) != len(choices):
            raise _Skip(f"{where} lists a choice twice")
    elif raw_choices is not None:
        raise _Skip(f"{where} has choices but its type is {kind!r}, not 'choice'")

    default = _param_default(where, kind, item.get("default"), choices)
    return ParamSpec(
        name=name,
        type=kind,
        label=label,
        help=help_text,
        default=default,
        required=required,
        choices=choices,
    )


def _param_default(where: str, kind: str, default: Any, choices: tuple[str, ...]) -> Any:
    if default is None:
        return None
    if kind == "secret":
        # A value written in a module's source is no secret, and a default would be shown.
        raise _Skip(f"{where} is a secret and may not have a default")
    if kind == "choice":
        if default not in choices:
            raise _Skip(f"{where}: default {default!r} is not one of its choices")
        return default
    if kind == "list":
        if not isinstance(default, list | tuple) or not all(isinstance(v, str) for v in default):
            raise _Skip(f"{where}: default must be a list of strings")
        return tuple(default)
    valid = {
        "string": isinstance(default, str),
        "integer": isinstance(default, int) and not isinstance(default, bool),
        "number": isinstance(default, int | float)
        and not isinstance(default, bool)
        and math.isfinite(default),
        "boolean": isinstance(default, bool),
    }[kind]
    if not valid:
        raise _Skip(f"{where}: default {default!r} is not a valid {kind}")
    return float(default) if kind == "number" else default


# --- parameters ------------------------------------------------------------------------


class _Invalid(Exception):
    """A value does not fit its parameter; the message never quotes the value."""


def validate_params(job_type: JobType, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Coerce form/API values to the declared parameters; ValidationError lists every problem.

    Error messages never quote the value given, so a secret cannot leak through them.
    """
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for spec in job_type.params:
        try:
            values[spec.name] = _param_value(spec, _raw_value(spec, raw))
        except _Invalid as exc:
            errors[spec.name] = str(exc)
    declared = {spec.name for spec in job_type.params}
    for key in sorted(str(k) for k in raw if k not in declared):
        errors[key] = f"Unknown parameter {key!r}"
    if errors:
        raise ValidationError(f"Invalid parameters: {', '.join(errors)}", fields=errors)
    return values


def _raw_value(spec: ParamSpec, raw: Mapping[str, Any]) -> Any:
    # A multi-select or repeated field arrives as several values in a MultiDict.
    getlist = getattr(raw, "getlist", None)
    if spec.type == "list" and callable(getlist):
        items = getlist(spec.name)
        if len(items) > 1:
            return list(items)
    return raw.get(spec.name)


def _missing(spec: ParamSpec) -> Any:
    if spec.default is not None:
        return list(spec.default) if isinstance(spec.default, tuple) else spec.default
    if spec.required:
        raise _Invalid(REQUIRED_MESSAGE)
    # An unticked checkbox is simply absent from a form: it means false.
    return False if spec.type == "boolean" else None


def _param_value(spec: ParamSpec, value: Any) -> Any:
    if value is None:
        return _missing(spec)
    kind = spec.type
    if kind == "secret":
        if not isinstance(value, str):
            raise _Invalid("Expected text.")
        return value if value != "" else _missing(spec)
    if kind == "list":
        items = _to_list(value)
        return items if items else _missing(spec)
    if isinstance(value, str):
        value = value.strip()
        if value == "":
            return _missing(spec)
    if kind == "string":
        if not isinstance(value, str):
            raise _Invalid("Expected text.")
        return value
    if kind == "integer":
        return _to_integer(value)
    if kind == "number":
        return _to_number(value)
    if kind == "boolean":
        return _to_boolean(value)
    if kind == "choice":
        if not isinstance(value, str) or value not in spec.choices:
            raise _Invalid(f"Choose one of: {', '.join(spec.choices)}.")
        return value
    raise _Invalid(f"Unsupported parameter type {kind!r}.")


def _to_integer(value: Any) -> int:
    if isinstance(value, bool):
        raise _Invalid("Expected a whole number.")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER_TEXT.fullmatch(value):
        return int(value)
    raise _Invalid("Expected a whole number.")


def _to_number(value: Any) -> float:
    if isinstance(value, bool):
        raise _Invalid("Expected a number.")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise _Invalid("Expected a number.") from None
    else:
        raise _Invalid("Expected a number.")
    if not math.isfinite(number):
        raise _Invalid("Expected a finite number.")
    return number


def _to_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    raise _Invalid("Expected true or false.")


def _to_list(value: Any) -> list[str]:
    """A ``list`` parameter's items: one per line of text, or one per item of a list.

    Only line breaks separate the items of text, never commas: a command such as
    ``show interfaces | include up, down`` is one item. An item of a list is one item: a
    line break inside it (once stripped) is refused, never split, so a command given as
    one item reaches a device as one line. Items are stripped and blank ones dropped.
    Anything else than text or a list of text is refused.
    """
    if isinstance(value, str):
        lines = (line.strip() for line in _LINE_BREAK.split(value))
        return [line for line in lines if line]
    if not isinstance(value, list | tuple) or not all(isinstance(part, str) for part in value):
        raise _Invalid("Expected a list of text items.")
    items = [part.strip() for part in value]
    if any(_LINE_BREAK.search(item) for item in items):
        raise _Invalid(
            "An item may not hold a line break (CR or LF): give each line as its own item."
        )
    return [item for item in items if item]


# --- Flask wiring ----------------------------------------------------------------------


def init_app(app: Flask) -> None:
    """Discover the job types for ``app`` and keep the Registry in its extensions."""
    paths = job_paths(app.config.get("ROOKERY_JOBS_PATH") or "")
    registry = discover(paths)
    app.extensions[EXTENSION_KEY] = registry
    if app.config.get("ROOKERY_REQUIRE_JOB_TYPES") and not registry.types:
        searched = ", ".join(str(p) for p in paths)
        if registry.skipped:
            details = "; ".join(f"{s.source}: {s.reason}" for s in registry.skipped)
            why = f"Skipped: {details}"
        else:
            why = "No job modules were found there."
        raise ConfigError(f"No valid job type was registered from {searched}. {why}")
    logger.info(
        "Job registry: %d type(s) registered, %d module(s) skipped",
        len(registry.types),
        len(registry.skipped),
    )


def current() -> Registry:
    """The Registry of the current Flask app."""
    try:
        return current_app.extensions[EXTENSION_KEY]
    except KeyError:
        raise RuntimeError(
            "The job registry is not initialised: call app.registry.init_app(app)"
        ) from None
