"""A change set reviewed and applied in a real browser against `rookery run`.

One Rookery (web + worker + embedded PostgreSQL) and four stateful cisco_ios emulators
(127.0.0.1) serve the module. The devices and their credentials are added through the
API, backed up by a job run from the CLI, and an operator drafts and submits a change
with the CLI; then an admin, in chromium, previews it on every device, approves it,
applies it and watches the rollout reach "applied" on every device without a reload.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from app.stateful_lab import StatefulLab, stateful_fleet
from tests.acceptance.browser import CHROMIUM, STEP_TIMEOUT_MS, launch, submit_login
from tests.acceptance.conftest import (
    COMMAND_TIMEOUT,
    HEALTH_TIMEOUT,
    Launcher,
    free_port,
    health_ok,
    new_opener,
    wait_http,
)
from tests.acceptance.test_browser_pages import Site as PagesSite

ADMIN_PASSWORD = "acceptance-changes-pw"
OPERATOR_PASSWORD = "operator-changes-pw"
FLEET = 4
#: a pause between waves long enough to see the rollout move while it is watched
PAUSE_SECONDS = 2
CHANGE = f"""\
name: NTP and loopbacks
description: Adds the lab NTP server; says who manages each loopback.
targets: {{tags: [lab]}}
template: |
  ntp server 192.0.2.123
  interface Loopback0
   description {{{{ device.name }}}} managed by {{{{ team }}}}
variables: {{team: netops}}
checks:
  - command: show running-config | include ntp server
    expect: 'ntp server 192\\.0\\.2\\.123'
    when: after
