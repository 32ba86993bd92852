"""The pages in a real browser against `rookery run` and emulated devices (FakeNOS).

One Rookery (web + worker + embedded PostgreSQL) and one device lab serve the whole
module; the tests run in order: set up credentials and devices, back up through the
job form while watching the run live, open the config diff, cancel a long run, and
check what a viewer may do.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from app.demo_lab import DeviceLab, LabDevice
from tests.acceptance.browser import CHROMIUM, STEP_TIMEOUT_MS, launch, submit_login
from tests.acceptance.conftest import (
    COMMAND_TIMEOUT,
    HEALTH_TIMEOUT,
    Launcher,
    free_port,
    health_ok,
    wait_http,
)

ADMIN_PASSWORD = "acceptance-pages-pw"
VIEWER_PASSWORD = "viewer-pages-pw"
DEVICE_USER = "netops"
DEVICE_PASSWORD = "lab-device-pw-7"

pytestmark = [
    pytest.mark.acceptance,
    pytest.mark.browser,
    pytest.mark.skipif(
        os.environ.get("ROOKERY_SKIP_BROWSER") == "1", reason="ROOKERY_SKIP_BROWSER=1"
    ),
]


@dataclass
class Site:
    base: str
    env: dict[str, str]
    launcher: Launcher
    lab: DeviceLab

    def cli(self, *args: str, stdin: str | None = None) -> str:
        """Run ``rookery ARGS`` in a child process (``stdin``: a line it reads)."""
        done = self.launcher.python(
            "import io, sys\n"
            "sys.stdin = io.StringIO(sys.argv[1] + '\\n')\n"
            "from app.cli import main\n"
            "main(sys.argv[2:])",
            stdin or "",
            *args,
            env=self.env,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    lab = DeviceLab(
        [
            LabDevice(f"edge-{i}", platform, DEVICE_USER, DEVICE_PASSWORD, "enable-pw")
            for i, platform in enumerate(["cisco_ios", "arista_eos", "cisco_ios", "arista_eos"])
        ]
    ).start()
    root = tmp_path_factory.mktemp("pages")
    launcher = Launcher(root)
    try:
        env = launcher.env(launcher.instance(), ROOKERY_ADMIN_PASSWORD=ADMIN_PASSWORD)
        port = free_port()
        run = launcher.start(["run", "--port", str(port)], env)
        run.wait_for_output(r"Rookery is running at", COMMAND_TIMEOUT)
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health", HEALTH_TIMEOUT, ready=health_ok, proc=run)
        inventory = root / "devices.csv"
        inventory.write_text(
            "name,host,port,platform,tags\n"
            + "".join(f"{d.name},127.0.0.1,{d.port},{d.platform},lab\n" for d in lab.devices)
        )
        site = Site(base, env, launcher, lab)
        site.cli("device", "import", str(inventory))
        yield site
        run.signal(signal.SIGTERM)
        assert run.wait(60) == 0, run.describe()
    finally:
        launcher.close()
        lab.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    yield from launch()


#: What the admin tab printed on its console over the whole module (CSP violations land here).
CONSOLE: list[str] = []


def _is_csp_violation(text: str) -> bool:
    return "Content Security Policy" in text or "Refused to" in text


@pytest.fixture(scope="module")
def admin(browser, site: Site):  # type: ignore[no-untyped-def]
    """One admin tab for the module's tests (they build on each other)."""
    context = browser.new_context()
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = context.new_page()
    page.on("console", lambda message: CONSOLE.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: CONSOLE.append(f"pageerror: {error}"))
    page.goto(f"{site.base}/login")
    submit_login(page, "admin", ADMIN_PASSWORD)
    page.wait_for_url(f"{site.base}/")
    yield page
    context.close()


def test_admin_adds_a_credential_through_the_form(admin, site: Site) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    admin.goto(f"{site.base}/credentials/new")
    admin.fill("#f-name", "lab-login")
    admin.fill("#f-username", DEVICE_USER)
    admin.fill("#f-password", DEVICE_PASSWORD)
    admin.fill("#f-enable_secret", "enable-pw")
    admin.fill("#f-tags", "lab")
    admin.get_by_role("button", name=re.compile("Create|Save")).click()
    expect(admin.get_by_text("lab-login").first).to_be_visible()
    assert DEVICE_PASSWORD not in admin.content()


