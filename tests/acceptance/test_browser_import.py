"""The device import page in a real browser (Debian's chromium driven by Playwright)
against `rookery run`: one format's panel at a time, a sample file downloaded and
imported, and the chosen file still chosen after an error, so ticking "Import only the
good rows" and submitting again is all it takes. Without JavaScript the page still works.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest

from tests.acceptance.browser import STEP_TIMEOUT_MS, launch, submit_login
from tests.acceptance.conftest import serve_rookery

PASSWORD = "acceptance-import-pw"
BAD_CSV = (
    b"name,host,platform\n"  # line 1
    b"good-1,192.0.2.1,cisco_ios\n"  # 2
    b"bad-2,192.0.2.2,cisco_iosxe\n"  # 3: cisco_xe meant
    b"bad-3,192.0.2.3,toaster\n"  # 4
)

pytestmark = [
    pytest.mark.acceptance,
    pytest.mark.browser,
    pytest.mark.skipif(
        os.environ.get("ROOKERY_SKIP_BROWSER") == "1", reason="ROOKERY_SKIP_BROWSER=1"
    ),
]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running `rookery run` whose admin password is set by ROOKERY_ADMIN_PASSWORD."""
    yield from serve_rookery(tmp_path_factory.mktemp("browser-import"), PASSWORD)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    yield from launch()


def logged_in(browser, base_url: str, **options):  # type: ignore[no-untyped-def]
    """A new browser context logged in as admin, its page and what its console printed."""
    context = browser.new_context(accept_downloads=True, **options)
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    page.goto(f"{base_url}/login")
    submit_login(page, "admin", PASSWORD)
    page.wait_for_url(f"{base_url}/")
    return context, page, console


def script_problems(console: list[str]) -> list[str]:
    """CSP refusals and script errors (a 422 answer's console line is neither)."""
    return [
        line
        for line in console
        if line.startswith("pageerror") or "Content Security Policy" in line or "Refused to" in line
    ]


def chosen_files(page, selector: str) -> list[str]:  # type: ignore[no-untyped-def]
    return page.eval_on_selector(selector, "input => Array.from(input.files, f => f.name)")


def test_one_panel_at_a_time_and_the_file_kept_after_an_error(browser, base_url: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    context, page, console = logged_in(browser, base_url)
    try:
        page.goto(f"{base_url}/devices/import")
        csv_panel, nornir_panel = page.locator("#panel-csv"), page.locator("#panel-nornir")
        expect(csv_panel).to_be_visible()
        expect(nornir_panel).to_be_hidden()
        page.check("#kind-nornir")
        expect(nornir_panel).to_be_visible()
        expect(csv_panel).to_be_hidden()
        expect(page.locator("#sample-hosts")).to_be_visible()
        page.check("#kind-csv")
        expect(csv_panel).to_be_visible()
        expect(nornir_panel).to_be_hidden()

        # A full reload would clear the file input and this mark: neither may happen.
        page.evaluate("window.stillTheSamePage = true")
        page.set_input_files(
            "#f-csv_file", files=[{"name": "fleet.csv", "mimeType": "text/csv", "buffer": BAD_CSV}]
        )
        page.click("#import-submit")
        expect(page.locator("#import-error-3")).to_contain_text(
            "Unknown platform 'cisco_iosxe'. Did you mean 'cisco_xe'? Valid: alcatel_aos,"
        )
        expect(page.locator("#import-error-4")).to_contain_text("Unknown platform 'toaster'")
        expect(page.locator("#form-error")).to_contain_text("Nothing was imported: 2 bad row(s)")
        expect(page.locator("#import-file")).to_have_text("fleet.csv")
        assert page.evaluate("window.stillTheSamePage") is True
        assert chosen_files(page, "#f-csv_file") == ["fleet.csv"]
        expect(csv_panel).to_be_visible()

        # Fix nothing: tick the box and submit the same file again.
        page.check("#f-partial")
        page.click("#import-submit")
        expect(page.locator("#import-counts")).to_have_text(
            "1 created, 0 updated, 0 unchanged, 2 bad rows skipped."
        )
        assert page.evaluate("window.stillTheSamePage") is True
        page.click("#import-devices-link")
        expect(page.locator("body")).to_contain_text("good-1")
        expect(page.locator("body")).not_to_contain_text("bad-2")
    finally:
        context.close()
    assert not script_problems(console), console


def test_a_downloaded_sample_imports_cleanly(browser, base_url: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    context, page, console = logged_in(browser, base_url)
    try:
        page.goto(f"{base_url}/devices/import")
        with page.expect_download() as download:
            page.click("#sample-csv")
        assert download.value.suggested_filename == "devices.csv"
        expect(page).to_have_url(f"{base_url}/devices/import")  # the page stays
        page.set_input_files("#f-csv_file", download.value.path())
        page.click("#import-submit")
        expect(page.locator("#import-counts")).to_have_text(
            "5 created, 0 updated, 0 unchanged, 0 bad rows."
        )
        page.check("#kind-nornir")
        downloads = []
        for link in ("#sample-hosts", "#sample-groups"):
            with page.expect_download() as download:
                page.click(link)
            downloads.append(download.value)
        assert [d.suggested_filename for d in downloads] == ["hosts.yaml", "groups.yaml"]
        page.set_input_files("#f-hosts_file", downloads[0].path())
        page.set_input_files("#f-groups_file", downloads[1].path())
        page.click("#import-submit")
        expect(page.locator("#import-counts")).to_have_text(
            "0 created, 0 updated, 5 unchanged, 0 bad rows."
        )
    finally:
        context.close()
    assert not script_problems(console), console


def test_without_javascript_the_page_still_works(browser, base_url: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    context, page, _ = logged_in(browser, base_url, java_script_enabled=False)
    try:
        page.goto(f"{base_url}/devices/import")
        expect(page.locator("#panel-nornir")).to_be_hidden()  # CSS alone picks the panel
        page.check("#kind-nornir")
        expect(page.locator("#panel-csv")).to_be_hidden()
        page.set_input_files(
            "#f-hosts_file",
            files=[
                {
                    "name": "hosts.yaml",
                    "mimeType": "application/yaml",
                    "buffer": b"r9:\n  hostname: 192.0.2.9\n  platform: iosxe\n",
                }
            ],
        )
        page.click("#import-submit")
        page.wait_for_load_state()
        # The whole page came back: the chosen format still chosen, the file named.
        expect(page.locator("#import-error-1")).to_contain_text("Did you mean 'cisco_xe'?")
        expect(page.locator("#kind-nornir")).to_be_checked()
        expect(page.locator("#panel-nornir")).to_be_visible()
        expect(page.locator("#panel-csv")).to_be_hidden()
        expect(page.locator("#chosen-hosts_file")).to_have_text(
            re.compile(r"You chose hosts\.yaml: choose it again")
        )
    finally:
        context.close()
