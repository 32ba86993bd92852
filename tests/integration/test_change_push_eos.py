"""Applying a change to an Arista EOS device (app.changes.push) through Rookery's netmiko
driver, against the stateful emulator's EOS dialect on 127.0.0.1: the push goes through
a configure session (committed whole, or aborted at a refused line so nothing of it
applies), the native rollback is ``configure replace`` of a flash checkpoint, and the
line-by-line fallback speaks EOS (three-space indents)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.changes.push import DeviceOutcome, apply_to_device
from app.config_store import normalize_config
from app.drivers import DriverSession
from app.stateful_lab import StatefulLab, stateful_fleet
from tests.integration.change_lab import BROKEN, HEALTHY, open_device

NAME = "eos-001"
SNAPSHOT = "change-9-before"
BGP_UP = {"command": "show ip bgp summary", "expect": r"\bIdle\b", "absent": True}
CHANGE = (
    "ntp server 192.0.2.50\ninterface Loopback0\n   description BREAKS-BGP\nsnmp-server contact noc"
)


@pytest.fixture(scope="module")
def _lab() -> Iterator[StatefulLab]:
    with StatefulLab(stateful_fleet(1, platforms=("arista_eos",), enable_secrets=True)) as lab:
        yield lab


@pytest.fixture
def lab(_lab: StatefulLab) -> Iterator[StatefulLab]:
    _lab.set_show(NAME, "show ip bgp summary", HEALTHY)
    _lab.set_show(NAME, "show ip bgp summary", BROKEN, when=r"^   description BREAKS-BGP$")
    yield _lab
    _lab.reset()


@pytest.fixture
def session(lab: StatefulLab) -> Iterator[DriverSession]:
    with open_device(lab, NAME) as opened:
        yield opened


def apply(session: DriverSession, commands: str = CHANGE, **kwargs: object) -> DeviceOutcome:
    kwargs.setdefault("checks", [BGP_UP])
    kwargs.setdefault("snapshot_name", SNAPSHOT)
    return apply_to_device(session, platform="arista_eos", commands=commands, **kwargs)  # type: ignore[arg-type]


def test_applied_through_a_configure_session(lab: StatefulLab, session: DriverSession) -> None:
    before = lab.config_of(NAME)
    outcome = apply(session, "ntp server 192.0.2.50\ninterface Loopback0\n   description managed")

    assert outcome.state == "applied", outcome.messages
    assert outcome.before == normalize_config("arista_eos", before)
    after = lab.config_of(NAME).splitlines()
    assert "ntp server 192.0.2.50" in after and "   description managed" in after
    assert "ntp server 192.0.2.50" in (lab.startup_of(NAME) or "")
    commands = lab.commands_of(NAME)
    # checkpoint first, then the lines in a session committed together, then saved
    opened = commands.index(f"configure session {SNAPSHOT}")
    assert commands.index(f"copy running-config flash:{SNAPSHOT}") < opened
    assert commands[opened + 1 : opened + 5] == [
        "ntp server 192.0.2.50",
        "interface Loopback0",
        "description managed",
        "commit",
    ]
    assert "configure terminal" not in commands
    assert before.endswith(lab.flash_of(NAME)[SNAPSHOT].split("\n", 1)[1])


def test_failing_post_check_rolls_back_with_configure_replace(
    lab: StatefulLab, session: DriverSession
) -> None:
    before = lab.config_of(NAME)
    outcome = apply(session)

    assert outcome.state == "rolled_back", outcome.messages
    assert outcome.rollback is not None
    assert outcome.rollback.method == "native" and outcome.rollback.verified
    assert lab.config_of(NAME) == before
    commands = lab.commands_of(NAME)
    assert f"configure replace flash:{SNAPSHOT}" in commands
    assert "no ntp server 192.0.2.50" not in commands  # not line by line


def test_a_refused_line_aborts_the_session_and_applies_nothing(
    lab: StatefulLab, session: DriverSession
) -> None:
    before = lab.config_of(NAME)
    lab.fail_command(NAME, r"^description BREAKS-BGP")
    outcome = apply(session)

    assert outcome.state == "rolled_back", outcome.messages
    assert "refused 'description BREAKS-BGP'" in outcome.messages[0]
    assert "nothing of it was applied" in outcome.messages[0]
    commands = lab.commands_of(NAME)
    refused = commands.index("description BREAKS-BGP")
    assert commands[refused + 1] == "abort"
    assert "snmp-server contact noc" not in commands and "commit" not in commands
    # the first line was typed into the session but never reached the running config
    assert "ntp server 192.0.2.50" in commands
    assert all(
        "ntp server 192.0.2.50" not in text
        for text in (lab.config_of(NAME), lab.startup_of(NAME) or "")
    )
    assert lab.config_of(NAME) == before


def test_a_broken_replace_falls_back_to_eos_lines(lab: StatefulLab, session: DriverSession) -> None:
    before = lab.config_of(NAME)
    lab.break_rollback(NAME, message="session commit failed")
    outcome = apply(session)

    assert outcome.state == "rolled_back", outcome.messages
    assert outcome.rollback is not None and outcome.rollback.method == "line_by_line"
    assert "% Configuration replace failed" in outcome.rollback.attempts[0]
    assert "no ntp server 192.0.2.50" in outcome.rollback.commands
    assert lab.config_of(NAME) == before


def test_line_by_line_only_speaks_eos(lab: StatefulLab, session: DriverSession) -> None:
    before = lab.config_of(NAME)
    change = (
        "interface Ethernet1\n   description BREAKS-BGP\n   shutdown\nvlan 999\n   name quarantine"
    )
    outcome = apply(session, change, native=False)

    assert outcome.state == "rolled_back", outcome.messages
    assert outcome.rollback is not None and outcome.rollback.method == "line_by_line"
    assert "no vlan 999" in outcome.rollback.commands
    assert lab.config_of(NAME) == before
    commands = lab.commands_of(NAME)
    assert "configure terminal" in commands  # no session without the native profile
    assert not any(c.startswith(("configure session", "configure replace")) for c in commands)
