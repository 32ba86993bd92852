"""Applying a change to one device (app.changes.push) through Rookery's netmiko driver,
against the stateful cisco_ios emulator on 127.0.0.1: snapshot, checks, push, and the
native (configure replace) and line-by-line (hier_config) rollbacks."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import pytest

from app.changes.push import DeviceOutcome, apply_to_device
from app.config_store import normalize_config
from app.drivers import DriverSession, SessionOptions
from app.stateful_lab import StatefulLab, stateful_fleet
from tests.integration.change_lab import open_device

NAME = "ios-001"
HEALTHY = "Neighbor        V    AS  State/PfxRcd\n192.0.2.2       4 65001  12"
BROKEN = "Neighbor        V    AS  State/PfxRcd\n192.0.2.2       4 65001  Idle"
#: a post-check: the BGP neighbor must not be Idle
BGP_UP = {"command": "show ip bgp summary", "expect": r"\bIdle\b", "absent": True}
CHANGE = (
    "ntp server 192.0.2.50\ninterface Loopback0\n description BREAKS-BGP\nsnmp-server contact noc"
)


@pytest.fixture(scope="module")
def _lab() -> Iterator[StatefulLab]:
    with StatefulLab(stateful_fleet(2, enable_secrets=True)) as lab:
        yield lab


@pytest.fixture
def lab(_lab: StatefulLab) -> Iterator[StatefulLab]:
    """Devices as they started, with a BGP summary that goes Idle with BREAKS-BGP."""
    _lab.set_show(NAME, "show ip bgp summary", HEALTHY)
    _lab.set_show(NAME, "show ip bgp summary", BROKEN, when=r"^ description BREAKS-BGP$")
    yield _lab
    _lab.reset()


@pytest.fixture
def session(lab: StatefulLab) -> Iterator[DriverSession]:
    with open_device(lab, NAME) as opened:
        yield opened


def apply(session: DriverSession, commands: str = CHANGE, **kwargs: object) -> DeviceOutcome:
    kwargs.setdefault("checks", [BGP_UP])
    kwargs.setdefault("snapshot_name", "change-7-before")
    return apply_to_device(session, platform="cisco_ios", commands=commands, **kwargs)  # type: ignore[arg-type]


def config_lines(lab: StatefulLab) -> list[str]:
    return lab.config_of(NAME).splitlines()


def test_applied_when_post_checks_pass(lab: StatefulLab, session: DriverSession) -> None:
    before = lab.config_of(NAME)
    outcome = apply(session, "ntp server 192.0.2.50\ninterface Loopback0\n description managed")

    assert outcome.state == "applied", outcome.messages
    assert outcome.before == normalize_config("cisco_ios", before)
    after = lab.config_of(NAME)
    assert "ntp server 192.0.2.50" in after.splitlines()
    assert " description managed" in after.splitlines()
    assert outcome.after == normalize_config("cisco_ios", after)
    assert [c.passed for c in outcome.prechecks + outcome.postchecks] == [True, True]
    assert outcome.rollback is None
    # The snapshot was taken natively, and the change saved.
    assert before.endswith(lab.flash_of(NAME)["change-7-before"])
    assert "ntp server 192.0.2.50" in (lab.startup_of(NAME) or "")
    commands = lab.commands_of(NAME)
    assert commands.index("copy running-config flash:change-7-before") < commands.index(
        "configure terminal"
    )
    assert commands[-3:] == ["write mem", "show ip bgp summary", "show running-config"]


def test_failing_post_check_rolls_back_natively(lab: StatefulLab, session: DriverSession) -> None:
    before = lab.config_of(NAME)
    startup = lab.startup_of(NAME)
    outcome = apply(session)

    assert outcome.state == "rolled_back", outcome.messages
    assert [c.passed for c in outcome.prechecks] == [True]
    [post] = outcome.postchecks
    assert not post.passed and "Idle" in post.excerpt
    assert outcome.rollback is not None
    assert outcome.rollback.method == "native" and outcome.rollback.verified
    assert lab.config_of(NAME) == before
    assert outcome.after == normalize_config("cisco_ios", before)
    # The change had been saved; the restored config is saved over it.
    assert lab.startup_of(NAME) == startup
    commands = lab.commands_of(NAME)
    assert "configure replace flash:change-7-before force" in commands
    assert commands.count("configure terminal") == 1  # no line-by-line commands
    assert any("Post-check failed: show ip bgp summary" in m for m in outcome.messages)


def test_refused_line_stops_the_push_and_rolls_back(
    lab: StatefulLab, session: DriverSession
) -> None:
    before = lab.config_of(NAME)
    lab.fail_command(NAME, r"^description BREAKS-BGP")
    outcome = apply(session)

    assert outcome.state == "rolled_back", outcome.messages
    assert outcome.postchecks == [] and outcome.push_output is None
    assert "refused 'description BREAKS-BGP'" in outcome.messages[0]
    assert "% Invalid input" in outcome.messages[0]
    assert lab.config_of(NAME) == before
    commands = lab.commands_of(NAME)
    assert "ntp server 192.0.2.50" in commands  # sent, then rolled back
    assert "snmp-server contact noc" not in commands  # never sent
    assert (
        "write mem" in commands[commands.index("configure replace flash:change-7-before force") :]
    )


def test_failed_pre_check_sends_nothing(lab: StatefulLab, session: DriverSession) -> None:
    before = lab.config_of(NAME)
    lab.set_show(NAME, "show ip bgp summary", BROKEN)
    outcome = apply(session)

    assert outcome.state == "failed_precheck"
    assert not outcome.prechecks[0].passed and outcome.postchecks == []
    assert outcome.before == normalize_config("cisco_ios", before)
    assert "pre-check failed" in outcome.messages[-1]
    assert "configure terminal" not in lab.commands_of(NAME)
    assert lab.config_of(NAME) == before


def test_unknown_check_command_fails_the_pre_check(
    lab: StatefulLab, session: DriverSession
) -> None:
    outcome = apply(session, checks=[{"command": "show frobnicate", "expect": "x", "absent": True}])
    assert outcome.state == "failed_precheck"
    assert outcome.prechecks[0].why.startswith("refused: % Invalid input")
    assert "configure terminal" not in lab.commands_of(NAME)


def test_line_by_line_rollback_restores_the_snapshot(
    lab: StatefulLab, session: DriverSession
) -> None:
    before = lab.config_of(NAME)
    change = "\n".join(
        [
            "hostname edge-renamed",
            "no snmp-server location",
            "interface GigabitEthernet0/1",
            " description BREAKS-BGP",
            " shutdown",
            "vlan 999",
            " name quarantine",
        ]
    )
    outcome = apply(session, change, native=False)

    assert outcome.state == "rolled_back", outcome.messages
    assert outcome.rollback is not None and outcome.rollback.method == "line_by_line"
    assert "hostname ios-001" in outcome.rollback.commands
    assert "no vlan 999" in outcome.rollback.commands
    assert lab.config_of(NAME) == before
    commands = lab.commands_of(NAME)
    assert not any(
        c.startswith(("configure replace", "copy running-config flash")) for c in commands
    )
    assert lab.flash_of(NAME) == {}
    # The session followed the renamed prompt and back.
    assert session.get_config() == before.rstrip("\n")


def test_broken_native_rollback_falls_back_to_lines(
    lab: StatefulLab, session: DriverSession
) -> None:
    before = lab.config_of(NAME)
    lab.break_rollback(NAME)
    outcome = apply(session)

    assert outcome.state == "rolled_back", outcome.messages
    assert outcome.rollback is not None and outcome.rollback.method == "line_by_line"
    attempts = outcome.rollback.attempts
    assert attempts[0].startswith("configure replace failed")
    assert "Rollback aborted" in attempts[0]
    assert attempts[1] == "trying line by line (hier_config) instead"
    assert "no ntp server 192.0.2.50" in outcome.rollback.commands
    assert lab.config_of(NAME) == before


def test_broken_native_rollback_without_fallback_fails_loudly(
    lab: StatefulLab, session: DriverSession
) -> None:
    lab.break_rollback(NAME)
    outcome = apply(session, fallback_to_lines=False)

    assert outcome.state == "rollback_failed"
    assert outcome.rollback is not None and not outcome.rollback.verified
    assert outcome.messages[-1].startswith("ROLLBACK FAILED (native)")
    assert "ntp server 192.0.2.50" in config_lines(lab)  # the change is still there
    assert "hier_config" not in " ".join(outcome.messages)


def test_both_rollbacks_failing_is_rollback_failed(
    lab: StatefulLab, session: DriverSession
) -> None:
    lab.break_rollback(NAME)
    lab.fail_command(NAME, r"^no ntp server")
    outcome = apply(session)

    assert outcome.state == "rollback_failed"
    assert outcome.rollback is not None
    assert any(a.startswith("line by line failed") for a in outcome.rollback.attempts)
    assert "ROLLBACK FAILED" in outcome.messages[-1]
    assert "ntp server 192.0.2.50" in config_lines(lab)


def test_a_lost_session_rolls_back_on_a_new_one() -> None:
    """A push that hangs loses the session; ``reconnect`` opens another for the rollback
    (and without it the device is rollback_failed). Its own lab: the hung line stays
    pending on the dead session until the lab stops."""
    with StatefulLab(stateful_fleet(2, enable_secrets=True)) as lab:
        short = dataclasses.replace(SessionOptions(), read_timeout=1.5)
        for name in ("ios-001", "ios-002"):
            lab.hang(name, math.inf, pattern=r"^description SLOW")
        before = lab.config_of("ios-001")
        change = "ntp server 192.0.2.50\ninterface Loopback0\n description SLOW"
        with open_device(lab, "ios-001", short) as first:
            outcome = apply(first, change, checks=[], reconnect=lambda: open_device(lab, "ios-001"))
        assert outcome.state == "rolled_back", outcome.messages
        assert "did not finish 'description SLOW'" in outcome.messages[0]
        assert "rolling back on a new session" in outcome.messages[1]
        assert lab.config_of("ios-001") == before

        with open_device(lab, "ios-002", short) as first:
            outcome = apply(first, change, checks=[])
        assert outcome.state == "rollback_failed"
        assert "session was lost" in outcome.messages[-1]
        assert "ntp server 192.0.2.50" in lab.config_of("ios-002").splitlines()


def test_a_multi_line_banner_is_pushed_whole(lab: StatefulLab, session: DriverSession) -> None:
    change = "banner motd ^C\nAuthorised use only\n^C\nntp server 192.0.2.51"
    outcome = apply(session, change, checks=[])
    assert outcome.state == "applied", outcome.messages
    config = lab.config_of(NAME)
    assert "Authorised use only" in config and "ntp server 192.0.2.51" in config.splitlines()
