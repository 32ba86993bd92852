"""What Rookery's drop-in modules (job types in app/registry.py, compliance rule modules
in app/compliance/modules.py) share: importing a module file on its own, and checking
that its functions can be called as its contract says, with a reason a person reads
when something is wrong."""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

_COUNTS = ("no", "one", "two", "three", "four", "five")


def function_problem(function: Any, name: str, params: Sequence[str]) -> str | None:
    """Why ``function`` cannot serve as a module's ``name()`` called with ``params``
    positionally (missing, not callable, async, a signature that does not take them), or
    None when it can."""
    if function is None:
        return f"no {name}() function defined"
    if not callable(function):
        return f"{name} is not callable"
    if inspect.iscoroutinefunction(function):
        return f"{name}() must be a plain function, not async"
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return f"{name}() has no inspectable signature"
    try:
        signature.bind(*([None] * len(params)))
    except TypeError:
        return (
            f"{name}{signature} must accept {_COUNTS[len(params)]} positional arguments "
            f"({', '.join(params)})"
        )
    return None


class ImportFailed(Exception):
    """A module file could not be imported; the message says why."""


def module_name(path: Path, prefix: str) -> str:
    """The name a module file is imported under: the folder's hash keeps two folders'
    ``backup.py`` (or ``ntp.py``) apart in ``sys.modules``."""
    digest = hashlib.sha1(str(path.parent.resolve()).encode(), usedforsecurity=False)
    return f"{prefix}.{digest.hexdigest()[:12]}.{path.stem}"


def import_file(path: Path, prefix: str) -> ModuleType:
    """Import a module file on its own (registered in ``sys.modules``); whatever it
    raises, SystemExit included, is an ImportFailed naming the exception."""
    name = module_name(path, prefix)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportFailed("cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(name, None)
        raise ImportFailed(f"import failed: {describe(exc)}") from None
    return module


def describe(exc: BaseException) -> str:
    """``Type: message`` on one line (``Type`` alone when there is no message)."""
    detail = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
