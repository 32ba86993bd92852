"""The compliance engine: rules as config text, checked with hier_config (no database)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hier_config import Platform, get_hconfig
from hier_config.exceptions import DuplicateChildError

from app import compliance
from app.compliance import reader as reading
from app.compliance.engine import MAX_LINE_LENGTH, MAX_LINES, MAX_NAME

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "compliance"
IOS = (FIXTURES / "ios.cfg").read_text()
EOS = (FIXTURES / "eos.cfg").read_text()
JUNOS = (FIXTURES / "junos.cfg").read_text()
JUNOS_SET = (FIXTURES / "junos_set.cfg").read_text()


def rule(required: str = "", forbidden: str = "", **fields) -> compliance.CompiledRule:
    return compliance.compile_rule(
        compliance.RuleSpec(
            name=fields.pop("name", "test rule"),
            required=textwrap.dedent(required).strip("\n"),
            forbidden=textwrap.dedent(forbidden).strip("\n"),
            **fields,
        )
    )


def check(compiled: compliance.CompiledRule, text: str, platform: str = "cisco_ios"):
    return compliance.check(compiled, compliance.parse_config(text, platform))


# --- required -------------------------------------------------------------------------


def test_required_block_under_a_regex_parent_is_checked_under_every_match():
    portfast = rule(
        r"""
        re:interface GigabitEthernet\S+
         spanning-tree portfast
        """
    )
    finding = check(portfast, IOS)

    # Gi0/1 and Gi0/2 have it; the uplink and the printer port do not
    assert finding.compliant is False
    assert finding.error is None
    assert finding.missing == [
        "interface GigabitEthernet0/0\n spanning-tree portfast",
        "interface GigabitEthernet0/3\n spanning-tree portfast",
    ]
    assert finding.unexpected == []
    assert finding.remediation == (
        "interface GigabitEthernet0/0\n"
        " spanning-tree portfast\n"
        "interface GigabitEthernet0/3\n"
        " spanning-tree portfast"
    )


def test_required_block_under_a_regex_parent_compliant():
    access = rule(
        r"""
        re:interface GigabitEthernet0/[12]
         switchport mode access
         spanning-tree portfast
        """
    )
    finding = check(access, IOS)

    assert finding == compliance.Finding(True, [], [], "", None)


def test_regex_parent_matching_nothing_is_compliant():
    finding = check(rule("re:interface TenGigabitEthernet.*\n spanning-tree portfast"), IOS)

    assert finding.compliant is True
    assert finding.missing == []


def test_literal_parent_missing_entirely_is_one_block_and_remediation_adds_it_all():
    vty = rule(
        r"""
        line vty 16 31
         transport input ssh
         exec-timeout 5 0
         re:access-class \S+ in
        """
    )
    finding = check(vty, IOS)

    assert finding.missing == [
        "line vty 16 31\n transport input ssh\n exec-timeout 5 0\n re:access-class \\S+ in"
    ]
    # the pattern is reported, never turned into a command
    assert finding.remediation == "line vty 16 31\n transport input ssh\n exec-timeout 5 0"


def test_literal_parent_present_reports_only_its_missing_children():
    vty = rule("line vty 0 4\n transport input ssh\n access-class MGMT in\n exec-timeout 5 0")
    finding = check(vty, IOS)

    assert finding.missing == [
        "line vty 0 4\n transport input ssh",
        "line vty 0 4\n exec-timeout 5 0",
    ]
    assert finding.remediation == "line vty 0 4\n transport input ssh\n exec-timeout 5 0"


def test_required_top_level_lines():
    finding = check(
        rule("ip ssh version 2\nservice password-encryption\nip domain name lab.local"), IOS
    )

    assert finding.missing == ["service password-encryption"]
    assert finding.remediation == "service password-encryption"


def test_whitespace_and_comment_lines_of_a_rule_are_read_like_the_config():
    # pasted from a config: "!" separators, extra spaces; hier_config ignores both
    pasted = rule(
        "!\nip   ssh version  2\n!\ninterface Loopback0\n description   Routing Loopback\n!"
    )

    assert check(pasted, IOS).compliant is True


def test_required_regex_leaf_missing_is_reported_but_never_remediated():
    ntp = rule(r"re:ntp server 10\.0\.0\.[23]")
    finding = check(ntp, IOS)

    assert finding.compliant is False
    assert finding.missing == [r"re:ntp server 10\.0\.0\.[23]"]
    assert finding.remediation == ""

    assert check(rule(r"re:ntp server 10\.0\.0\.[12]"), IOS).compliant is True


def test_required_regex_leaf_under_a_regex_parent():
    helper = rule(r"re:interface Vlan\d+" + "\n" + r" re:ip helper-address 10\.0\.0\.\d+")
    assert check(helper, IOS).compliant is True

    finding = check(rule("re:interface Loopback.*\n re:ip helper-address .*"), IOS)
    assert finding.missing == ["interface Loopback0\n re:ip helper-address .*"]
    assert finding.remediation == ""


def test_nested_sections_and_their_remediation():
    bgp = rule(
        """
        router bgp 100
         address-family ipv4
          neighbor 10.0.0.4 activate
          neighbor 10.0.0.9 activate
        """
    )
    finding = check(bgp, IOS)

    assert finding.missing == ["router bgp 100\n address-family ipv4\n  neighbor 10.0.0.9 activate"]
    assert finding.remediation == (
        "router bgp 100\n address-family ipv4\n  neighbor 10.0.0.9 activate"
    )


def test_ios_access_list_entries_are_numbered_by_hier_config():
    numbered = rule(r"ip access-list standard MGMT" + "\n" + r" re:\d+ permit 10\.0\.0\.0 \S+")
    assert check(numbered, IOS).compliant is True

    as_printed = rule("ip access-list standard MGMT\n permit 10.0.0.0 0.0.0.255")
    assert check(as_printed, IOS).missing == [
        "ip access-list standard MGMT\n permit 10.0.0.0 0.0.0.255"
    ]
    assert check(rule("ip access-list standard MGMT\n 10 permit 10.0.0.0 0.0.0.255"), IOS).compliant


def test_banner_is_one_line_to_rules():
    banner = rule(
        """
        banner motd ^C
        Authorized access only.
          Disconnect now if you are not authorised.
        ^C
        """
    )
    assert check(banner, IOS).compliant is True
    assert check(rule(r"re:(?s)banner motd .*Authorized access only.*"), IOS).compliant is True
    assert check(rule("re:banner login .*"), IOS).missing == ["re:banner login .*"]


# --- forbidden ------------------------------------------------------------------------


def test_forbidden_top_level_line_gives_its_no_command():
    finding = check(rule(forbidden="ip http server\nip source-route"), IOS)

    assert finding.compliant is False
    assert finding.missing == []
    assert finding.unexpected == ["ip http server"]
    assert finding.remediation == "no ip http server"


def test_forbidden_top_level_line_is_looked_for_at_the_top_level_only():
    # GigabitEthernet0/3 is shut down, but no global "shutdown" exists
    assert check(rule(forbidden="shutdown"), IOS).compliant is True

    finding = check(rule(forbidden="re:interface .*\n shutdown"), IOS)
    assert finding.unexpected == ["interface GigabitEthernet0/3\n shutdown"]
    assert finding.remediation == "interface GigabitEthernet0/3\n no shutdown"


def test_forbidden_line_under_a_regex_parent():
    telnet = rule(forbidden="re:line vty .*\n transport input telnet ssh")
    finding = check(telnet, IOS)

    assert finding.unexpected == ["line vty 0 4\n transport input telnet ssh"]
    assert finding.remediation == "line vty 0 4\n no transport input telnet ssh"


def test_forbidden_regex_lines_and_a_forbidden_section():
    finding = check(
        rule(
            forbidden=r"""
            re:snmp-server community \S+ RW
            re:logging host 4\..*
            interface Vlan10
            """
        ),
        IOS,
    )

    assert finding.unexpected == [
        "snmp-server community <removed> RW",
        "logging host 4.4.4.4",
        "interface Vlan10",
    ]
    assert finding.remediation == (
        "no snmp-server community <removed> RW\nno logging host 4.4.4.4\nno interface Vlan10"
    )


def test_a_line_matched_twice_is_reported_once():
    finding = check(rule(forbidden="ip http server\nre:ip http .*server"), IOS)

    assert finding.unexpected == ["ip http server"]
    assert finding.remediation == "no ip http server"


def test_required_and_forbidden_together():
    vty = rule(
        required="re:line vty .*\n transport input ssh",
        forbidden=r"re:line vty .*" + "\n" + r" re:transport input .*telnet.*",
    )
    finding = check(vty, IOS)

    assert finding.missing == ["line vty 0 4\n transport input ssh"]
    assert finding.unexpected == ["line vty 0 4\n transport input telnet ssh"]
    assert finding.remediation == (
        "line vty 0 4\n no transport input telnet ssh\n transport input ssh"
    )


# --- other platforms ------------------------------------------------------------------


def test_arista_eos_remediation_is_indented_as_eos_prints_it():
    eos_rule = rule(
        required=r"re:interface Loopback\d+" + "\n" + "   description managed\nntp server 10.0.0.1",
        forbidden="re:interface Ethernet\\d+\n   mtu 9200\nno logging console",
    )
    finding = check(eos_rule, EOS, "arista_eos")

    assert finding.missing == [
        "interface Loopback1\n   description managed",
        "interface Loopback2\n   description managed",
        "interface Loopback3\n   description managed",
        "ntp server 10.0.0.1",
    ]
    assert finding.unexpected == ["interface Ethernet1\n   mtu 9200", "no logging console"]
    # sections in the order the rule meets them, negations of top-level lines first
    assert finding.remediation == (
        "logging console\n"
        "interface Loopback1\n"
        "   description managed\n"
        "interface Loopback2\n"
        "   description managed\n"
        "interface Loopback3\n"
        "   description managed\n"
        "interface Ethernet1\n"
        "   no mtu 9200\n"
        "ntp server 10.0.0.1"
    )


@pytest.mark.parametrize("config", [JUNOS, JUNOS_SET], ids=["braces", "set"])
def test_juniper_junos_remediation_is_set_and_delete(config):
    junos = rule(
        required=r"""
        set system ntp server 10.0.0.1
        re:set system ntp server 10\.0\.0\.\d+
        """,
        forbidden=r"""
        set system services telnet
        re:set snmp community \S+ authorization read-write
        """,
    )
    finding = check(junos, config, "juniper_junos")

    assert finding.missing == ["set system ntp server 10.0.0.1"]
    assert finding.unexpected == [
        "set system services telnet",
        'set snmp community "<removed>" authorization read-write',
    ]
    assert finding.remediation == (
        "delete system services telnet\n"
        'delete snmp community "<removed>" authorization read-write\n'
        "set system ntp server 10.0.0.1"
    )


@pytest.mark.parametrize("config", [JUNOS, JUNOS_SET], ids=["braces", "set"])
def test_junos_rule_in_braces_is_read_as_set_lines(config):
    braces = rule(
        required="""
        system {
          ntp {
            server 10.0.0.1;
          }
          services {
            ssh {
              root-login deny;
            }
          }
        }
        """,
        forbidden="""
        system {
            services {
                telnet;
            }
        }
        """,
        platforms=("juniper_junos",),
    )
    assert compliance.rule_text_for(braces, "juniper_junos") == (
        "set system ntp server 10.0.0.1\nset system services ssh root-login deny"
    )
    assert compliance.rule_text_for(braces, "juniper", "forbidden") == "set system services telnet"

    finding = check(braces, config, "juniper_junos")
    assert finding.missing == ["set system ntp server 10.0.0.1"]
    assert finding.unexpected == ["set system services telnet"]
    assert finding.remediation == "delete system services telnet\nset system ntp server 10.0.0.1"


def test_junos_regex_inside_braces_keeps_the_path_literal():
    interfaces = rule(
        r"""
        interfaces {
            re:ge-\d+/\d+/\d+ {
                unit 0 {
                    re:family inet address 10\.1\.\d+\.\d+/30;
                }
            }
        }
        re:set system syslog host \S+ any notice
        """,
        platforms=("juniper_junos",),
    )
    assert compliance.rule_text_for(interfaces, "juniper_junos") == (
        r"re:set interfaces ge-\d+/\d+/\d+ unit 0 family inet address 10\.1\.\d+\.\d+/30"
        "\n"
        r"re:set system syslog host \S+ any notice"
    )
    assert check(interfaces, JUNOS, "juniper_junos").compliant is True

    lo = rule("interfaces {\n    lo0 {\n        re:description .*;\n    }\n}")
    finding = check(lo, JUNOS_SET, "juniper_junos")
    assert finding.missing == ["re:set interfaces lo0 description .*"]
    assert finding.remediation == ""


def test_huawei_vrp_global_lines_after_an_interface_stay_global():
    vrp = textwrap.dedent(
        """\
        #
         sysname edge-h1
        #
        interface GigabitEthernet0/0/1
         description uplink
         undo shutdown
        #
         snmp-agent
         snmp-agent sys-info version v2c
        #
        ospf 1
         area 0.0.0.0
          network 10.0.0.0 0.0.0.255
        #
        return
        """
    )
    required = rule("sysname edge-h1\nsnmp-agent sys-info version v2c\nospf 1\n area 0.0.0.0")
    assert check(required, vrp, "huawei_vrp").compliant is True

    finding = check(rule(forbidden="snmp-agent"), vrp, "huawei")
    assert finding.unexpected == ["snmp-agent"]
    assert finding.remediation == "undo snmp-agent"


def test_hp_comware_config_with_hash_separators_is_read():
    comware = (
        "#\n version 7.1.064\n#\n sysname sw1\n#\nvlan 10\n#\n"
        "interface Vlan-interface10\n ip address 10.0.0.1 255.255.255.0\n#\nreturn\n"
    )
    finding = check(
        rule("sysname sw1\ninterface Vlan-interface10\n shutdown"), comware, "hp_comware"
    )

    assert finding.error is None
    assert finding.missing == ["interface Vlan-interface10\n shutdown"]
    assert finding.remediation == "interface Vlan-interface10\n shutdown"


def test_unknown_platform_is_read_generically():
    asa = "hostname fw1\n!\ninterface Management0/0\n nameif management\n!\nhttp server enable\n!\n"
    config = compliance.parse_config(asa, "cisco_asa")

    assert config.hier_platform is Platform.GENERIC
    finding = compliance.check(rule(forbidden="http server enable"), config)
    assert finding.unexpected == ["http server enable"]
    assert finding.remediation == "no http server enable"


def test_platform_mapping():
    assert compliance.hier_platform("cisco_ios") is Platform.CISCO_IOS
    assert compliance.hier_platform("cisco_xe") is Platform.CISCO_IOS
    assert compliance.hier_platform("cisco_ios_ssh") is Platform.CISCO_IOS
    assert compliance.hier_platform("juniper") is Platform.JUNIPER_JUNOS
    assert compliance.hier_platform("cisco_nxos") is Platform.CISCO_NXOS
    assert compliance.hier_platform("cisco_xr") is Platform.CISCO_XR
    assert compliance.hier_platform("arista_eos") is Platform.ARISTA_EOS
    assert compliance.hier_platform("huawei_vrp") is Platform.HUAWEI_VRP
    assert compliance.hier_platform("hp_procurve") is Platform.HP_PROCURVE
    assert compliance.hier_platform("fortinet") is Platform.FORTINET_FORTIOS
    assert compliance.hier_platform("vyos") is Platform.VYOS
    assert compliance.hier_platform("linux") is Platform.GENERIC
    assert compliance.hier_platform("") is Platform.GENERIC


# --- scope ----------------------------------------------------------------------------


def test_scope_by_platform_and_tags():
    anywhere = rule("ntp server 10.0.0.1")
    assert compliance.in_scope(anywhere, "cisco_ios", [])
    assert compliance.in_scope(anywhere, "linux", ["lab"])

    ios_core = rule("ntp server 10.0.0.1", platforms=("cisco_ios", "cisco_xe"), tags=("core", "dc"))
    assert ios_core.platforms == ("cisco_ios", "cisco_xe")
    assert compliance.in_scope(ios_core, "cisco_ios", ["edge", "core"])
    assert compliance.in_scope(ios_core, "cisco_xe_ssh", ["dc"])
    assert not compliance.in_scope(ios_core, "cisco_ios", ["edge"])
    assert not compliance.in_scope(ios_core, "cisco_ios", [])
    assert not compliance.in_scope(ios_core, "arista_eos", ["core"])

    junos = rule("set system ntp server 10.0.0.1", platforms=("juniper",))
    assert junos.platforms == ("juniper_junos",)
    assert compliance.in_scope(junos, "juniper_junos", [])


# --- rule errors ----------------------------------------------------------------------


def refused(**fields) -> compliance.RuleError:
    spec = compliance.RuleSpec(**{"name": "r", **fields})
    with pytest.raises(compliance.RuleError) as caught:
        compliance.compile_rule(spec)
    return caught.value


@pytest.mark.parametrize(
    ("fields", "field", "line", "message"),
    [
        (
            {"forbidden": "ip http server\nline vty 0 4\n re:transport (input"},
            "forbidden",
            3,
            "forbidden, line 3: not a regular expression: "
            "missing ), unterminated subpattern at position 10.",
        ),
        (
            {"required": "ntp server 1.1.1.1\nre:  "},
            "required",
            2,
            "required, line 2: re: is not followed by a regular expression.",
        ),
        (
            {},
            "required",
            None,
            "required: required and forbidden are both empty: give at least one line.",
        ),
        (
            {"required": "  \n\n", "forbidden": " "},
            "required",
            None,
            "required: required and forbidden are both empty: give at least one line.",
        ),
        (
            {"required": "hostname a\nbanner motd x\x00y"},
            "required",
            2,
            "required, line 2: contains a NUL character.",
        ),
        (
            {"forbidden": "hostname a\x0bb"},
            "forbidden",
            1,
            "forbidden, line 1: contains a control character (U+000B).",
        ),
        (
            {"required": "interface Gi0/1\n\tshutdown"},
            "required",
            2,
            "required, line 2: indented with a tab: indent with spaces, as the device does.",
        ),
        (
            {"required": " spanning-tree portfast"},
            "required",
            1,
            "required, line 1: indented, but no line above it is its parent.",
        ),
        (
            {"required": "interface Gi0/1\n   description x\n  shutdown"},
            "required",
            3,
            "required, line 3: indented by 2 spaces, like no line above it: indent a line "
            "more than its parent, and as much as its siblings.",
        ),
        (
            {"required": "\n".join(f"ntp server 10.0.0.{i}" for i in range(MAX_LINES + 1))},
            "required",
            None,
            f"required: {MAX_LINES + 1} lines; a rule holds at most {MAX_LINES}.",
        ),
        (
            {"forbidden": "ok\n" + "x" * (MAX_LINE_LENGTH + 1)},
            "forbidden",
            2,
            f"forbidden, line 2: {MAX_LINE_LENGTH + 1} characters long; "
            f"a line holds at most {MAX_LINE_LENGTH}.",
        ),
        (
            {
                "required": "system {\n    ntp {\n        server 10.0.0.1;\n    }\n",
                "platforms": ("juniper_junos",),
            },
            "required",
            1,
            "required, line 1: { opens a block that no } closes.",
        ),
        (
            {"required": "set system ntp server 10.0.0.1\n}", "platforms": ("juniper_junos",)},
            "required",
            2,
            "required, line 2: } closes a block that no { opened.",
        ),
        (
            {"required": "ntp server 10.0.0.1", "name": " "},
            "name",
            None,
            "name: a rule needs a name.",
        ),
        (
            {"required": "ntp server 10.0.0.1", "name": "n" * (MAX_NAME + 1)},
            "name",
            None,
            f"name: at most {MAX_NAME} characters.",
        ),
        (
            {"required": "ntp server 10.0.0.1", "name": "two\nlines"},
            "name",
            None,
            "name: one line of text, without control characters.",
        ),
        (
            {"required": "ntp server 10.0.0.1", "platforms": "cisco_ios"},
            "platforms",
            None,
            "platforms: must be a list of names.",
        ),
        (
            {"required": "ntp server 10.0.0.1", "tags": ("core", "")},
            "tags",
            None,
            "tags: '' is not a name.",
        ),
        (
            {"required": None},
            "required",
            None,
            "required: must be text.",
        ),
    ],
)
def test_rule_errors(fields, field, line, message):
    error = refused(**fields)

    assert str(error) == message
    assert error.field == field
    assert error.line == line
    assert isinstance(error, ValueError)


def test_a_rule_for_every_platform_is_checked_in_both_syntaxes_when_compiled():
    # braces left open are an error for Junos even when the rule names no platform
    error = refused(required="system {\n    host-name r1;\n")
    assert str(error) == "required, line 1: { opens a block that no } closes."

    # an IOS-only rule is not read as Junos: its indentation is all that is checked
    assert rule("interface Gi0/1\n shutdown\n}", platforms=("cisco_ios",)).name == "test rule"


def test_a_rule_that_cannot_be_read_for_a_platform_gives_an_error_finding():
    ios_only = rule("set system ntp server 10.0.0.1\n}", platforms=("cisco_ios",))
    finding = check(ios_only, JUNOS, "juniper_junos")

    assert finding.compliant is False
    assert finding.error == (
        "The rule cannot be read here: required, line 2: } closes a block that no { opened."
    )


# --- reading configs ------------------------------------------------------------------


ODD_TEXTS = [
    "",
    "\n\n\n",
    "banner motd ^C\nnever ends",
    "interface Gi1\n description a\ninterface Gi1\n shutdown\n description a\n description a",
    "   indented first\n  then less\n more\nhostname x",
    "hostname \x00nul\x01\n\tinterface\ttab\n \x0bvertical",
    "}}}\n{{{\n;;;",
    "é\u2028ü\u2029x\x85y",
    "!\n!\n!\n#\n#",
    "x" * 100_000,
]


@pytest.mark.parametrize("text", ODD_TEXTS)
@pytest.mark.parametrize(
    "platform", ["cisco_ios", "juniper_junos", "cisco_xr", "hp_comware", "linux", "", "???"]
)
def test_parse_config_and_check_never_raise_on_odd_text(text, platform):
    config = compliance.parse_config(text, platform)
    for compiled in (
        rule("hostname x\nre:interface .*\n description a", forbidden="re:.*"),
        rule("set system host-name x", forbidden="re:set .*\nshutdown"),
    ):
        finding = compliance.check(compiled, config)
        assert finding.error is None
        assert isinstance(finding.compliant, bool)


def test_repeated_sections_are_merged():
    text = "interface Gi1\n description a\n!\ninterface Gi1\n shutdown\n description a\n"
    finding = check(rule("interface Gi1\n description a\n shutdown"), text)

    assert finding.compliant is True


def dump(root) -> list[tuple[int, str]]:
    return [(child.depth(), child.text) for child in root.all_children()]


@pytest.mark.parametrize(
    ("text", "platform"),
    [
        (IOS, Platform.CISCO_IOS),
        (EOS, Platform.ARISTA_EOS),
        (JUNOS, Platform.JUNIPER_JUNOS),
        (JUNOS_SET, Platform.JUNIPER_JUNOS),
        # the second banner ends at the first's delimiter too: hier_config keeps them all
        (
            "banner login ^C\nhi\n^C\nbanner motd #\nnot ^C the end\n#\n x\nhostname a\n",
            Platform.CISCO_IOS,
        ),
        (
            "banner exec EOF\nline\nEOF\ninterface Gi1\n  description a\n   shutdown\n",
            Platform.CISCO_IOS,
        ),
    ],
)
def test_reading_builds_the_tree_get_hconfig_builds(text, platform):
    reader = reading.reader(platform)
    records = reader.read(text)
    built = reader.build(records, reading.nest([r[0] for r in records]), [range(len(records))])

    assert dump(built) == dump(get_hconfig(platform, text))


# --- the lazy reading against the whole reading ---------------------------------------

XR = """\
Building configuration...
!! IOS XR Configuration 7.3.2
!
hostname xr1
! the loopback
interface Loopback0
 ipv4 address 10.0.0.1 255.255.255.255
