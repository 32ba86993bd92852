"""normalize_config: volatile lines per platform, secret redaction, idempotence."""

from __future__ import annotations

import pytest

from app.config_store import normalize_config

PLATFORMS = (
    "cisco_ios",
    "cisco_xe",
    "cisco_nxos",
    "cisco_xr",
    "arista_eos",
    "juniper_junos",
    "something_else",
)


def body(text: str, platform: str = "cisco_ios", **kwargs: bool) -> list[str]:
    return normalize_config(platform, text, **kwargs).splitlines()


@pytest.mark.parametrize(
    ("platform", "line"),
    (
        ("cisco_ios", "Building configuration..."),
        ("cisco_ios", "Current configuration : 4711 bytes"),
        ("cisco_ios", "! Last configuration change at 10:00:00 UTC Mon Jan 1 2024 by admin"),
        ("cisco_ios", "! NVRAM config last updated at 10:00:00 UTC Mon Jan 1 2024 by admin"),
        ("cisco_ios", "! No configuration change since last restart"),
        ("cisco_ios", "ntp clock-period 17179865"),
        ("cisco_ios", "r1 uptime is 1 week, 2 days, 3 hours, 4 minutes"),
        ("cisco_ios", "*10:00:00.123 UTC Mon Jan 1 2024"),
        ("cisco_xe", "Building configuration..."),
        ("cisco_xe", "Current configuration : 4711 bytes"),
        ("cisco_xe", "! Last configuration change at 10:00:00 UTC Mon Jan 1 2024"),
        ("cisco_nxos", "!Time: Mon Jan  1 10:00:00 2024"),
        ("cisco_nxos", "!Running configuration last done at: Mon Jan  1 10:00:00 2024"),
        ("cisco_nxos", "Last login: Mon Jan  1 09:00:00 2024 from 10.0.0.9"),
        ("cisco_xr", "Mon Jan  1 10:00:00.123 UTC"),
        ("cisco_xr", "Building configuration..."),
        ("cisco_xr", "!! Last configuration change at Mon Jan  1 10:00:00 2024 by admin"),
        ("arista_eos", "! Startup-config last modified at Mon Jan  1 10:00:00 2024 by admin"),
        ("arista_eos", "! Time: Mon Jan  1 10:00:00 2024"),
        ("juniper_junos", "## Last commit: 2024-01-01 10:00:00 UTC by admin"),
        ("juniper_junos", "## Last changed: 2024-01-01 10:00:00 UTC"),
        ("juniper_junos", "Last login: Mon Jan  1 09:00:00 2024 from 10.0.0.9"),
        ("something_else", "Building configuration..."),
        ("something_else", "## Last commit: 2024-01-01 10:00:00 UTC by admin"),
        ("something_else", "!Time: Mon Jan  1 10:00:00 2024"),
        ("something_else", "Last configuration change at Mon Jan  1 10:00:00 2024"),
        ("something_else", "System uptime is 3 days"),
        ("cisco_ios_telnet", "Current configuration : 4711 bytes"),
    ),
)
def test_volatile_lines_are_dropped(platform: str, line: str) -> None:
    text = f"hostname r1\n{line}\ninterface Gi1\n"
    assert body(text, platform) == ["hostname r1", "interface Gi1"]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_config_lines_that_look_volatile_stay(platform: str) -> None:
    text = (
        "clock timezone PST -8 0\n"
        "clock summer-time PDT recurring\n"
        " description uptime is monitored here\n"
        "ntp server 10.0.0.1\n"
        "! a comment of ours\n"
    )
    assert body(text, platform) == text.splitlines()


def test_whitespace_and_line_endings_are_normalised() -> None:
    text = "\r\n\r\nhostname r1   \r\ninterface Gi1\t\r\n description x\rend\r\n\r\n\r\n"
    assert (
        normalize_config("cisco_ios", text) == "hostname r1\ninterface Gi1\n description x\nend\n"
    )


def test_empty_config_is_empty() -> None:
    assert normalize_config("cisco_ios", "") == ""
    assert normalize_config("cisco_ios", "Building configuration...\r\n\r\n") == ""


