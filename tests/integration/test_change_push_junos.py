"""Applying a change to a Juniper Junos device (app.changes.push) through Rookery's
netmiko driver, against the stateful emulator's Junos CLI on 127.0.0.1: the push is
committed with ``commit confirmed`` and a comment naming the snapshot, confirmed once the
post-checks pass, rolled back with ``rollback K`` of the commit before it; a device left
unconfirmed (the session lost, no new one) undoes the change by itself."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator

import pytest

from app.changes.push import DeviceOutcome, apply_to_device
from app.config_store import normalize_config
from app.drivers import DriverSession, SessionOptions
from app.stateful_lab import StatefulLab, stateful_fleet
from tests.integration.change_lab import BROKEN, HEALTHY, open_device

NAME = "junos-001"
SNAPSHOT = "change-13-before"
BGP_UP = {"command": "show bgp summary", "expect": r"\bIdle\b", "absent": True}
CHANGE = (
    "set system ntp server 192.0.2.50\n"
    'set interfaces lo0 description "BREAKS-BGP"\n'
    "set snmp contact noc"
)
#: a lab minute, in seconds: commit confirmed 5 lasts 5 of them
MINUTE = 0.4


@pytest.fixture(scope="module")
def _lab() -> Iterator[StatefulLab]:
    with StatefulLab(stateful_fleet(1, platforms=("juniper_junos",)), minute=MINUTE) as lab:
        yield lab


@pytest.fixture
def lab(_lab: StatefulLab) -> Iterator[StatefulLab]:
    _lab.set_show(NAME, "show bgp summary", HEALTHY)
    _lab.set_show(NAME, "show bgp summary", BROKEN, when=r'description "BREAKS-BGP";')
    yield _lab
    _lab.reset()


@pytest.fixture
def session(lab: StatefulLab) -> Iterator[DriverSession]:
    with open_device(lab, NAME) as opened:
        yield opened


def apply(session: DriverSession, commands: str = CHANGE, **kwargs: object) -> DeviceOutcome:
    kwargs.setdefault("checks", [BGP_UP])
    kwargs.setdefault("snapshot_name", SNAPSHOT)
    return apply_to_device(session, platform="juniper_junos", commands=commands, **kwargs)  # type: ignore[arg-type]


def test_applied_with_commit_confirmed_then_confirmed(
    lab: StatefulLab, session: DriverSession
) -> None:
    before = lab.config_of(NAME)
    outcome = apply(session, "set system ntp server 192.0.2.50\nset snmp contact noc")

    assert outcome.state == "applied", outcome.messages
    assert outcome.before == normalize_config("juniper_junos", before)
    assert [c.command for c in outcome.postchecks] == ["show bgp summary", "confirm"]
    commands = lab.commands_of(NAME)
    assert f'commit confirmed 5 comment "rookery {SNAPSHOT}"' in commands
    assert commands.index("set snmp contact noc") < commands.index(
        f'commit confirmed 5 comment "rookery {SNAPSHOT}"'
    )
    assert 'commit comment "rookery: confirmed"' in commands
    # confirmed: the device keeps the change after the confirm timer would have ended
    time.sleep(6 * MINUTE)
    config = lab.config_of(NAME)
    assert "        server 192.0.2.50;" in config and "    contact noc;" in config


def test_failing_post_check_rolls_back_to_the_commit_before(
    lab: StatefulLab, session: DriverSession
) -> None:
    before = lab.config_of(NAME)
    outcome = apply(session)

    assert outcome.state == "rolled_back", outcome.messages
    assert outcome.rollback is not None
    assert outcome.rollback.method == "native" and outcome.rollback.verified
    assert lab.config_of(NAME) == before
    commands = lab.commands_of(NAME)
    assert "rollback 1" in commands
    assert 'commit comment "rookery: confirmed"' not in commands
    assert not any(c.startswith("delete ") for c in commands)  # not line by line


def test_a_refused_line_commits_nothing(lab: StatefulLab, session: DriverSession) -> None:
    before = lab.config_of(NAME)
    lab.fail_command(NAME, r"BREAKS-BGP")
    outcome = apply(session)

    assert outcome.state == "rolled_back", outcome.messages
    assert "syntax error." in outcome.messages[0]
    commands = lab.commands_of(NAME)
    assert not any(c.startswith("commit") for c in commands)
    assert "rollback 0" in commands  # the candidate was discarded
    assert "set snmp contact noc" not in commands
    assert lab.config_of(NAME) == before


def test_a_failing_rollback_falls_back_to_set_and_delete(
    lab: StatefulLab, session: DriverSession
) -> None:
    before = lab.config_of(NAME)
    lab.fail_command(NAME, r"^rollback 1$", "error: rollback 1 could not be loaded")
    outcome = apply(session)

    assert outcome.state == "rolled_back", outcome.messages
    assert outcome.rollback is not None and outcome.rollback.method == "line_by_line"
    assert "rollback 1 failed" in outcome.rollback.attempts[0]
    assert "delete system ntp server 192.0.2.50" in outcome.rollback.commands
    assert lab.config_of(NAME) == before


def test_a_lost_device_undoes_the_unconfirmed_commit_by_itself() -> None:
    """The post-check hangs, the session is lost and no new one can be opened: Rookery
    reports rollback_failed, and Junos restores the config when the timer ends."""
    with StatefulLab(stateful_fleet(1, platforms=("juniper_junos",)), minute=MINUTE) as lab:
        before = lab.config_of(NAME)
        lab.hang(NAME, math.inf, pattern=r"^show bgp summary")
        short = dataclasses.replace(SessionOptions(), read_timeout=1.0)
        with open_device(lab, NAME, short) as first:
            outcome = apply(first, checks=[{**BGP_UP, "when": "after"}])
        assert outcome.state == "rollback_failed"
        assert "undoes the commit by itself within 5 minute(s)" in outcome.messages[-1]
        assert "192.0.2.50" in lab.config_of(NAME)
        deadline = time.monotonic() + 5 * MINUTE + 5
        while "192.0.2.50" in lab.config_of(NAME) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lab.config_of(NAME) == before