!
interface GigabitEthernet0/0/0/0
 description uplink
 ipv4 address 10.1.1.1 255.255.255.252
 speed 1000
!
route-policy PASS
  pass
end-policy
!
router bgp 65000
 bgp router-id 10.0.0.1
 template peer-session IBGP
  remote-as 65000
 end-template
 neighbor 10.0.0.2
  use session-group IBGP
 !
!
ssh server v2
end
"""

NXOS = """\
!Command: show running-config
version 9.3(8) Bios:version
hostname nx1
feature ospf
feature interface-vlan
vlan 1,10,20
vlan 10
  name users
interface Vlan10
  no shutdown
  ip address 10.10.0.1/24
interface Ethernet1/1
  description uplink ! to core
  switchport mode trunk
line vty
  exec-timeout 10
"""

IOS_ODD = """\
!
hostname odd
!
interface GigabitEthernet0/1
 description first
!
 orphan line after a comment
interface GigabitEthernet0/1
 shutdown
banner login ^C
line ! with a bang
^C
banner motd #
still the motd ^C now ended
#
  indented line after banners
vlan 10,20
vlan 10
 name users
ip access-list extended EDGE
 remark first
 permit tcp any any eq 22
 deny   ip any any
ip access-list extended EDGE
 permit udp any any eq 123