def test_backup_job_from_the_form_runs_live_without_a_reload(admin, site: Site) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    admin.goto(f"{site.base}/jobs")
    admin.click("#new-job")
    admin.click("#choose-config_backup")
    admin.fill("#f-name", "lab backup")
    admin.fill("#f-target_tags", "lab")
    admin.fill("#f-max_parallel", "1")  # one device at a time: the progress is watchable
    admin.click("#save-job")
    expect(admin.locator("h1")).to_have_text("lab backup")
    admin.click("#run-now")
    admin.wait_for_url(re.compile(r"/runs/\d+$"))
    # A marker that a reload would wipe: every change below must arrive over SSE.
    admin.evaluate("window.__noReload = true")
    seen: set[str] = set()
    waiting: set[int] = set()  # devices listed before their result arrives
    working: set[int] = set()  # of those, the ones whose work has started
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        bar = admin.locator("#run-progress")
        if bar.count():
            seen.add(bar.get_attribute("aria-valuenow") or "")
        waiting.add(admin.locator("#waiting-body tr").count())
        working.add(admin.locator("#waiting-body tr[data-state=working]").count())
        if admin.locator("#run-status[data-status='COMPLETED_SUCCESS']").count():
            break
        time.sleep(0.1)
    expect(admin.locator("#run-status")).to_have_attribute("data-status", "COMPLETED_SUCCESS")
    expect(admin.locator("#run-progress-text")).to_contain_text("4 of 4")
    assert len(seen - {""}) >= 2, f"progress never moved while watched: {seen}"
    expect(admin.locator("#results-body tr[id^=result-]")).to_have_count(4)
    assert max(waiting) >= 1, "no device was listed before its result"
    assert max(working) == 1, f"one device at a time works, seen {working}"
    expect(admin.locator("#waiting-body tr")).to_have_count(0)
    assert admin.locator("#log-lines .log-line").count() >= 4
    expect(admin.locator("#events")).to_contain_text("job.completed")
    assert admin.evaluate("window.__noReload === true"), "the page was reloaded"
    # The level filter hides lines below the chosen level, live ones included.
    admin.select_option("#log-level", "error")
    expect(admin.locator("#log-lines .log-info").first).to_be_hidden()
    # Each device's output loads when asked for, and all of them with one click.
    expect(admin.locator(".output-text")).to_have_count(0)
    admin.locator("[data-output-toggle]").first.click()
    expect(admin.locator(".output-text")).to_have_count(1)
    expect(admin.locator(".output-text").first).to_contain_text("hostname")
    admin.click("#expand-outputs")
    expect(admin.locator(".output-text")).to_have_count(4)
    admin.click("#expand-outputs")
    expect(admin.locator(".output-text")).to_have_count(0)


def test_a_changed_config_shows_in_the_side_by_side_diff(admin, site: Site) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    name = "edge-0"
    site.lab.set_config(
        name, site.lab.config_of(name) + "\ninterface Loopback99\n description new\n"
    )
    first_run = admin.url
    admin.click("#relaunch-all")
    admin.wait_for_url(lambda url: url != first_run and re.search(r"/runs/\d+$", url))
    expect(admin.locator("#run-status")).to_have_attribute(
        "data-status", "COMPLETED_SUCCESS", timeout=90_000
    )
    expect(admin.locator("#results-body")).to_contain_text("(changed)")
    # The commit links to what changed; that page's URL names the versions, so it can be
    # pasted into another tab, and Back returns from the unified view.
    admin.locator("#results-body a[href*='/diff?new=']").first.click()
    admin.wait_for_url(re.compile(r"/devices/\d+/diff\?new=[0-9a-f]{40}$"))
    expect(admin.locator("#diff-table")).to_contain_text("Loopback99")
    pasted = admin.context.new_page()
    pasted.goto(admin.url)
    expect(pasted.locator("#diff-table")).to_contain_text("Loopback99")
    pasted.close()
    shared = admin.url
    admin.click("#view-unified")
    admin.wait_for_url(re.compile(r"view=unified"))
    expect(admin.locator("table.diff-unified")).to_be_visible()
    admin.go_back()
    admin.wait_for_url(shared)
    admin.goto(f"{site.base}/devices")
    admin.get_by_role("link", name=name, exact=True).click()
    expect(admin.locator("#device-name")).to_have_text(name)
    expect(admin.locator("#diff-table")).to_be_visible()
    expect(admin.locator("#diff-table")).to_contain_text("Loopback99")
    assert admin.locator("#diff-table tr.diff-added, #diff-table tr.diff-changed").count() >= 1