@pytest.mark.parametrize(
    ("line", "expected"),
    (
        (
            "username admin privilege 15 secret 9 $9$abcdefgh",
            "username admin privilege 15 secret 9 <removed>",
        ),
        ("username bob password 7 0822455D0A16", "username bob password 7 <removed>"),
        ("username carol password cleartext", "username carol password <removed>"),
        (
            "username admin password 5 $5$abc  role network-admin",
            "username admin password 5 <removed>  role network-admin",
        ),
        (
            "username admin privilege 15 role network-admin secret sha512 $6$abc",
            "username admin privilege 15 role network-admin secret sha512 <removed>",
        ),
        ("enable secret 9 $9$abcdefgh", "enable secret 9 <removed>"),
        ("enable secret level 15 5 $1$abc", "enable secret level 15 5 <removed>"),
        ("enable password 7 0822455D0A16", "enable password 7 <removed>"),
        ("enable password sha512 $6$def", "enable password sha512 <removed>"),
        ("aaa root secret sha512 $6$ghi", "aaa root secret sha512 <removed>"),
        ("snmp-server community public RO", "snmp-server community <removed> RO"),
        (
            "snmp-server community s3cr3t group network-operator",
            "snmp-server community <removed> group network-operator",
        ),
        (
            "snmp-server host 10.0.0.1 version 2c s3cret",
            "snmp-server host 10.0.0.1 version 2c <removed>",
        ),
        (
            "snmp-server user admin network-admin auth md5 0x1234 priv 0x5678 localizedkey",
            "snmp-server user admin network-admin auth md5 <removed> priv <removed> localizedkey",
        ),
        (
            "tacacs-server host 10.1.1.1 key 7 070C285F4D06",
            "tacacs-server host 10.1.1.1 key 7 <removed>",
        ),
        (
            'tacacs-server host 10.1.1.1 key 7 "abc"',
            'tacacs-server host 10.1.1.1 key 7 "<removed>"',
        ),
        ("radius-server key 7 070C285F4D06", "radius-server key 7 <removed>"),
        (
            "radius-server host 10.1.1.2 auth-port 1645 acct-port 1646 key s3cret",
            "radius-server host 10.1.1.2 auth-port 1645 acct-port 1646 key <removed>",
        ),
        (
            "crypto isakmp key 6 abcdef address 1.2.3.4",
            "crypto isakmp key 6 <removed> address 1.2.3.4",
        ),
        ("  pre-shared-key local 6 abcdef", "  pre-shared-key local 6 <removed>"),
        (
            "  pre-shared-key address 1.2.3.4 key s3cret",
            "  pre-shared-key address 1.2.3.4 key <removed>",
        ),
        ("  key-string 7 070C285F4D06", "  key-string 7 <removed>"),
        ("  key-string password 0822", "  key-string password <removed>"),
        (
            " standby 1 authentication md5 key-string 7 abcd",
            " standby 1 authentication md5 key-string 7 <removed>",
        ),
        (" ip ospf authentication-key 7 1234", " ip ospf authentication-key 7 <removed>"),
        (
            " ip ospf message-digest-key 1 md5 7 abcd",
            " ip ospf message-digest-key 1 md5 7 <removed>",
        ),
        ("ntp authentication-key 1 md5 104D000A0618 7", "ntp authentication-key 1 md5 <removed> 7"),
        ("ntp authentication-key 1 md5 7 xyz", "ntp authentication-key 1 md5 7 <removed>"),
        (" neighbor 10.0.0.1 password 7 abcd", " neighbor 10.0.0.1 password 7 <removed>"),
        (" password 7 0822455D0A16", " password 7 <removed>"),
        (" secret 10 $6$abc", " secret 10 <removed>"),
    ),
)
def test_cli_secrets_are_removed_keeping_keyword_and_type(line: str, expected: str) -> None:
    assert body(f"hostname r1\n{line}\n") == ["hostname r1", expected]


def test_key_inside_a_tacacs_block_is_removed_but_a_key_chain_id_is_not() -> None:
    text = (
        "tacacs server T1\n"
        " address ipv4 10.1.1.1\n"
        " key 7 070C285F4D06\n"
        "key chain K\n"
        " key 1\n"
        "  key-string 7 070C\n"
    )
    assert body(text) == [
        "tacacs server T1",
        " address ipv4 10.1.1.1",
        " key 7 <removed>",
        "key chain K",
        " key 1",
        "  key-string 7 <removed>",
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    (
        (
            '        encrypted-password "$6$abc"; ## SECRET-DATA',
            '        encrypted-password "<removed>"; ## SECRET-DATA',
        ),
        (
            '        10.0.0.1 secret "$9$abc"; ## SECRET-DATA',
            '        10.0.0.1 secret "<removed>"; ## SECRET-DATA',
        ),
        (
            '        authentication-key 1 type md5 value "$9$xyz"; ## SECRET-DATA',
            '        authentication-key 1 type md5 value "<removed>"; ## SECRET-DATA',
        ),
        (
            '        pre-shared-key ascii-text "$9$xyz"; ## SECRET-DATA',
            '        pre-shared-key ascii-text "<removed>"; ## SECRET-DATA',
        ),
        (
            'set system login user a authentication encrypted-password "$6$q"',
            'set system login user a authentication encrypted-password "<removed>"',
        ),
        (
            'set system tacplus-server 1.1.1.1 secret "$9$abc"',
            'set system tacplus-server 1.1.1.1 secret "<removed>"',
        ),
        (
            "set snmp community public authorization read-only",
            "set snmp community <removed> authorization read-only",
        ),
        (
            'set protocols ospf area 0 interface ge-0/0/0 authentication md5 1 key "$9$k"',
            'set protocols ospf area 0 interface ge-0/0/0 authentication md5 1 key "<removed>"',
        ),
    ),
)
def test_junos_secrets_are_removed(line: str, expected: str) -> None:
    assert body(f"version 20.4R1;\n{line}\n", "juniper_junos") == ["version 20.4R1;", expected]