"""

VRP = """\
!Software Version V200R010C00
#
 sysname h1
#
vlan batch 10 20
#
interface GigabitEthernet0/0/1
 port link-type trunk
 undo shutdown
#
 snmp-agent
 snmp-agent community read <removed>
#
rsa peer-public-key k1
 public-key-code begin
 3082
 public-key-code end
peer-public-key end
#
return
"""

GENERIC = "hostname fw\n!\ninterface e0\n nameif outside\n !\n!\nhttp server enable\n!\n"

EQUIVALENCE_CASES = [
    (IOS, "cisco_ios"),
    (IOS_ODD, "cisco_ios"),
    (IOS_ODD.replace("vlan 10,20\n", ""), "cisco_xe"),
    (EOS, "arista_eos"),
    (NXOS, "cisco_nxos"),
    (XR, "cisco_xr"),
    (JUNOS, "juniper_junos"),
    (JUNOS_SET, "juniper_junos"),
    (VRP, "huawei_vrp"),
    (GENERIC, "cisco_asa"),
]

EQUIVALENCE_RULES = [
    rule(
        r"""
        hostname edge-r1
        re:interface \S+
         description uplink
         re:ip(v4)? address .*
        re:vlan \d+
         name users
        ip access-list extended EDGE
         re:\d+ permit tcp any any eq 22
        re:(?s)banner (motd|login) .*
        """,
        forbidden=r"""
        re:interface .*
         shutdown
         re:.*speed.*
        re:snmp-agent.*
        re:.* ! .*
        re:line .*
         re:exec-timeout .*
        orphan line after a comment
        re:! .*
        """,
    ),
    rule(
        r"""
        re:set interfaces \S+ description .*
        set system services ssh root-login deny
        re:route-policy .*
         pass
        router bgp 65000
         re:template .*
          remote-as 65000
        """,
        forbidden=r"""
        re:set system services (telnet|ftp)
        re:set snmp community .*
        re:peer-public-key .*
        re:rsa peer-public-key .*
         public-key-code begin
        re:vlan.*
        http server enable
        """,
    ),
]


@pytest.mark.parametrize(("text", "platform"), EQUIVALENCE_CASES)
def test_lazy_reading_gives_the_results_of_the_whole_reading(text, platform):
    for compiled in EQUIVALENCE_RULES:
        lazy = compliance.parse_config(text, platform)
        whole = compliance.parse_config(text, platform, lazy=False)
        # check twice on the same config: the sections built for the first stay right
        for _ in range(2):
            assert compliance.check(compiled, lazy) == compliance.check(compiled, whole)


def test_lazy_reading_builds_only_the_sections_a_rule_names():
    config = compliance.parse_config(IOS, "cisco_ios")
    compliance.check(rule("ntp server 10.0.0.1\nre:interface Loopback.*\n description x"), config)

    built = {text for text, node in config._nodes.items() if node is not None}
    assert built == {"ntp server 10.0.0.1", "interface Loopback0"}


def test_a_vlan_list_makes_ios_read_the_whole_config():
    # "vlan 10,20" is split by hier_config into "vlan 10" and "vlan 20", merged with the
    # "vlan 10" section: only a whole reading gets that right
    config = compliance.parse_config("vlan 10,20\nvlan 10\n name users\n", "cisco_ios")
    finding = compliance.check(rule("vlan 20\nvlan 10\n name users"), config)

    assert finding.compliant is True
    assert config._whole is not None


def random_config(rnd, platform: Platform) -> str:
    """A config made of realistic lines in an odd order, with odd indentation, comment
    lines, blank lines, repeated sections and banners."""
    source = [line for line in (IOS + EOS + XR + NXOS + VRP).splitlines() if line.strip()]
    if platform is Platform.JUNIPER_JUNOS:
        source = JUNOS.splitlines() + JUNOS_SET.splitlines()
    lines = []
    for _ in range(rnd.randint(0, 60)):
        kind = rnd.random()
        if kind < 0.05:
            lines += ["banner motd ^C", rnd.choice(source), "^C"]
        elif kind < 0.15:
            lines.append(rnd.choice(["!", " !", "#", "", "   ", "! comment"]))
        else:
            line = rnd.choice(source)
            indent = rnd.choice([0, 0, 0, 1, 1, 2, 3]) if rnd.random() < 0.3 else None
            lines.append(line if indent is None else " " * indent + line.lstrip())
    return "\n".join(lines)


@pytest.mark.parametrize(
    "platform",
    ["cisco_ios", "arista_eos", "cisco_nxos", "cisco_xr", "juniper_junos", "huawei_vrp", "linux"],
)
def test_lazy_and_whole_readings_agree_on_random_configs(platform):
    import random

    rnd = random.Random(f"compliance-{platform}")
    hier = compliance.hier_platform(platform)
    rules = [
        *EQUIVALENCE_RULES,
        rule(forbidden="re:.*"),
        rule(forbidden="re:.*\n re:.*"),
        rule("re:.*\n re:.*\n  shutdown", forbidden="re:[a-m].*\n re:.*\n  re:.*"),
    ]
    lazy_used = 0
    for _ in range(60):
        text = random_config(rnd, hier)
        lazy = compliance.parse_config(text, platform)
        whole = compliance.parse_config(text, platform, lazy=False)
        for compiled in rules:
            assert compliance.check(compiled, lazy) == compliance.check(compiled, whole), text
        lazy_used += lazy._whole is None
        try:
            expected = get_hconfig(hier, text)
        except (ValueError, DuplicateChildError):  # hier_config gives up on those
            continue
        reader = reading.reader(hier)
        if hier in (Platform.HUAWEI_VRP, Platform.HP_COMWARE5):
            continue  # read differently on purpose (see reader)
        records = reader.read(text)
        built = reader.build(records, reading.nest([r[0] for r in records]), [range(len(records))])
        assert dump(built) == dump(expected), text
    assert lazy_used > 40


def test_compiled_rules_are_shared_by_threads():
    from concurrent.futures import ThreadPoolExecutor

    rules = [*EQUIVALENCE_RULES, rule("re:interface .*\n description x")]  # read lazily too
    cases = [(text, platform) for text, platform in EQUIVALENCE_CASES for _ in range(4)]

    def findings(case):
        config = compliance.parse_config(*case)
        return [compliance.check(compiled, config) for compiled in rules]

    with ThreadPoolExecutor(max_workers=8) as pool:  # first: the lazy readings race
        found = list(pool.map(findings, cases))
    assert found == [findings(case) for case in cases]