def test_the_device_list_shows_backup_health_filters_and_sorts(admin, site: Site) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    admin.goto(f"{site.base}/devices")
    cells = admin.locator("td[id^=last-backup-]")
    expect(cells).to_have_count(4)
    for i in range(4):
        expect(cells.nth(i)).to_contain_text("Success")
    # Filters swap the table in place and put themselves in the URL.
    admin.select_option("#f-backup", "never")
    expect(admin.locator("#no-devices")).to_contain_text("No device matches")
    assert "backup=never" in admin.url
    admin.select_option("#f-backup", "fresh")
    expect(admin.locator("#devices-table tbody tr")).to_have_count(4)
    admin.select_option("#f-backup", "")
    # The oldest successful backup first; a second click reverses the order.
    admin.click("#sort-last-backup")
    expect(admin.locator("th[aria-sort=ascending] #sort-last-backup")).to_have_count(1)
    oldest_first = admin.locator("#devices-table tbody td:first-child a").all_inner_texts()
    admin.click("#sort-last-backup")
    expect(admin.locator("th[aria-sort=descending] #sort-last-backup")).to_have_count(1)
    newest_first = admin.locator("#devices-table tbody td:first-child a").all_inner_texts()
    assert newest_first == list(reversed(oldest_first)), (oldest_first, newest_first)
    assert sorted(oldest_first) == ["edge-0", "edge-1", "edge-2", "edge-3"]


def test_config_search_finds_a_line_and_links_to_its_version(admin, site: Site) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    admin.goto(f"{site.base}/configs/search")
    admin.fill("#f-q", "loopback99")
    admin.click("#search-submit")
    expect(admin.locator("#search-summary")).to_contain_text("1 device of 4")
    hit = admin.locator(".search-device a.search-hit")
    expect(hit).to_have_count(1)
    expect(hit).to_contain_text("interface Loopback99")
    assert "q=loopback99" in admin.url  # a search is a link too
    number = hit.inner_text().split()[0]
    hit.click()
    admin.wait_for_url(re.compile(rf"/devices/\d+/config/[0-9a-f]{{40}}#L{number}$"))
    expect(admin.locator(f"[id='L{number}']")).to_contain_text("interface Loopback99")
    # A regular expression PostgreSQL and Python both read; a bad one is explained.
    admin.goto(f"{site.base}/configs/search")
    admin.fill("#f-q", "^interface Loopback9[0-9]$")
    admin.check("#f-regex")
    admin.click("#search-submit")
    expect(admin.locator(".search-device")).to_have_count(1)
    admin.fill("#f-q", "interface (")
    admin.click("#search-submit")
    expect(admin.locator("body")).to_contain_text("Not a regular expression")


def test_a_compliance_rule_is_previewed_saved_and_checked_on_the_fleet(admin, site: Site) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    admin.goto(f"{site.base}/compliance")
    expect(admin.locator("#no-rules")).to_be_visible()
    admin.click("#new-rule")
    admin.fill("#f-name", "NTP server")
    admin.fill("#f-platforms", "cisco_ios arista_eos")
    admin.fill("#f-required", "ntp server 192.0.2.123")
    admin.fill("#f-forbidden", "re:(")
    admin.select_option("#f-device", label="edge-0")
    admin.click("#preview-rule")
    expect(admin.locator("#preview-error")).to_contain_text("forbidden, line 1")
    admin.fill("#f-forbidden", "")
    admin.click("#preview-rule")
    expect(admin.locator("#preview-result")).to_have_attribute("data-compliant", "no")
    expect(admin.locator("#remediation-preview")).to_have_text("ntp server 192.0.2.123")
    assert "/rules/new" in admin.url, "a preview saves nothing and stays on the form"
    admin.click("#save-rule")
    expect(admin.locator("#rule-name")).to_have_text("NTP server")
    # The save started a check of every device in scope: the worker fills the results.
    deadline = time.monotonic() + 60
    while admin.locator("#rule-results tbody tr").count() < 4 and time.monotonic() < deadline:
        time.sleep(1)
        admin.reload()
    expect(admin.locator("#rule-results tbody tr")).to_have_count(4)
    expect(admin.locator("#rule-results")).to_contain_text("failing")
    admin.goto(f"{site.base}/compliance")
    rule_row = admin.locator("#rules-table tbody tr").first
    expect(rule_row).to_contain_text("NTP server")
    expect(admin.locator("[id$='-failing']").first).to_have_text("4")
    admin.locator("#failing-devices a", has_text="edge-0").click()
    expect(admin.locator("#device-compliance")).to_contain_text("NTP server")
    remediation = admin.locator("#device-compliance pre[id^=remediation-]")
    expect(remediation).to_have_text("ntp server 192.0.2.123")
    expect(admin.locator("#device-compliance [data-copy]")).to_have_count(1)


