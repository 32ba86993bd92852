"""Logging in and out with a real browser (Debian's chromium driven by Playwright)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.acceptance.browser import STEP_TIMEOUT_MS, launch, submit_login
from tests.acceptance.conftest import serve_rookery

PASSWORD = "acceptance-browser-pw"

pytestmark = [
    pytest.mark.acceptance,
    pytest.mark.browser,
    # Only an explicit choice skips the browser tests; a missing chromium fails them.
    pytest.mark.skipif(
        os.environ.get("ROOKERY_SKIP_BROWSER") == "1", reason="ROOKERY_SKIP_BROWSER=1"
    ),
]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running `rookery run` whose admin password is set by ROOKERY_ADMIN_PASSWORD."""
    yield from serve_rookery(tmp_path_factory.mktemp("browser"), PASSWORD)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    yield from launch()


@pytest.fixture
def page(browser):  # type: ignore[no-untyped-def]
    context = browser.new_context()
    context.set_default_timeout(STEP_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_log_in_and_out(page, base_url: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.goto(f"{base_url}/login")
    expect(page).to_have_title("Log in · Rookery")
    expect(page.get_by_label("User name")).to_be_visible()
    expect(page.get_by_label("Password")).to_be_visible()

    response = submit_login(page, "admin", PASSWORD)
    assert response.status in (200, 302)
    page.wait_for_url(f"{base_url}/")
    expect(page.locator("nav")).to_contain_text("admin")
    expect(page.locator("#workers-alive")).to_be_visible()

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(f"{base_url}/login")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    expect(page.get_by_text("You are logged out.")).to_be_visible()
    expect(page.locator("nav")).to_have_count(0)


def test_wrong_password_is_explained(page, base_url: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.goto(f"{base_url}/login")
    response = submit_login(page, "admin", "not-the-password")
    assert response.status == 401
    # expect() raises AssertionError when the text does not show within the timeout.
    expect(page.get_by_text("Invalid user name or password.")).to_be_visible(timeout=3_000)
    assert page.url == f"{base_url}/login"
