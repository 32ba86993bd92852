"""Applying a change to a Cisco IOS-XR device (app.changes.push) through Rookery's netmiko
driver, against the stateful emulator's IOS-XR dialect on 127.0.0.1: the lines go to a
candidate that one commit applies (a refused line drops the candidate: nothing is
committed), and the native rollback undoes the commits made since the checkpoint
(``rollback configuration last N``), with hier_config's lines (committed) as fallback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.changes.push import DeviceOutcome, apply_to_device
from app.config_store import normalize_config
from app.drivers import DriverSession
from app.stateful_lab import StatefulLab, stateful_fleet
from tests.integration.change_lab import BROKEN, HEALTHY, open_device

NAME = "xr-001"
BGP_UP = {"command": "show bgp summary", "expect": r"\bIdle\b", "absent": True}
CHANGE = (
    "ntp server 192.0.2.50\ninterface Loopback0\n description BREAKS-BGP\nsnmp-server contact noc"
)


@pytest.fixture(scope="module")
def _lab() -> Iterator[StatefulLab]:
    with StatefulLab(stateful_fleet(1, platforms=("cisco_xr",))) as lab:
        yield lab


@pytest.fixture
def lab(_lab: StatefulLab) -> Iterator[StatefulLab]:
    _lab.set_show(NAME, "show bgp summary", HEALTHY)
    _lab.set_show(NAME, "show bgp summary", BROKEN, when=r"^ description BREAKS-BGP$")
    yield _lab
    _lab.reset()


@pytest.fixture
def session(lab: StatefulLab) -> Iterator[DriverSession]:
    with open_device(lab, NAME) as opened:
        yield opened


def apply(session: DriverSession, commands: str = CHANGE, **kwargs: object) -> DeviceOutcome:
    kwargs.setdefault("checks", [BGP_UP])
    kwargs.setdefault("snapshot_name", "change-11-before")
    return apply_to_device(session, platform="cisco_xr", commands=commands, **kwargs)  # type: ignore[arg-type]


def test_applied_with_one_commit(lab: StatefulLab, session: DriverSession) -> None:
    before = lab.config_of(NAME)
    outcome = apply(session, "ntp server 192.0.2.50\ninterface Loopback0\n description managed")

    assert outcome.state == "applied", outcome.messages
    assert outcome.before == normalize_config("cisco_xr", before)
    after = lab.config_of(NAME).splitlines()
    assert "ntp server 192.0.2.50" in after and " description managed" in after
    commands = lab.commands_of(NAME)
    assert commands.count("commit") == 1
    # the checkpoint (the commit list) was read before configuration mode was entered
    assert commands.index("show configuration commit list") < commands.index("configure terminal")
    assert commands.index("description managed") < commands.index("commit")
    assert not any(c.startswith("write") for c in commands)


def test_failing_post_check_undoes_the_commit(lab: StatefulLab, session: DriverSession) -> None:
    before = lab.config_of(NAME)
    outcome = apply(session)

    assert outcome.state == "rolled_back", outcome.messages
    assert outcome.rollback is not None
    assert outcome.rollback.method == "native" and outcome.rollback.verified
    assert lab.config_of(NAME) == before
    commands = lab.commands_of(NAME)
    assert "rollback configuration last 1" in commands
    assert commands.count("commit") == 1  # the change's; the rollback is its own commit
    assert "no ntp server 192.0.2.50" not in commands


def test_a_refused_line_drops_the_candidate(lab: StatefulLab, session: DriverSession) -> None:
    before = lab.config_of(NAME)
    lab.fail_command(NAME, r"^description BREAKS-BGP")
    outcome = apply(session)

    assert outcome.state == "rolled_back", outcome.messages
    assert "refused 'description BREAKS-BGP'" in outcome.messages[0]
    commands = lab.commands_of(NAME)
    assert "commit" not in commands and "snmp-server contact noc" not in commands
    assert "no" in commands  # "Uncommitted changes found ...?" answered no: dropped
    assert not any(c.startswith("rollback configuration") for c in commands)
    assert lab.config_of(NAME) == before


def test_a_failing_rollback_falls_back_to_committed_lines(
    lab: StatefulLab, session: DriverSession
) -> None:
    before = lab.config_of(NAME)
    lab.break_rollback(NAME, message="!! CONFIGURATION ROLLBACK FAILED")
    outcome = apply(session)

    assert outcome.state == "rolled_back", outcome.messages
    assert outcome.rollback is not None and outcome.rollback.method == "line_by_line"
    assert outcome.rollback.attempts[0].startswith(
        "rollback configuration failed: rollback configuration last 1 failed: % Failed to commit"
    )
    assert "no ntp server 192.0.2.50" in outcome.rollback.commands
    assert lab.config_of(NAME) == before
    assert lab.commands_of(NAME).count("commit") == 2  # the change's, the rollback lines'


def test_line_by_line_only_commits_its_lines(lab: StatefulLab, session: DriverSession) -> None:
    before = lab.config_of(NAME)
    outcome = apply(session, native=False)

    assert outcome.state == "rolled_back", outcome.messages
    assert outcome.rollback is not None and outcome.rollback.method == "line_by_line"
    assert lab.config_of(NAME) == before
    commands = lab.commands_of(NAME)
    assert "show configuration commit list" not in commands
    assert commands.count("commit") == 2