def test_the_job_form_previews_fire_times_and_targets_as_one_types(admin, site: Site) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    admin.goto(f"{site.base}/jobs/new?job_type=config_backup")
    expect(admin.locator("#f-schedule_kind")).to_have_value("none")
    expect(admin.locator("#f-cron")).to_be_hidden()
    expect(admin.locator("#f-interval_minutes")).to_be_hidden()
    admin.select_option("#f-schedule_kind", "cron")
    expect(admin.locator("#f-cron")).to_be_visible()
    expect(admin.locator("#f-interval_minutes")).to_be_hidden()
    admin.fill("#f-cron", "61 * * * *")
    expect(admin.locator("#schedule-problem")).to_contain_text("the minute must be 0 to 59")
    admin.fill("#f-cron", "30 6 * * 1-5")
    admin.fill("#f-timezone", "Asia/Tokyo")
    expect(admin.locator("#next-fire-times li")).to_have_count(3)
    expect(admin.locator("#next-fire-times")).to_contain_text("06:30 Asia/Tokyo")
    admin.fill("#f-target_tags", "lb")
    expect(admin.locator("#targets-preview")).to_contain_text("No tag named lb (did you mean lab?)")
    admin.fill("#f-target_tags", "lab")
    expect(admin.locator("#targets-count")).to_have_text("4 devices match now.")


def test_cancel_a_long_run_from_its_page(admin, site: Site) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    admin.goto(f"{site.base}/jobs/new?job_type=noop")
    admin.fill("#f-name", "long wait")
    admin.fill("#f-p_seconds", "300")
    admin.click("#save-job")
    admin.click("#run-now")
    admin.wait_for_url(re.compile(r"/runs/\d+$"))
    expect(admin.locator("#run-status")).to_have_attribute("data-status", "RUNNING", timeout=30_000)
    # Cancel asks first: saying no leaves the run alone.
    asked: list[str] = []

    def answer(dialog, accept: bool) -> None:  # type: ignore[no-untyped-def]
        asked.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    admin.once("dialog", lambda dialog: answer(dialog, False))
    admin.click("#cancel-run")
    time.sleep(1)
    expect(admin.locator("#run-status")).to_have_attribute("data-status", "RUNNING")
    admin.once("dialog", lambda dialog: answer(dialog, True))
    admin.click("#cancel-run")
    expect(admin.locator("#run-status")).to_have_attribute(
        "data-status", "CANCELLED", timeout=30_000
    )
    assert len(asked) == 2 and "Cancel run #" in asked[0]
    # The "queued" note from Run now is gone once the run has ended.
    expect(admin.locator("main > .flash-success")).to_have_count(0)


def test_a_viewer_sees_no_create_button_and_gets_403(browser, site: Site) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    site.cli(
        "user", "create", "vera", "--role", "viewer", "--password-stdin", stdin=VIEWER_PASSWORD
    )
    context = browser.new_context()
    context.set_default_timeout(STEP_TIMEOUT_MS)
    try:
        page = context.new_page()
        page.goto(f"{site.base}/login")
        submit_login(page, "vera", VIEWER_PASSWORD)
        page.wait_for_url(f"{site.base}/")
        page.goto(f"{site.base}/jobs")
        expect(page.locator("#jobs-table")).to_contain_text("lab backup")
        expect(page.locator("#new-job")).to_have_count(0)
        page.get_by_role("link", name="lab backup").click()
        page.wait_for_url(re.compile(r"/jobs/\d+$"))
        expect(page.locator("h1")).to_have_text("lab backup")
        expect(page.locator("#run-now")).to_have_count(0)
        job_id = re.search(r"/jobs/(\d+)", page.url).group(1)  # type: ignore[union-attr]
        token = page.locator('meta[name="csrf-token"]').get_attribute("content")
        answer = page.request.post(
            f"{site.base}/jobs/{job_id}/run", headers={"X-CSRFToken": token or ""}
        )
        assert answer.status == 403
        answer = page.request.post(
            f"{site.base}/jobs/new",
            form={"job_type": "noop", "name": "sneaky"},
            headers={"X-CSRFToken": token or ""},
        )
        assert answer.status == 403
    finally:
        context.close()


