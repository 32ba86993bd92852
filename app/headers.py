"""Security headers on every answer: no framing, no sniffing, no foreign scripts."""

from __future__ import annotations

import logging

from flask import Flask, Response

__all__ = ["CONTENT_SECURITY_POLICY", "init_app"]

logger = logging.getLogger(__name__)

#: Scripts come only from app/static (htmx, its SSE extension and rookery.js are
#: vendored; no page carries inline script or handler). Inline ``style=`` attributes
#: stay allowed: the progress bar and the chart legend set their width and colour so.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def add_security_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def configure_cookies(app: Flask) -> None:
    """SameSite=Lax on the session and remember-me cookies, and Secure when asked.

    Assigned, not ``setdefault``: Flask's defaults already hold these keys (as None or
    False), so a default would never apply. Keyword overrides given to ``create_app``
    are applied after this and still win.
    """
    secure = bool(app.config["ROOKERY_COOKIE_SECURE"])
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["REMEMBER_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["REMEMBER_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SECURE"] = secure
    app.config["REMEMBER_COOKIE_SECURE"] = secure


def init_app(app: Flask) -> None:
    app.after_request(add_security_headers)
