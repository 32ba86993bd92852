"""Driving Debian's chromium with Playwright: the shared launch settings and helpers.

The ``browser`` fixture (tests/acceptance/conftest.py) starts one chromium per module.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STEP_TIMEOUT_MS = 15_000


def launch() -> Iterator[object]:
    """A headless chromium for as long as the generator is open."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: apt-get install chromium (./test.sh does it as root), "
        "or set ROOKERY_SKIP_BROWSER=1 to skip the browser tests on purpose"
    )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


def submit_login(page, username: str, password: str):  # type: ignore[no-untyped-def]
    """Fill the login form, click "Log in"; return the POST /login response."""
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/login")
    ) as posted:
        page.get_by_role("button", name="Log in").click()
    return posted.value
