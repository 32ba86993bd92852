"""The read-only command policy of run_commands, and the redaction of its output."""

from __future__ import annotations

import pytest

from app import command_policy, config_store
from app.command_policy import Rule, policy_problem, rule_words


@pytest.mark.parametrize(
    ("command", "platform"),
    [
        ("show version", "cisco_ios"),
        ("sh ip int brief", "cisco_ios"),
        ("sho run | include hostname", "cisco_xe"),
        ("show interfaces | i up, down", "cisco_ios"),
        ("show run | section interface", None),
        ("display current-configuration", "huawei"),
        ("dis version", "huawei"),
        ("disp version", None),
        ("show configuration | display set", "juniper_junos"),
        ("show route | match 10.0 | count", "juniper_junos"),
        ("ping 10.0.0.1", "arista_eos"),
        ("traceroute 10.0.0.1", "cisco_nxos"),
        ("dir flash:", "cisco_ios"),
        ("show version | json", "cisco_nxos"),
    ],
)
def test_read_only_commands_are_allowed(command, platform):
    assert command_policy.policy_problem(command, platform) is None


@pytest.mark.parametrize(
    ("command", "platform", "says"),
    [
        ("configure terminal", "cisco_ios", "'configure' is not a read-only command on cisco_ios"),
        ("conf t", None, "'conf' is not a read-only command"),
        ("s version", "cisco_ios", "'s' is not"),
        ("reload", "cisco_ios", "'reload'"),
        ("display version", "cisco_ios", "'display'"),
        ("dis version", None, "'dis'"),  # "disable" or "disconnect" on some CLIs
        ("show run | redirect tftp://10.0.0.1/x", "cisco_ios", "'| redirect'"),
        ("show run | tee flash:x", "cisco_ios", "'| tee'"),
        ("show configuration | save /tmp/x", "juniper_junos", "'| save'"),
        ("show configuration | s /tmp/x", None, "'| s'"),
        ("show run > bootflash:x", "cisco_nxos", "'>'"),
        ("show version ; configure terminal", "cisco_nxos", "';'"),
        ("show version", "linux", "allowed: none"),
        ("show version\nconfigure terminal", "cisco_ios", "line break"),
        ("show version\rreload", None, "line break"),
        ("show\x15configure terminal", "cisco_ios", "control character (U+0015)"),
        ("show ver\x08\x08\x08\x08\x08\x08\x08\x08reload", "cisco_ios", "control character"),
    ],
)
def test_other_commands_need_an_admin(command, platform, says):
    problem = command_policy.policy_problem(command, platform)
    assert problem is not None and says in problem, problem


def test_control_characters_are_refused_even_when_approved():
    assert command_policy.control_problem("configure terminal") is None
    assert "line break" in command_policy.control_problem("conf t\nusername x secret y")


def test_command_output_is_redacted_like_a_config():
    output = (
        "r1# show running-config\n"
        "hostname r1\n"
        "enable secret 5 $1$abcd$0123456789abcdef\n"
        "username netops privilege 15 secret 9 $9$secrethash\n"
        "snmp-server community s3cr3t-ro RO\n"
        "tacacs-server key 7 0822455D0A16\n"
        "interface Ethernet0/0\n"
    )
    redacted = config_store.redact_secrets(output)
    for secret in ("$1$abcd$0123456789abcdef", "$9$secrethash", "s3cr3t-ro", "0822455D0A16"):
        assert secret not in redacted
    assert "enable secret 5 <removed>" in redacted
    assert "snmp-server community <removed> RO" in redacted
    assert redacted.startswith("r1# show running-config\nhostname r1\n")
    assert redacted.endswith("interface Ethernet0/0\n")


ALLOW_CLEAR = Rule("allow", rule_words("clear counters"))
ALLOW_RELOAD_IOS = Rule("allow", rule_words("reload in"), platform="cisco_ios")
DENY_RUN = Rule("deny", rule_words("show running-config"))
DENY_PING_JUNOS = Rule("deny", rule_words("ping"), platform="juniper_junos")
RULES = (ALLOW_CLEAR, ALLOW_RELOAD_IOS, DENY_RUN, DENY_PING_JUNOS)


@pytest.mark.parametrize(
    ("command", "platform"),
    [
        ("clear counters", "cisco_ios"),
        ("CLEAR Counters Ethernet0/0", "arista_eos"),
        ("reload in 10", "cisco_ios"),
        ("reload in 10", None),  # saved before its devices are known: checked per device later
    ],
)
def test_admins_allow_rules_let_operators_send_more(command, platform):
    assert policy_problem(command, platform, RULES) is None
    assert policy_problem(command, platform) is not None  # the built-in list alone refuses


def test_rules_of_other_platforms_change_nothing():
    assert policy_problem("ping 127.0.0.1", "cisco_ios", RULES) is None  # denied on Junos only
    assert policy_problem("show version", "cisco_ios", RULES) is None


@pytest.mark.parametrize(
    ("command", "platform", "says"),
    [
        ("show running-config", "cisco_ios", "denied by the admins' rule 'show running-config'"),
        ("sh run", "cisco_ios", "denied"),  # every abbreviation of a denied command
        ("sho running-config | include secret", None, "denied"),
        ("ping 127.0.0.1", "juniper_junos", "denied by the admins' rule 'ping' on juniper_junos"),
        ("clear", "cisco_ios", "not a read-only command"),  # allowed words spelled out in full
        ("clear count", "cisco_ios", "not a read-only command"),
        ("reload in 10", "arista_eos", "not a read-only command"),  # allowed on IOS only
        ("clear counters | redirect flash:x", "cisco_ios", "'| redirect' is not a display"),
        ("clear counters; reload", "cisco_ios", "';'"),
        ("clear counters > flash:x", "cisco_ios", "'>'"),
    ],
)
def test_deny_rules_and_the_fixed_limits_hold_whatever_is_allowed(command, platform, says):
    problem = policy_problem(command, platform, RULES)
    assert problem is not None and says in problem, problem


def test_a_deny_rule_is_not_undone_by_an_allow_rule():
    rules = (Rule("allow", rule_words("show running-config")), DENY_RUN)
    assert "denied" in (policy_problem("show running-config", "cisco_ios", rules) or "")