def test_a_password_change_logs_out_the_other_browser(browser, admin, site: Site) -> None:  # type: ignore[no-untyped-def]
    """Change your password in one browser: it stays logged in, the other is logged out;
    an admin's reset on the Users page then logs out the first one too."""
    from playwright.sync_api import expect

    site.cli(
        "user", "create", "wendy", "--role", "operator", "--password-stdin", stdin="wendy-pw-1"
    )
    contexts = [browser.new_context() for _ in range(2)]
    try:
        desk, laptop = (context.new_page() for context in contexts)
        for page in (desk, laptop):
            page.set_default_timeout(STEP_TIMEOUT_MS)
            page.goto(f"{site.base}/login")
            submit_login(page, "wendy", "wendy-pw-1")
            page.wait_for_url(f"{site.base}/")
        desk.click("#nav-password")
        desk.wait_for_url(f"{site.base}/account/password")
        desk.fill("#f-current_password", "wrong-pw-1")
        desk.fill("#f-new_password", "wendy-pw-2")
        desk.fill("#f-confirm_password", "wendy-pw-2")
        desk.click("#change-password")
        expect(desk.locator("#error-current_password")).to_be_visible()
        desk.fill("#f-current_password", "wendy-pw-1")
        desk.fill("#f-new_password", "wendy-pw-2")
        desk.fill("#f-confirm_password", "wendy-pw-2")
        desk.click("#change-password")
        desk.wait_for_url(f"{site.base}/")
        expect(desk.locator(".flash-success")).to_contain_text("other sessions are logged out")
        laptop.goto(f"{site.base}/jobs")
        expect(laptop).to_have_url(re.compile(r"/login"))
        admin.goto(f"{site.base}/users")
        row = admin.locator("tr", has_text="wendy")
        row.locator("summary").click()
        row.locator('input[name="password"]').fill("reset-by-admin-3")
        row.get_by_role("button", name="Set").click()
        expect(admin.locator(".flash-success")).to_contain_text("Password of wendy changed")
        desk.goto(f"{site.base}/jobs")
        expect(desk).to_have_url(re.compile(r"/login"))
        desk.goto(f"{site.base}/login")
        submit_login(desk, "wendy", "reset-by-admin-3")
        desk.wait_for_url(f"{site.base}/")
    finally:
        for context in contexts:
            context.close()


def test_no_device_password_reached_any_page(admin, site: Site) -> None:  # type: ignore[no-untyped-def]
    for path in ("/credentials", "/devices", "/jobs", "/runs", "/"):
        admin.goto(f"{site.base}{path}")
        assert DEVICE_PASSWORD not in admin.content(), path


def test_pages_work_under_the_content_security_policy(admin, site: Site) -> None:  # type: ignore[no-untyped-def]
    """Scripts from /static only: htmx, its SSE extension and rookery.js run, nothing is
    refused, on the pages above and on a tour of the rest."""
    from playwright.sync_api import expect

    policy = admin.request.get(f"{site.base}/").headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    pages = ("/jobs", "/runs", "/devices", "/credentials", "/job-types", "/users")
    for path in ("/", *pages, "/account/password"):
        admin.goto(f"{site.base}{path}")
        assert admin.evaluate("typeof htmx === 'object' && htmx.version.startsWith('2')"), path
    # An htmx request the page makes by itself: the device filter as one types.
    admin.goto(f"{site.base}/devices")
    with admin.expect_response(lambda r: "/devices?" in r.url and "q=edge-1" in r.url):
        admin.fill("#f-q", "edge-1")
    expect(admin.locator("table")).not_to_contain_text("edge-2")
    # A run page opens its live stream (the SSE extension's EventSource).
    admin.goto(f"{site.base}/runs")
    admin.locator("a[href^='/runs/']").first.click()
    admin.wait_for_url(re.compile(r"/runs/\d+$"))
    expect(admin.locator("#run-status")).to_be_visible()
    admin.wait_for_timeout(1000)
    violations = [line for line in CONSOLE if _is_csp_violation(line)]
    assert violations == [], violations
    assert not [line for line in CONSOLE if line.startswith("pageerror")], CONSOLE
