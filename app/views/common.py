"""Small helpers every page blueprint shares: form parsing, HTMX detection, paging."""

from __future__ import annotations

from typing import Any

from flask import request


def is_htmx() -> bool:
    """True when HTMX asked (a partial is enough); boosted navigations want the page."""
    return request.headers.get("HX-Request") == "true" and not request.headers.get("HX-Boosted")


def form_text(name: str, default: str = "") -> str:
    return (request.form.get(name) or default).strip()


def form_bool(name: str) -> bool:
    """A checkbox rendered by ``_forms.html``: a hidden "0" then the box's "1"."""
    return "1" in request.form.getlist(name)


def form_list(name: str) -> list[str]:
    """A multi-select, or a comma/newline separated text field."""
    values: list[str] = []
    for raw in request.form.getlist(name):
        values.extend(part.strip() for part in raw.replace("\n", ",").split(","))
    return [v for v in values if v]


def form_ints(name: str) -> list[int]:
    """Ids from a multi-select; anything not a number is dropped (the service validates)."""
    ids: list[int] = []
    for value in form_list(name):
        try:
            ids.append(int(value))
        except ValueError:
            continue
    return ids


def arg_int(name: str, default: int | None = None) -> int | None:
    try:
        return int(request.args.get(name, ""))
    except ValueError:
        return default


def query_without(**changes: Any) -> dict[str, Any]:
    """The current query string with some keys changed (None removes a key)."""
    args = {k: v for k, v in request.args.items() if v != ""}
    for key, value in changes.items():
        if value is None:
            args.pop(key, None)
        else:
            args[key] = value
    return args
