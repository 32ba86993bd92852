"""A change's template rendered per device: Jinja2 in a sandbox, every variable required.

The template sees the device (``device.name``, ``device.host``, ``device.platform``,
``device.tags``) and the change's variables by their names. A variable the template uses
but nobody gave is an error naming it and the line, never an empty string pushed to a
device.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from app.crypto import REDACTED

#: templates longer than this are refused (a change is commands, not a config dump)
MAX_TEMPLATE = 100_000

_ENV = SandboxedEnvironment(
    undefined=StrictUndefined,
    autoescape=False,
    keep_trailing_newline=False,
    trim_blocks=True,
    lstrip_blocks=True,
)


class RenderError(ValueError):
    """A template that does not render (for a device); the message says where and why."""


def check_template(template: str) -> None:
    """Refuse a template that cannot even be parsed (RenderError with its line)."""
    if not template.strip():
        raise RenderError("The template is empty: give the commands to push.")
    if len(template) > MAX_TEMPLATE or "\x00" in template:
        raise RenderError(f"At most {MAX_TEMPLATE} characters, no NUL.")
    try:
        _ENV.parse(template)
    except TemplateSyntaxError as exc:
        raise RenderError(f"line {exc.lineno}: {exc.message}") from None


def device_context(*, name: str, host: str, platform: str, tags: Iterable[str]) -> dict[str, Any]:
    """What a template knows of a device."""
    return {"name": name, "host": host, "platform": platform, "tags": sorted(tags)}


def render(template: str, device: Mapping[str, Any], variables: Mapping[str, Any]) -> str:
    """The commands for one device: ``template`` with ``device`` and ``variables``;
    blank lines and trailing spaces dropped. RenderError names a missing variable."""
    check_template(template)
    if "device" in variables:
        raise RenderError("'device' is the device itself: give the variable another name.")
    try:
        text = _ENV.from_string(template).render(device=dict(device), **dict(variables))
    except UndefinedError as exc:
        raise RenderError(f"{device.get('name', 'a device')}: {exc.message}") from None
    except SecurityError as exc:
        raise RenderError(f"Not allowed in a template: {exc}") from None
    except TemplateSyntaxError as exc:  # pragma: no cover - parsed above
        raise RenderError(f"line {exc.lineno}: {exc.message}") from None
    except Exception as exc:  # a filter on a wrong type, a division by zero...
        raise RenderError(
            f"{device.get('name', 'a device')}: {type(exc).__name__}: {exc}"
        ) from None
    lines = [line.rstrip() for line in text.splitlines()]
    return "\n".join(line for line in lines if line.strip())


def hide(text: str, secrets: list[str] | tuple[str, ...]) -> str:
    """``text`` with every secret value in it replaced by ``***`` (longest first)."""
    for value in sorted(secrets, key=len, reverse=True):
        if value:
            text = text.replace(value, REDACTED)
    return text
