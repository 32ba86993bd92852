"""The device-free parts of applying a change (app.changes.push): hier_config rollback
commands, snapshot comparison, checks, and how the driver batches config lines."""

from __future__ import annotations

import pytest

from app.changes.push import (
    Check,
    Snapshot,
    command_lines,
    configs_match,
    native_strategy,
    parse_checks,
    rollback_commands,
)
from app.drivers.netmiko_driver import config_batches

SNAPSHOT = """Building configuration...

Current configuration : 321 bytes
!
hostname edge-1
!
username admin privilege 15 secret 9 $9$abcdefgh$ijklmnop
!
interface GigabitEthernet0/1
 description uplink
 ip address 10.0.0.1 255.255.255.252
!
interface Loopback0
 ip address 192.0.2.1 255.255.255.255
!
router bgp 65000
 neighbor 192.0.2.2 remote-as 65001
 address-family ipv4
  neighbor 192.0.2.2 activate
 exit-address-family
!
snmp-server location rack-1
!
end
"""


def changed(*edits: tuple[str, str]) -> str:
    text = SNAPSHOT
    for old, new in edits:
        assert old in text
        text = text.replace(old, new)
    return text


def test_no_commands_when_nothing_changed() -> None:
    assert rollback_commands(SNAPSHOT, SNAPSHOT, "cisco_ios") == []
    assert configs_match(SNAPSHOT, SNAPSHOT, "cisco_ios")


def test_rollback_undoes_added_changed_and_removed_lines() -> None:
    current = changed(
        (" description uplink\n", " description maintenance\n shutdown\n"),
        ("snmp-server location rack-1\n", "ip route 0.0.0.0 0.0.0.0 192.0.2.254\n"),
    )
    assert rollback_commands(current, SNAPSHOT, "cisco_ios") == [
        "no ip route 0.0.0.0 0.0.0.0 192.0.2.254",
        "interface GigabitEthernet0/1",
        " description uplink",
        " no shutdown",
        "exit",
        "snmp-server location rack-1",
    ]
    assert not configs_match(current, SNAPSHOT, "cisco_ios")


def test_rollback_restores_secrets_and_nested_sections() -> None:
    # The snapshot is compared unredacted: a changed secret is put back as it was.
    current = changed(
        ("secret 9 $9$abcdefgh$ijklmnop", "secret 9 $9$changed$changed"),
        ("  neighbor 192.0.2.2 activate\n", ""),
        ("hostname edge-1", "hostname renamed"),
    )
    commands = rollback_commands(current, SNAPSHOT, "cisco_ios")
    assert "username admin privilege 15 secret 9 $9$abcdefgh$ijklmnop" in commands
    assert "hostname edge-1" in commands
    bgp = commands.index("router bgp 65000")
    assert commands[bgp : bgp + 3] == [
        "router bgp 65000",
        " address-family ipv4",
        "  neighbor 192.0.2.2 activate",
    ]
    # Each section is left before the next top-level line.
    for index, line in enumerate(commands[1:], 1):
        depth = len(line) - len(line.lstrip())
        previous = commands[index - 1]
        previous_depth = len(previous) - len(previous.lstrip())
        if line != "exit" and previous != "exit":
            assert depth <= previous_depth + 1


def test_volatile_lines_and_order_do_not_count_as_differences() -> None:
    reordered = (
        changed(
            ("Current configuration : 321 bytes", "Current configuration : 999 bytes"),
            (
                "interface Loopback0\n ip address 192.0.2.1 255.255.255.255\n!\n",
                "! Last configuration change at 10:00:00 UTC Mon Jan 1 2024\n",
            ),
        )
        + "interface Loopback0\n ip address 192.0.2.1 255.255.255.255\n!\n"
    )
    assert configs_match(reordered, SNAPSHOT, "cisco_ios")
    assert not configs_match(changed(("rack-1", "rack-2")), SNAPSHOT, "cisco_ios")


def test_snapshot_stores_redacted_text_and_never_shows_its_config() -> None:
    taken = Snapshot(name="change-1-before", platform="cisco_ios", config=SNAPSHOT)
    assert "$9$abcdefgh" not in taken.stored
    assert "$9$abcdefgh" not in repr(taken)
    assert "Building configuration" not in taken.stored


def test_checks_parse_and_match() -> None:
    up, absent = parse_checks(
        [
            {"command": "show ip bgp summary", "expect": r"^192\.0\.2\.2\s.*\d+$"},
            Check("show logging", "%LINK-3-UPDOWN", absent=True),
        ]
    )
    assert up == Check("show ip bgp summary", r"^192\.0\.2\.2\s.*\d+$", absent=False)
    assert up.matches("Neighbor V AS\n192.0.2.2  4 65001 12")
    assert not up.matches("192.0.2.2  4 65001 Idle")
    assert absent.absent and absent.matches("%LINK-3-UPDOWN: Interface Gi0/1")
    with pytest.raises(ValueError, match="check 1: bad pattern"):
        parse_checks([{"command": "show x", "expect": "("}])
    with pytest.raises(ValueError, match="check 2: needs a command"):
        parse_checks([{"command": "show x", "expect": "x"}, {"expect": "y"}])
    (later,) = parse_checks([{"command": "show run", "expect": "ntp", "when": "after"}])
    assert later.when == "after" and up.when == "both"
    with pytest.raises(ValueError, match="when is before, after or both"):
        parse_checks([{"command": "show x", "expect": "x", "when": "later"}])


def test_command_lines_and_native_strategies() -> None:
    assert command_lines("ntp server 1.1.1.1\n\n interface Lo0  \n") == [
        "ntp server 1.1.1.1",
        " interface Lo0",
    ]
    assert native_strategy("cisco_ios") is not None
    assert native_strategy("cisco_ios_ssh") is not None
    assert getattr(native_strategy("arista_eos"), "sessions", False)  # pushes in a session
    assert not getattr(native_strategy("cisco_ios"), "sessions", False)
    assert native_strategy("cisco_xr") is not None
    junos = native_strategy("juniper_junos")
    assert junos is not None and junos.confirm_minutes  # commit confirmed
    for platform in ("cisco_nxos", "linux"):
        assert native_strategy(platform) is None


def test_driver_sends_a_multi_line_banner_as_one_batch() -> None:
    lines = [
        "hostname x",
        "banner motd ^C",
        "Authorised use only",
        "^C",
        "banner login #one line#",
        "ntp server 192.0.2.1",
    ]
    assert config_batches(lines) == [
        ["hostname x"],
        ["banner motd ^C", "Authorised use only", "^C"],
        ["banner login #one line#"],
        ["ntp server 192.0.2.1"],
    ]