def test_junos_snmp_community_is_removed_but_a_bgp_community_is_not() -> None:
    text = (
        "snmp {\n"
        "    community public {\n"
        "        authorization read-only;\n"
        "    }\n"
        "}\n"
        "policy-options {\n"
        "    community MYCOMM members 65000:100;\n"
        "}\n"
    )
    lines = body(text, "juniper_junos")
    assert lines[1] == "    community <removed> {"
    assert lines[6] == "    community MYCOMM members 65000:100;"


NORMAL_LINES = (
    "hostname r1",
    "service password-encryption",
    "password encryption aes",
    "no service password-recovery",
    "security passwords min-length 8",
    "username operator nopassword",
    "snmp-server host 10.0.0.2 use-vrf management",
    "snmp-server host 10.0.0.3 version 3 priv monitor",
    "snmp-server location lab",
    "tacacs-server directed-request",
    "radius-server dead-criteria time 5 tries 3",
    "aaa authentication login default group tacacs+ local",
    "key chain K",
    " key 1",
    " ip address 10.0.0.1 255.255.255.0",
    " description secret lab link",
    " neighbor 10.0.0.1 remote-as 65001",
    "route-map RM permit 10",
    " set community 65000:100",
    "ip ssh pubkey-chain",
    "crypto key generate rsa modulus 2048",
    "end",
)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_normal_lines_are_untouched(platform: str) -> None:
    text = "\n".join(NORMAL_LINES) + "\n"
    assert normalize_config(platform, text) == text


def test_redaction_can_be_turned_off() -> None:
    text = "enable secret 9 $9$abc\nsnmp-server community public RO\n"
    assert normalize_config("cisco_ios", text, redact_secrets=False) == text


SAMPLES = {
    "cisco_ios": (
        "Building configuration...\r\n\r\nCurrent configuration : 99 bytes\r\n!\r\n"
        "! Last configuration change at 10:00:00 UTC Mon Jan 1 2024 by admin\r\n"
        "hostname r1  \r\nenable secret 9 $9$x\r\nusername a password 7 0822\r\n"
        "snmp-server community public RO\r\nntp authentication-key 1 md5 104D 7\r\n"
        "line vty 0 4\r\n password 7 0822\r\nend\r\n\r\n"
    ),
    "juniper_junos": (
        "## Last commit: 2024-01-01 10:00:00 UTC by admin\nsystem {\n"
        '    root-authentication {\n        encrypted-password "$6$x"; ## SECRET-DATA\n'
        "    }\n}\nsnmp {\n    community public {\n        authorization read-only;\n"
        "    }\n}\n"
    ),
    "cisco_nxos": (
        "!Command: show running-config\n!Time: Mon Jan  1 10:00:00 2024\n"
        "username admin password 5 $5$abc  role network-admin\n"
        'tacacs-server host 10.1.1.1 key 7 "abc"\n'
    ),
    "cisco_xr": (
        "Mon Jan  1 10:00:00.123 UTC\nBuilding configuration...\n"
        "!! IOS XR Configuration 7.3.2\nusername admin\n secret 10 $6$abc\n!\n"
    ),
    "arista_eos": (
        "! Command: show running-config\n"
        "username admin privilege 15 role network-admin secret sha512 $6$abc\n"
        "enable password sha512 $6$def\n"
    ),
}


@pytest.mark.parametrize("platform", sorted(SAMPLES))
@pytest.mark.parametrize("redact", (True, False))
def test_normalising_twice_changes_nothing(platform: str, redact: bool) -> None:
    once = normalize_config(platform, SAMPLES[platform], redact_secrets=redact)
    assert normalize_config(platform, once, redact_secrets=redact) == once
    assert once.endswith("\n") and not once.endswith("\n\n")
    if redact:
        assert "$" not in once and "public" not in once