canary: 1
wave_size: 2
pause_seconds: {PAUSE_SECONDS}
"""

pytestmark = [
    pytest.mark.acceptance,
    pytest.mark.browser,
    pytest.mark.skipif(
        os.environ.get("ROOKERY_SKIP_BROWSER") == "1", reason="ROOKERY_SKIP_BROWSER=1"
    ),
]


@dataclass
class Site(PagesSite):
    """The pages drills' site (``cli`` runs the rookery command), with an API token and
    the stateful devices in place of FakeNOS."""

    lab: StatefulLab  # type: ignore[assignment]
    token: str = ""

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The API's JSON answer (as the admin whose token the site holds)."""
        request = urllib.request.Request(
            f"{self.base}/api/v1{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with new_opener(False).open(request, timeout=10) as response:
            return json.loads(response.read())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    root = tmp_path_factory.mktemp("changes")
    launcher = Launcher(root)
    try:
        with StatefulLab(stateful_fleet(FLEET, enable_secrets=True)) as lab:
            env = launcher.env(
                launcher.instance(),
                ROOKERY_ADMIN_PASSWORD=ADMIN_PASSWORD,
                ROOKERY_CONNECT_RETRIES="0",
            )
            port = free_port()
            run = launcher.start(["run", "--port", str(port)], env)
            run.wait_for_output(r"Rookery is running at", COMMAND_TIMEOUT)
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/health", HEALTH_TIMEOUT, ready=health_ok, proc=run)
            site = Site(base, env, launcher, lab)
            site.token = site.cli("token", "create", "admin").strip().splitlines()[-1]
            site.cli("user", "create", "olga", "--role", "operator", "--password-stdin",
                     stdin=OPERATOR_PASSWORD)  # fmt: skip
            for device in lab.devices:
                site.api("POST", "/devices", {
                    "name": device.name, "host": "127.0.0.1", "port": lab.port_of(device.name),
                    "platform": device.platform, "tags": ["lab", f"dev-{device.name}"],
                })  # fmt: skip
                site.api("POST", "/credentials", {
                    "name": f"cred-{device.name}", "username": device.username,
                    "password": device.password, "secret": device.enable_secret,
                    "tags": [f"dev-{device.name}"],
                })  # fmt: skip
            yield site
            run.signal(signal.SIGTERM)
            assert run.wait(60) == 0, run.describe()
    finally:
        launcher.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    yield from launch()


@pytest.fixture(scope="module")
def admin(browser, site: Site):  # type: ignore[no-untyped-def]
    context = browser.new_context()
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = context.new_page()
    page.goto(f"{site.base}/login")
    submit_login(page, "admin", ADMIN_PASSWORD)
    page.wait_for_url(f"{site.base}/")
    yield page
    context.close()


def rollout_states(page) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Each device row of the rollout section: its state, as the page shows it now."""
    return page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#rollout-table tr[data-state]')]"
        ".map(tr => [tr.id.replace('rollout-device-', ''), tr.dataset.state]))"
    )


def test_a_change_is_previewed_approved_and_applied_live(admin, site: Site) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    names = [device.name for device in site.lab.devices]
    # every device backed up: the preview compares with those configs
    site.cli("job", "create", "lab backup", "--type", "config_backup", "--tag", "lab")
    site.cli("job", "run", "lab backup", "--wait", "30")
    spec = site.launcher.root / "change.yaml"
    spec.write_text(CHANGE)
    site.cli("change", "create", str(spec), "--as", "olga")
    site.cli("change", "submit", "NTP and loopbacks", "--as", "olga")

    admin.goto(f"{site.base}/changes")
    expect(admin.locator("#changes-table")).to_contain_text("awaiting approval")
    admin.get_by_role("link", name="NTP and loopbacks").click()
    expect(admin.locator("#change-status")).to_have_text("awaiting approval")
    expect(admin.locator("#rollout-none")).to_be_visible()

    admin.click("#preview-change")
    rows = admin.locator("#preview-table tbody tr")
    expect(rows).to_have_count(FLEET)
    for name in names:
        row = admin.locator(f"#preview-table tbody tr:has-text('{name}')")
        expect(row.locator(".diff-add").first).to_be_visible()
        expect(row).to_contain_text("+ ntp server 192.0.2.123")
        expect(row).to_contain_text(f"description {name} managed by netops")

    dialogs: list[str] = []

    def accept(dialog) -> None:  # type: ignore[no-untyped-def]
        dialogs.append(dialog.message)
        dialog.accept()

    admin.on("dialog", accept)
    admin.click("#approve-change")
    expect(admin.locator("#change-status")).to_have_text("approved")
    assert dialogs and "Approve version 1 of NTP and loopbacks" in dialogs[-1]

    admin.click("#apply-change")
    expect(admin.locator(".flash-success")).to_contain_text("is being applied by run #")
    assert "to 4 devices? The canary (ios-001) goes first, then waves of 2" in dialogs[-1]
    expect(admin.locator("#rollout")).to_have_attribute("hx-trigger", "every 2s")
    expect(admin.locator("#apply-change")).to_have_count(0)
    # A marker a reload would wipe: everything below arrives by the section's polling.
    admin.evaluate("window.__noReload = true")
    seen: list[dict[str, str]] = []
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        states = rollout_states(admin)
        if not seen or states != seen[-1]:
            seen.append(states)
        if states and set(states.values()) == {"applied"}:
            break
        time.sleep(0.2)
    assert seen[-1] == dict.fromkeys(names, "applied"), seen
    assert any(
        "applied" in states.values() and set(states.values()) - {"applied"} for states in seen
    ), f"the rollout was never seen part-way: {seen}"
    expect(admin.locator("#change-status")).to_have_text("applied")
    expect(admin.locator("#rollout")).not_to_have_attribute("hx-trigger", re.compile(".*"))
    expect(admin.locator("#rollout-summary")).to_contain_text(f"{FLEET} devices: {FLEET} applied")
    expect(admin.locator("#rollout .rollout-wave-head")).to_have_text(
        [re.compile("^Canary"), re.compile("^Wave 1"), re.compile("^Wave 2")]
    )
    assert admin.evaluate("window.__noReload === true"), "the page was reloaded"
    for name in names:
        config = site.lab.config_of(name)
        assert "ntp server 192.0.2.123" in config, name
        assert f" description {name} managed by netops" in config, name

    # the run behind it, and the config after the change, one click away
    admin.click("#rollout-device-ios-003 .rollout-after")
    expect(admin.locator("body")).to_contain_text("description ios-003 managed by netops")
    admin.go_back()
    admin.click("#rollout-run")
    admin.wait_for_url(re.compile(r"/runs/\d+$"))
    expect(admin.locator("#run-status")).to_have_attribute("data-status", "COMPLETED_SUCCESS")
