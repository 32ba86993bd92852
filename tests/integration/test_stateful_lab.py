"""The stateful SSH device emulator (app.stateful_lab) as netmiko drives it.

Every test talks to real asyncssh servers on 127.0.0.1 with netmiko's ``cisco_ios`` driver
and the session options Rookery's netmiko driver uses (fast_cli, timeouts, no agent or
keys): config pushes with ``send_config_set``, saves with ``save_config``, snapshots and
rollbacks with ``send_command``, as a change-set pusher would.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hier_config import Platform, get_hconfig
from netmiko import ConnectHandler, NetmikoAuthenticationException, ReadTimeout
from netmiko.exceptions import ConfigInvalidException

from app import platforms
from app.config_store import normalize_config
from app.drivers import SessionOptions
from app.drivers.netmiko_driver import NetmikoSession
from app.job_api import DeviceTarget, ResolvedCredential
from app.stateful_lab import INCOMPLETE, INVALID, StatefulLab, stateful_fleet

#: Rookery's session options, with a shorter read timeout so a broken test fails fast
OPTIONS = dataclasses.replace(SessionOptions(), read_timeout=20)
#: what a change-set pusher would treat as a refused configuration line
CONFIG_ERROR = r"^% ?(?:Invalid|Incomplete|Ambiguous)"
NAME = "ios-001"
PROMPT = re.escape(f"{NAME}#")


def connect(lab: StatefulLab, name: str = NAME, **overrides: Any) -> Any:
    """A netmiko session opened as ``app.drivers.netmiko_driver`` opens one, in enable mode."""
    params = lab.netmiko_params(
        name,
        conn_timeout=OPTIONS.connect_timeout,
        auth_timeout=OPTIONS.connect_timeout,
        banner_timeout=OPTIONS.connect_timeout,
        read_timeout_override=OPTIONS.read_timeout,
        fast_cli=OPTIONS.fast_cli,
        allow_agent=False,
        use_keys=False,
        ssh_config_file=None,
        system_host_keys=False,
        ssh_strict=False,
        alt_host_keys=False,
    )
    params.update(overrides)
    conn = ConnectHandler(**params)
    conn.enable()
    return conn


def children(text: str, header: str) -> list[str]:
    """The lines of one section of a config, read with hier_config."""
    child = get_hconfig(Platform.CISCO_IOS, text).get_child(equals=header)
    assert child is not None, f"no section {header!r} in:\n{text}"
    return [line.text for line in child.children]


def top_level(text: str) -> list[str]:
    return [line.text for line in get_hconfig(Platform.CISCO_IOS, text).children]


@pytest.fixture(scope="module")
def _lab() -> Iterator[StatefulLab]:
    with StatefulLab(stateful_fleet(3, enable_secrets=True)) as lab:
        yield lab


@pytest.fixture
def lab(_lab: StatefulLab) -> Iterator[StatefulLab]:
    """Three devices with enable secrets, each as it started."""
    yield _lab
    _lab.reset()


@pytest.fixture
def conn(lab: StatefulLab) -> Iterator[Any]:
    session = connect(lab)
    yield session
    session.disconnect()


def test_login_enable_and_show_running_config(lab: StatefulLab, conn: Any) -> None:
    spec = lab.device(NAME)
    assert conn.find_prompt() == f"{NAME}#"
    output = conn.send_command("show running-config")

    assert output == lab.config_of(NAME).rstrip("\n")
    lines = output.splitlines()
    assert lines[0] == "Building configuration..."
    assert re.fullmatch(r"Current configuration : \d+ bytes", lines[2])
    assert lines[-1] == "end"
    assert f"hostname {NAME}" in top_level(output)
    normalized = normalize_config("cisco_ios", output)
    assert normalized.startswith("!\nhostname ios-001\n") and normalized.endswith("!\nend\n")
    # Login and enable secrets are never recorded; enable is, and the prompts it changes.
    history = lab.history(NAME)
    assert [(h.prompt, h.command) for h in history[:4]] == [
        (f"{NAME}>", "terminal width 511"),
        (f"{NAME}>", "terminal length 0"),
        (f"{NAME}>", "enable"),
        (f"{NAME}#", "show running-config"),
    ]
    recorded = "\n".join(lab.commands_of(NAME))
    assert spec.password not in recorded and spec.enable_secret not in recorded


def test_user_mode_and_refused_credentials(lab: StatefulLab) -> None:
    spec = lab.device(NAME)
    user = ConnectHandler(**lab.netmiko_params(NAME))
    try:
        assert user.find_prompt() == f"{NAME}>"
        assert INVALID in user.send_command("show running-config")
        assert "Cisco IOS Software" in user.send_command("show version")
    finally:
        user.disconnect()
    with pytest.raises(NetmikoAuthenticationException):
        ConnectHandler(**lab.netmiko_params(NAME, password="wrong", auth_timeout=5))
    with pytest.raises(ValueError, match="enable mode"):
        connect(lab, secret="not-the-secret")
    assert spec.enable_secret is not None
    assert "not-the-secret" not in lab.commands_of(NAME)


def test_config_lines_change_the_running_config(lab: StatefulLab, conn: Any) -> None:
    before = lab.config_of(NAME)
    output = conn.send_config_set(
        [
            "interface GigabitEthernet0/1",
            " description changed by change set 7",
            " shutdown",
            "snmp-server contact noc@example.net",
            "interface Loopback42",
            " ip address 10.42.0.1 255.255.255.255",
        ],
        error_pattern=CONFIG_ERROR,
    )
    assert f"{NAME}(config-if)#" in output and f"{NAME}(config)#" in output

    shown = conn.send_command("show running-config")
    assert shown == lab.config_of(NAME).rstrip("\n") != before.rstrip("\n")
    uplink = children(shown, "interface GigabitEthernet0/1")
    assert uplink[0] == "description changed by change set 7"  # replaced in place
    assert uplink[1].startswith("ip address 10.") and uplink[2] == "shutdown"
    assert children(shown, "interface Loopback42") == ["ip address 10.42.0.1 255.255.255.255"]
    assert "snmp-server contact noc@example.net" in top_level(shown)
    # New sections join their kind (IOS keeps interfaces together).
    assert [line for line in top_level(shown) if line.startswith("interface")] == [
        "interface GigabitEthernet0/1",
        "interface Loopback0",
        "interface Loopback42",
    ]

    conn.send_config_set(
        [
            "interface gi0/1",  # abbreviated, as people type it
            "no shutdown",
            "no description",
            "no interface Loopback42",
            "no snmp-server contact",
        ],
        error_pattern=CONFIG_ERROR,
    )
    shown = conn.send_command("show running-config")
    assert [line.split()[0] for line in children(shown, "interface GigabitEthernet0/1")] == ["ip"]
    assert "interface Loopback42" not in shown
    assert "snmp-server contact" not in shown
    assert conn.send_command("show running-config | include ^interface") == (
        "interface GigabitEthernet0/1\ninterface Loopback0"
    )
    assert conn.send_command("show running-config | section Loopback0").splitlines() == [
        "interface Loopback0",
        f" ip address {children(shown, 'interface Loopback0')[0].split()[2]} 255.255.255.255",
    ]
    assert conn.send_command("show running-config interface Loopback0").splitlines()[-3:] == [
        "interface Loopback0",
        f" {children(shown, 'interface Loopback0')[0]}",
        "end",
    ]


def test_line_by_line_rollback_gives_the_same_text(lab: StatefulLab, conn: Any) -> None:
    before = lab.config_of(NAME)
    uplink = children(before, "interface GigabitEthernet0/1")
    location = next(line for line in top_level(before) if line.startswith("snmp-server location"))
    conn.send_config_set(
        [
            "interface GigabitEthernet0/1",
            "description maintenance window",
            "no ip address",
            "shutdown",
            "no snmp-server location",
            "ip route 0.0.0.0 0.0.0.0 192.0.2.254",
            "vlan 999",
            "name quarantine",
        ],
        error_pattern=CONFIG_ERROR,
    )
    assert lab.config_of(NAME) != before
    # The inverse, as a pusher computes it: each line undone, removed lines put back.
    conn.send_config_set(
        [
            "no vlan 999",
            "no ip route 0.0.0.0 0.0.0.0 192.0.2.254",
            location,
            "interface GigabitEthernet0/1",
            "no shutdown",
            *uplink,
        ],
        error_pattern=CONFIG_ERROR,
    )
    assert lab.config_of(NAME) == before


def test_invalid_lines_answer_the_ios_error_and_change_nothing(lab: StatefulLab, conn: Any) -> None:
    before = lab.config_of(NAME)
    conn.config_mode()
    prompt = conn.find_prompt()
    assert prompt == f"{NAME}(config)#"
    answer = conn.send_command("frobnicate the network", expect_string=re.escape(prompt))
    assert answer.splitlines()[0] == " " * len(prompt) + "^"
    assert platforms.command_error("cisco_ios", answer) == INVALID
    assert INCOMPLETE in conn.send_command("interface", expect_string=re.escape(prompt))
    assert INVALID in conn.send_command("description top level", expect_string=re.escape(prompt))
    conn.send_command("interface Loopback0", expect_string=r"\(config-if\)#")
    bad = conn.send_command("ip address 10.0.0.300 255.255.255.0", expect_string=r"#")
    caret = bad.splitlines()[0]
    assert caret.index("^") == len(f"{NAME}(config-if)#ip address ")
    conn.exit_config_mode()
    assert lab.config_of(NAME) == before
    refusals = [h.refused for h in lab.history(NAME) if h.refused]
    assert refusals == [INVALID, INCOMPLETE, INVALID, INVALID]

    with pytest.raises(ConfigInvalidException, match="Invalid input"):
        conn.send_config_set(["snmp-server contact a", "frobnicate"], error_pattern=CONFIG_ERROR)
    assert conn.check_config_mode()  # netmiko stops at the error, still in config mode
    conn.exit_config_mode()


def test_fail_command_refuses_a_line_and_leaves_the_config(lab: StatefulLab, conn: Any) -> None:
    lab.fail_command(NAME, r"^snmp-server community")
    output = conn.send_config_set(
        ["snmp-server contact noc", "snmp-server community s3cret RO", "ntp server 192.0.2.1"]
    )
    refused = output.split("snmp-server community s3cret RO", 1)[1]
    assert refused.lstrip("\n").splitlines()[1] == INVALID
    config = lab.config_of(NAME)
    assert "snmp-server contact noc" in config and "ntp server 192.0.2.1" in config
    assert "community" not in config
    [entry] = [h for h in lab.history(NAME) if h.refused]
    assert entry.command == "snmp-server community s3cret RO" and entry.prompt.endswith("(config)#")

    # A pusher with an error pattern stops at the refusal: the next line is never sent.
    with pytest.raises(ConfigInvalidException):
        conn.send_config_set(
            ["snmp-server community other RO", "ntp server 192.0.2.2"], error_pattern=CONFIG_ERROR
        )
    conn.exit_config_mode()
    assert "ntp server 192.0.2.2" not in lab.commands_of(NAME)

    # A transient refusal with the device's own message, then the line goes through.
    lab.clear_faults(NAME)
    lab.fail_command(NAME, "^logging host", "% Logging host table full", times=1)
    first = conn.send_config_set(["logging host 192.0.2.9"])
    assert "% Logging host table full" in first and "logging host" not in lab.config_of(NAME)
    conn.send_config_set(["logging host 192.0.2.9"], error_pattern=CONFIG_ERROR)
    assert "logging host 192.0.2.9" in top_level(lab.config_of(NAME))


def test_fail_after_refuses_every_line_after_n(lab: StatefulLab, conn: Any) -> None:
    lab.fail_after(NAME, 2)
    conn.send_config_set(
        ["snmp-server contact one", "ntp server 192.0.2.1", "ntp server 192.0.2.2"]
    )
    config = lab.config_of(NAME)
    assert "snmp-server contact one" in config and "ntp server 192.0.2.1" in config
    assert "192.0.2.2" not in config
    assert [h.command for h in lab.history(NAME) if h.refused] == ["ntp server 192.0.2.2"]


def test_snapshot_then_configure_replace_restores_it_exactly(lab: StatefulLab, conn: Any) -> None:
    snapshot = lab.config_of(NAME)
    asked = conn.send_command(
        "copy running-config flash:before-change-1", expect_string=r"Destination filename"
    )
    assert asked.strip() == "Destination filename [before-change-1]?"
    copied = conn.send_command("\n", expect_string=r"#")
    assert re.search(r"\d+ bytes copied", copied)
    assert snapshot.endswith(lab.flash_of(NAME)["before-change-1"])
    assert "before-change-1" in conn.send_command("dir flash:")

    conn.send_config_set(
        [
            "hostname-not-a-command",
            "interface Loopback0",
            "description changed",
            "router bgp 65000",
            "neighbor 192.0.2.2 remote-as 65001",
        ]
    )
    conn.save_config()
    changed = lab.config_of(NAME)
    assert changed != snapshot and "router bgp 65000" in changed

    output = conn.send_command(
        "configure replace flash:before-change-1 force", expect_string=re.escape(f"{NAME}#")
    )
    assert output.splitlines()[-2:] == ["Total number of passes: 1", "Rollback Done"]
    assert lab.config_of(NAME) == snapshot
    assert conn.send_command("show running-config") == snapshot.rstrip("\n")

    # The startup config (saved with the change) is a rollback target too, with a listing.
    listed = conn.send_command("configure replace nvram:startup-config list force")
    assert "!List of Commands:" in listed and " description changed" in listed
    assert listed.endswith("Rollback Done")
    assert lab.config_of(NAME) == changed

    # Without force IOS asks first.
    warning = conn.send_command("configure replace flash:before-change-1", expect_string=r"\[no\]:")
    assert "Enter Y if you are sure you want to proceed" in warning
    # An answer needs an expect_string: without one netmiko first sends a bare return to
    # find the prompt, and that return answers the question ("no").
    assert conn.send_command("y", expect_string=PROMPT).endswith("Rollback Done")
    assert lab.config_of(NAME) == snapshot

    missing = conn.send_command("configure replace flash:no-such-file force")
    assert platforms.command_error("cisco_ios", missing) == (
        "%Error opening flash:no-such-file (No such file or directory)"
    )


def test_break_rollback_makes_configure_replace_fail(lab: StatefulLab, conn: Any) -> None:
    conn.send_command("copy running-config flash:golden", expect_string=r"\?")
    conn.send_command("\n", expect_string=r"#")
    conn.send_config_set(["snmp-server contact changed"])
    changed = lab.config_of(NAME)
    lab.break_rollback(NAME)
    output = conn.send_command("configure replace flash:golden force")
    assert "Rollback Done" not in output
    assert "The rollback configlet from the last pass is listed below:" in output
    assert "no snmp-server contact changed" in output
    assert output.endswith("Rollback aborted after 5 passes")
    assert lab.config_of(NAME) == changed

    lab.break_rollback(NAME, False)
    assert conn.send_command("configure replace flash:golden force").endswith("Rollback Done")
    assert "snmp-server contact" not in lab.config_of(NAME)


def test_flash_files_copy_prompts_and_delete(lab: StatefulLab, conn: Any) -> None:
    conn.send_command("copy running-config flash:snap", expect_string=r"\?")
    conn.send_command("\n", expect_string=r"#")
    # Copying onto an existing file asks to overwrite.
    conn.send_command("copy running-config flash:snap", expect_string=r"\?")
    assert "Do you want to over write? [confirm]" in conn.send_command("\n", expect_string=r"\]")
    conn.send_command("\n", expect_string=r"#")
    assert conn.send_command("more flash:snap") == lab.flash_of(NAME)["snap"].rstrip("\n")

    asked = conn.send_command("delete flash:snap", expect_string=r"\?")
    assert asked.strip() == "Delete filename [snap]?"
    assert "Delete flash:/snap? [confirm]" in conn.send_command("\n", expect_string=r"\]")
    conn.send_command("\n", expect_string=r"#")
    assert lab.flash_of(NAME) == {}
    assert "No files in directory" in conn.send_command("show flash:")
    assert "%Error deleting flash:/snap" in conn.send_command("delete /force flash:snap")

    # A device that cannot take the snapshot (fault on an exec command).
    full = "%Error copying (No space left on device)"
    lab.fail_command(NAME, "^copy ", full, where="exec")
    refused = conn.send_command("copy running-config flash:full")
    assert platforms.command_error("cisco_ios", refused) == full
    assert lab.flash_of(NAME) == {}
    lab.clear_faults(NAME)

    # `file prompt quiet` (in the running config) silences the questions.
    conn.send_config_set(["file prompt quiet"], error_pattern=CONFIG_ERROR)
    assert "bytes copied" in conn.send_command("copy running-config flash:quiet")
    assert "quiet" in lab.flash_of(NAME)
    assert conn.send_command("delete flash:quiet") == ""
    assert lab.flash_of(NAME) == {}
    # A file staged from the API (a golden config) and merged into the running config.
    lab.set_file(
        NAME, "extra.cfg", "ntp server 192.0.2.123\ninterface Loopback5\n description merged\n"
    )
    assert "bytes copied" in conn.send_command("copy flash:extra.cfg running-config")
    merged = lab.config_of(NAME)
    assert children(merged, "interface Loopback5") == ["description merged"]
    assert "ntp server 192.0.2.123" in top_level(merged)


def test_write_memory_keeps_the_startup_config(lab: StatefulLab, conn: Any) -> None:
    initial = lab.startup_of(NAME)
    assert initial is not None and lab.config_of(NAME).endswith(initial)
    conn.send_config_set(["snmp-server contact saved"], error_pattern=CONFIG_ERROR)
    assert "snmp-server contact saved" not in conn.send_command("show startup-config")

    saved = conn.save_config()
    assert saved.splitlines()[-2:] == ["[OK]", f"{NAME}#"]
    startup = conn.send_command("show startup-config")
    assert re.fullmatch(r"Using \d+ out of 262144 bytes", startup.splitlines()[0])
    assert "snmp-server contact saved" in top_level(startup)
    assert lab.config_of(NAME).endswith(lab.startup_of(NAME) or "-")

    conn.send_config_set(["no snmp-server contact"], error_pattern=CONFIG_ERROR)
    conn.send_command("copy running-config startup-config", expect_string=r"\[startup-config\]\?")
    assert conn.send_command("\n", expect_string=PROMPT) == "Building configuration...\n[OK]"
    assert "snmp-server contact" not in (lab.startup_of(NAME) or "")


def test_set_show_answers_post_checks(lab: StatefulLab, conn: Any) -> None:
    header = "Neighbor        V    AS MsgRcvd  Up/Down  State/PfxRcd\n"
    healthy = header + "192.0.2.2       4 65001  120  01:00:00  12"
    broken = header + "192.0.2.2       4 65001  120  00:00:03  Idle"
    assert INVALID in conn.send_command("show ip bgp summary")
    lab.set_show(NAME, "show ip bgp summary", healthy)
    lab.set_show(NAME, "show ip bgp summary", broken, when=r"^ description BREAKS-BGP$")
    assert conn.send_command("show ip bgp summary") == healthy
    assert conn.send_command("show ip bgp summary | include 192.0.2.2").endswith("12")

    # The post-check starts failing once the change lands, and passes after the rollback.
    conn.send_config_set(["interface Loopback0", "description BREAKS-BGP"])
    assert conn.send_command("show ip bgp summary").endswith("Idle")
    conn.send_config_set(["interface Loopback0", "no description"])
    assert conn.send_command("show ip bgp summary") == healthy

    # Built-in post-checks follow the running config.
    conn.send_config_set(["interface GigabitEthernet0/1", "shutdown"])
    brief = conn.send_command("show ip interface brief")
    uplink = next(line for line in brief.splitlines() if line.startswith("GigabitEthernet0/1"))
    assert uplink.split()[-3:] == ["administratively", "down", "down"]
    assert conn.send_command("show ip int brief | count Loopback") == (
        "Number of lines which match regexp = 1"
    )

    lab.clear_show(NAME, "show ip bgp summary")
    assert INVALID in conn.send_command("show ip bgp summary")


def test_sections_nest_with_ios_prompts(lab: StatefulLab, conn: Any) -> None:
    conn.send_config_set(
        [
            "router bgp 65000",
            "bgp log-neighbor-changes",
            "neighbor 192.0.2.2 remote-as 65001",
            "address-family ipv4",
            "neighbor 192.0.2.2 activate",
            "exit-address-family",
            "line vty 0 4",
            "transport input ssh",
            "ip access-list extended EDGE-IN",
            "permit tcp any any eq 22",
            "hostname-is-not-a-word-here",  # refused; netmiko carries on without a pattern
        ]
    )
    prompts = {h.command: h.prompt for h in lab.history(NAME)}
    assert prompts["bgp log-neighbor-changes"] == f"{NAME}(config-router)#"
    assert prompts["neighbor 192.0.2.2 activate"] == f"{NAME}(config-router-af)#"
    assert prompts["exit-address-family"] == f"{NAME}(config-router-af)#"
    assert prompts["transport input ssh"] == f"{NAME}(config-line)#"
    assert prompts["permit tcp any any eq 22"] == f"{NAME}(config-ext-nacl)#"
    shown = conn.send_command("show running-config | section router bgp")
    assert shown.splitlines() == [
        "router bgp 65000",
        " bgp log-neighbor-changes",
        " neighbor 192.0.2.2 remote-as 65001",
        " address-family ipv4",
        "  neighbor 192.0.2.2 activate",
    ]
    config = lab.config_of(NAME)
    assert children(config, "line vty 0 4") == ["transport input ssh"]
    assert "ip access-list extended EDGE-IN\n permit tcp any any eq 22\n" in config
    # A section with lines in the config is entered even without a known keyword.
    lab.set_config(NAME, config + "\nmonitor capture CAP\n match any\n")
    conn.send_config_set(["monitor capture CAP", "match ipv4 any any"])
    assert lab.history(NAME)[-2].prompt == f"{NAME}(config-monitor)#"
    capture = children(lab.config_of(NAME), "monitor capture CAP")
    assert capture == ["match any", "match ipv4 any any"]
    # `default interface` empties it; `do` runs an exec command from configuration mode.
    output = conn.send_config_set(
        ["default interface GigabitEthernet0/1", "do show running-config | section Gigabit"]
    )
    assert children(lab.config_of(NAME), "interface GigabitEthernet0/1") == []
    assert "\ninterface GigabitEthernet0/1\n" in output


def test_banner_and_hostname_change_the_device(lab: StatefulLab, conn: Any) -> None:
    conn.send_config_set(["banner motd ^C", "Authorized access only", "^C"])
    config = lab.config_of(NAME)
    assert "banner motd ^C\nAuthorized access only\n^C" in config
    conn.send_config_set(["banner motd #Second text#"])
    assert config.count("banner motd") == 1
    assert "banner motd ^CSecond text^C" in lab.config_of(NAME)
    assert "Authorized" not in lab.config_of(NAME)

    conn.send_config_set(["hostname edge-7"], exit_config_mode=False)
    assert conn.find_prompt() == "edge-7(config)#"


def test_hang_makes_a_command_time_out(lab: StatefulLab) -> None:
    conn = connect(lab, read_timeout_override=None)
    lab.set_show(NAME, "show ip bgp summary", "ok")
    lab.hang(NAME, math.inf, pattern="bgp")
    started = time.monotonic()
    with pytest.raises(ReadTimeout):
        conn.send_command("show ip bgp summary", read_timeout=1)
    assert time.monotonic() - started < 5
    lab.hang(NAME, 0)
    conn.clear_buffer()
    assert "ok" in conn.send_command("show ip bgp summary")
    lab.hang(NAME, 0.3)
    started = time.monotonic()
    conn.send_command("show clock")
    assert time.monotonic() - started >= 0.3
    conn.disconnect()


def test_rookery_driver_pins_the_lab_key_and_reads_the_config(lab: StatefulLab) -> None:
    spec = lab.device("ios-002")
    target = DeviceTarget(
        id=2,
        name=spec.name,
        host=spec.host,
        port=lab.port_of(spec.name),
        platform=spec.platform,
        host_key=lab.host_key(),
        host_key_approved=True,
    )
    credential = ResolvedCredential(
        id=1,
        name="lab",
        username=spec.username,
        password=spec.password,
        enable_secret=spec.enable_secret,
    )
    strict = dataclasses.replace(OPTIONS, host_keys="strict")
    with NetmikoSession.open(target, credential, strict) as session:
        assert session.get_config() == lab.config_of(spec.name).rstrip("\n")
        assert session.host_key == lab.host_key()


def test_thirty_devices_start_quickly_and_answer_concurrently() -> None:
    fleet = stateful_fleet(30)
    started = time.monotonic()
    lab = StatefulLab(fleet).start()
    try:
        assert time.monotonic() - started < 2
        assert len({device.port for device in lab.devices}) == 30

        def change(name: str) -> str:
            session = connect(lab, name)
            try:
                session.send_config_set(
                    ["interface Loopback0", f"description pushed to {name}"],
                    error_pattern=CONFIG_ERROR,
                )
                return session.send_command("show running-config | include description pushed")
            finally:
                session.disconnect()

        names = [device.name for device in fleet]
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=30) as pool:
            answers = list(pool.map(change, names))
        elapsed = time.monotonic() - started
        assert answers == [f" description pushed to {name}" for name in names]
        for name in names:
            assert f" description pushed to {name}\n" in lab.config_of(name)
        assert elapsed < 30, f"30 concurrent pushes took {elapsed:.1f}s"
    finally:
        lab.stop()
    assert all(device.port is None for device in fleet)


def test_drop_sessions_cuts_the_connection(lab: StatefulLab, conn: Any) -> None:
    lab.drop_sessions(NAME)
    with pytest.raises((OSError, EOFError, ReadTimeout)):
        for _ in range(20):
            conn.send_command("show clock", read_timeout=2)
            time.sleep(0.1)
    again = connect(lab)
    try:
        assert again.find_prompt() == f"{NAME}#"
    finally:
        again.disconnect()


def test_eos_configure_sessions_wait_for_commit() -> None:
    """EOS: lines typed into a configure session change nothing until ``commit``; ``end``
    leaves the session pending (typing its name again goes back in), ``abort`` drops it.
    Its config shows three-space indents and prefix lengths; copies ask nothing."""
    with StatefulLab(stateful_fleet(1, platforms=("arista_eos",))) as lab:
        name = "eos-001"
        before = lab.config_of(name)
        assert before.startswith("! Command: show running-config\n")
        assert "   ip address 192.0.2." in before and "/32" in before
        conn = connect(lab, name)

        def say(command: str) -> str:
            return conn.send_command(command, expect_string=r"#\s*$")

        try:
            say("configure session change1")
            assert conn.find_prompt() == f"{name}(config-s-change)#"
            say("interface Loopback7")
            assert conn.find_prompt() == f"{name}(config-s-change-if-Lo7)#"
            say("ip address 198.51.100.7/32")
            say("end")
            assert lab.config_of(name) == before  # pending, not applied
            say("configure session change1")
            say("commit")
            assert conn.find_prompt() == f"{name}#"
            after = lab.config_of(name).splitlines()
            assert after[after.index("interface Loopback7") + 1] == "   ip address 198.51.100.7/32"

            say("configure session change2")
            say("no interface Loopback7")
            say("abort")
            assert "interface Loopback7" in lab.config_of(name).splitlines()
            assert (
                conn.send_command("copy running-config flash:cp") == "Copy completed successfully."
            )
            assert conn.send_command("write memory") == "Copy completed successfully."
        finally:
            conn.disconnect()


def test_xr_candidate_commits_and_rollback() -> None:
    """IOS-XR: no enable; lines wait in a candidate until ``commit`` (a new entry of the
    commit list), ``abort`` drops them, ``end`` with uncommitted changes asks, and
    ``rollback configuration last 1`` undoes the newest commit."""
    with StatefulLab(stateful_fleet(1, platforms=("cisco_xr",))) as lab:
        name = "xr-001"
        before = lab.config_of(name)
        conn = connect(lab, name)

        def say(command: str) -> str:
            return conn.send_command(command, expect_string=r"(?:#|\]:)\s*$")

        try:
            assert conn.find_prompt() == f"RP/0/RP0/CPU0:{name}#"
            say("configure")
            say("interface Loopback7")
            say("ipv4 address 198.51.100.7 255.255.255.255")
            assert lab.config_of(name) == before  # a candidate only
            assert say("end").rstrip().endswith("[cancel]:")
            say("yes")
            assert "interface Loopback7" in lab.config_of(name).splitlines()
            listing = say("show configuration commit list").splitlines()
            assert [line.split()[1] for line in listing[2:]] == ["1000000002", "1000000001"]

            say("configure")
            say("no interface Loopback7")
            say("abort")
            assert "interface Loopback7" in lab.config_of(name).splitlines()
            done = say("rollback configuration last 1")
            assert "Configuration successfully rolled back 1 commits." in done
            assert lab.config_of(name) == before
            assert len(say("show configuration commit list 5").splitlines()) == 2 + 3
        finally:
            conn.disconnect()
