"""What each platform prints when it refuses a command (app.platforms.command_error)."""

from __future__ import annotations

import pytest

from app import platforms

CARET = "                 ^"


@pytest.mark.parametrize(
    ("platform", "output", "line"),
    [
        # IOS / IOS-XE: netmiko strips the echoed command; the marker line comes first
        ("cisco_ios", f"{CARET}\n% Invalid input detected at '^' marker.\n", None),
        ("cisco_ios", "% Incomplete command.\n", "% Incomplete command."),
        ("cisco_ios", '% Ambiguous command:  "show i"', '% Ambiguous command:  "show i"'),
        (
            "cisco_ios",
            "% Unknown command or computer name, or unable to find computer address",
            None,
        ),
        ("cisco_xe", "\n\n% Invalid input detected at '^' marker.", None),
        ("cisco_ios", "%Error opening tftp://192.0.2.1/x (Timed out)", None),
        # IOS-XR prints the time before the answer of every show command
        (
            "cisco_xr",
            f"Mon Oct 19 18:57:38.347 UTC\n{CARET}\n% Invalid input detected at '^' marker.",
            "% Invalid input detected at '^' marker.",
        ),
        ("cisco_nxos", f"{CARET}\n% Invalid command at '^' marker.", None),
        ("cisco_nxos", "Syntax error while parsing 'show foo bar'", None),
        ("cisco_nxos", "Error: Invalid VLAN ID", None),
        ("arista_eos", "% Invalid input (at token 1: 'foo')", None),
        ("arista_eos", "% Unavailable command (not supported on this hardware platform)", None),
        ("arista_eos", "Error: Interface Ethernet99 does not exist", None),
        ("juniper_junos", f"{CARET}\nsyntax error, expecting <command>.", None),
        ("juniper_junos", f"{CARET}\nunknown command.", None),
        ("juniper_junos", "error: device ge-0/0/99 not found", None),
        ("huawei", f"{CARET}\nError: Unrecognized command found at '^' position.", None),
        ("huawei_vrpv8", "Error:Incomplete command found at '^' position.", None),
        ("hp_comware", f"{CARET}\n % Unrecognized command found at '^' position.", None),
        ("hp_comware", "% Too many parameters found at '^' position.", None),
        ("cisco_asa", f"{CARET}\nERROR: % Invalid input detected at '^' marker.", None),
        ("linux", "-bash: shwo: command not found", None),
        ("linux", "sh: 1: shwo: not found", None),
        # a platform Rookery has no list for: every common refusal
        ("dell_os10", "% Error: Unrecognized command.", None),
        ("mikrotik_routeros", "syntax error (line 1 column 6)", None),
        ("some_new_os", "Unknown command", None),
        # FakeNOS, the test devices, answers this on the platforms it has no reply for
        ("cisco_nxos", "Unknown command", None),
        ("cisco_xr", "Unknown command", None),
        ("juniper_junos", "Unknown command", None),
    ],
)
def test_refusals_are_recognised(platform, output, line):
    # line None: the refusal is the answer's first line that is not blank nor the marker
    expected = line or next(
        text.strip() for text in output.splitlines() if text.strip() and text.strip() != "^"
    )
    assert platforms.command_error(platform, output) == expected


@pytest.mark.parametrize(
    ("platform", "output"),
    [
        ("cisco_ios", "Building configuration...\n\nCurrent configuration : 1234 bytes\n!\n"),
        ("cisco_ios", "*Mar  1 00:00:01.123: %SYS-5-CONFIG_I: Configured from console"),
        ("cisco_ios", "*Mar  1 00:00:02: %LINK-3-UPDOWN: Interface Gi0/1, changed state to down"),
        ("cisco_ios", "Ethernet0/0 is up, line protocol is down"),
        ("cisco_ios", ""),
        # a refusal is the first thing a device prints: deeper in the output it is data
        ("cisco_ios", "banner motd ^C\none\ntwo\n% Invalid input detected at '^' marker.\n^C"),
        ("cisco_nxos", "Cisco Nexus Operating System (NX-OS) Software\nTAC support: ..."),
        ("arista_eos", "Et1    connected    1    full   10G   EtherSVI  error: none"),
        ("juniper_junos", "## Last commit: 2024-01-01 by admin\nversion 21.4R3;\nsystem {"),
        ("juniper_junos", "Jan  1 00:00:00  r1 mgd[1]: error: commit failed"),
        ("linux", "r1.example.net"),
        # per platform: IOS and XR never answer "Error:", a shell never "% Invalid input"
        ("cisco_ios", "Error: looks like an error but IOS does not say it this way"),
        ("cisco_xr", "syntax error is a phrase in a description"),
        ("linux", "% Invalid input detected at '^' marker."),
    ],
)
def test_output_is_not_a_refusal(platform, output):
    assert platforms.command_error(platform, output) is None


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("cisco_ios", "cisco_ios"),
        ("cisco_ios_telnet", "cisco_ios"),
        (" Juniper ", "juniper_junos"),
        ("juniper_junos_ssh", "juniper_junos"),
        ("cisco_iosxe", "cisco_xe"),
        ("eos", "arista_eos"),
        ("unknown_thing", "unknown_thing"),
    ],
)
def test_platform_key(name, key):
    assert platforms.platform_key(name) == key


def test_aliases_share_their_platform_patterns():
    assert platforms.command_error("juniper", "syntax error, expecting <command>.") is not None
    assert platforms.command_error("cisco_ios_telnet", "Error: x") is None
    assert platforms.command_error("cisco_ios_telnet", "% Incomplete command.") is not None
