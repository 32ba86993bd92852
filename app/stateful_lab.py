"""A stateful SSH device emulator on 127.0.0.1: cisco_ios, arista_eos, cisco_xr and
juniper_junos devices that keep a running config.

``StatefulLab`` starts one asyncssh server per device, all served by one asyncio loop in a
background thread of this process, each on its own free port of 127.0.0.1 with its own
username and password (and enable secret when it has one). Unlike FakeNOS, which answers
canned text, a device here *keeps state*: configuration mode applies lines to its running
config, ``show running-config`` prints the result, ``write memory`` keeps a startup config,
``copy running-config flash:<name>`` keeps snapshots and ``configure replace flash:<name>
force`` rolls back to one. Netmiko drives it with the ordinary ``cisco_ios`` driver::

    with StatefulLab(stateful_fleet(3)) as lab:
        conn = ConnectHandler(**lab.netmiko_params("ios-001"))
        conn.enable()
        conn.send_config_set(["interface Loopback9", "description added"])
        assert " description added" in lab.config_of("ios-001")

What a device understands (IOS syntax; exec keywords may be abbreviated where unique,
configuration lines are typed in full but for interface names: ``interface gi0/1``):

- Login with the device's own credentials; prompts ``host>``, ``host#``, ``host(config)#``
  and sub-mode prompts (``host(config-if)#``, ``(config-router)#``, ``(config-line)#`` ...);
  the host name is the running config's ``hostname`` (the device name without one).
- ``terminal length|width ...``, ``enable`` (asks for the secret when set), ``disable``,
  ``exit``; ``show running-config [interface X]``, ``show startup-config``,
  ``show version``, ``show clock``, ``show ip interface brief`` (from the running config),
  ``show flash:`` / ``dir flash:``, ``more flash:<name>``, each with ``| include``,
  ``| exclude``, ``| begin``, ``| section`` or ``| count``.
- ``configure terminal``: a line opening a section (``interface``, ``router``, ``line``,
  ``vlan`` ..., or a line that has children in the running config) enters it; other lines
  are added at the current level, replacing a single-valued line in place (``description``,
  ``ip address``, ``hostname`` ...); a line valid only at top level (another ``interface``,
  ``hostname``, ``ip route`` ...) leaves the section first, as IOS does. ``no <line>``
  removes the lines it starts (with their children): ``no ip address``, ``no shutdown``,
  ``no interface Loopback9``; ``default <line>`` too. ``exit``, ``end``, Ctrl-Z, ``do``,
  multi-line ``banner``. A line a top-level word does not start (at top level), or whose
  first word is no configuration word (in a section), or a few malformed arguments
  (``ip address`` without a valid address, ``interface`` with an unknown type) answer
  ``% Invalid input detected at '^' marker.`` or ``% Incomplete command.`` and change
  nothing.
- ``write memory`` / ``copy running-config startup-config``; ``copy running-config
  flash:<name>``, ``copy flash:<name> running-config`` (merge) and ``startup-config``;
  ``delete [/force] flash:<name>``; ``configure replace flash:<name>|nvram:startup-config
  [list] [force]`` (without ``force`` it asks). ``copy`` and ``delete`` ask what IOS asks
  unless the running config holds ``file prompt quiet``.

Lines removed and added again go back where they were (as IOS's fixed command order
would put them), so a line-by-line rollback gives the same text as before the change.

Fault injection (thread-safe, any time): ``fail_command`` (a config line matching a regex
is refused), ``fail_after`` (every config line after the next N), ``set_show`` (a show
command answers given text, optionally only while the running config matches a regex:
a post-check that starts failing once a change lands), ``break_rollback``, ``hang``.
``commands_of`` lists every line each device received (never a password).

Arista EOS (``EosDialect``, devices named ``eos-NNN`` by ``stateful_fleet(...,
platforms=("arista_eos",))``) speaks the same CLI with EOS's manners: three-space indents,
``ip address A.B.C.D/NN``, ``Ethernet1``/``Management1`` interfaces, nothing asked or
printed by ``copy``, ``write`` and ``configure replace`` but ``Copy completed
successfully.``, and ``configure session NAME`` whose lines wait in a copy of the config
until ``commit`` (``abort`` drops them; ``end`` leaves the session pending).

Cisco IOS-XR (``XrDialect``, ``xr-NNN``) edits a candidate: no ``enable``, prompts
``RP/0/RP0/CPU0:host#``, ``commit`` records a commit (``show configuration commit list``),
``abort`` drops the candidate, ``end`` with uncommitted changes asks, and ``rollback
configuration last N`` / ``to ID`` restores an earlier commit (``break_rollback`` makes
it fail).

Limits: four platforms (a platform's knowledge sits in its dialect, ``DIALECTS``);
vocabulary and argument checks are heuristics; a new line goes after the last line of its
kind (same first word) at its level, else last, not where IOS's fixed order would put it;
``!`` only separates top-level sections; ``configure replace`` either succeeds wholly or
(with ``break_rollback``) changes nothing; the prompt's host name is not abbreviated; no
``show`` command in configuration mode but through ``do``. Junos (``JunosConfig``,
``_JunosSession``) is its own CLI: ``set``/``delete`` on a shared candidate, ``commit
[confirmed N]`` (undone by the device after N lab ``minute`` s unless another commit
follows), ``rollback N``, ``show system commit``; where a ``set`` path opens containers
comes from small tables, not Junos's schema.

asyncssh is only in the ``test`` and ``bench`` extras, so it is imported when a lab starts.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import hashlib
import itertools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from app.demo_lab import LOCALHOST, LabDevice, default_fleet, sample_config
from app.lab_loop import LoopThread

if TYPE_CHECKING:
    from app.ssh_keys import HostKey

logger = logging.getLogger(__name__)

__all__ = [
    "INCOMPLETE",
    "INVALID",
    "PLATFORMS",
    "Applied",
    "IosDialect",
    "Received",
    "RunningConfig",
    "StatefulLab",
    "stateful_fleet",
]

#: IOS's answer to a command it does not know (what netmiko and ``app.platforms`` look for)
INVALID = "% Invalid input detected at '^' marker."
#: IOS's answer to a command missing its arguments
INCOMPLETE = "% Incomplete command."

#: what a failed ``configure replace`` prints (``break_rollback``) after the configlet
ROLLBACK_ABORTED = "Rollback aborted after 5 passes"
FLASH_SIZE = 7_194_652_672
NVRAM_SIZE = 262_144


def stateful_fleet(
    n: int,
    *,
    seed: str = "rookery",
    enable_secrets: bool = False,
    platforms: Sequence[str] = ("cisco_ios",),
) -> list[LabDevice]:
    """``n`` devices (``ios-001``, ``eos-002`` ...) cycling through ``platforms`` (of
    ``PLATFORMS``), as ``app.demo_lab.default_fleet`` makes them."""
    return default_fleet(n, platforms, seed=seed, enable_secrets=enable_secrets)


# --------------------------------------------------------------------------- the dialect


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _prefixes(text: str) -> tuple[tuple[str, ...], ...]:
    """``"ip route, ntp server"`` -> ``(("ip", "route"), ("ntp", "server"))``."""
    return tuple(tuple(item.split()) for item in text.split(","))


def _starts(words: Sequence[str], prefixes: Iterable[tuple[str, ...]]) -> bool:
    lowered = [w.lower() for w in words]
    return any(tuple(lowered[: len(p)]) == p for p in prefixes)


class IosDialect:
    """What the emulator knows of Cisco IOS: its words, its sections, its sub-mode names.

    Another platform (Arista EOS: three-space indents, no ``Building configuration...``)
    would be a subclass overriding these tables and ``running_header``.
    """

    platform = "cisco_ios"
    indent = " "
    #: ``configure session NAME`` (EOS)
    config_sessions = False
    #: ``copy``, ``delete`` and ``configure replace`` ask before they act
    asks = True
    #: configuration mode edits a candidate that ``commit`` applies (IOS-XR)
    commits = False
    #: a login lands in user mode (``host>``) and ``enable`` goes on (not on IOS-XR)
    enables = True
    #: what the prompt shows before the host name
    prompt_prefix = ""

    #: first words of a configuration line at top level
    GLOBAL_WORDS = _words(
        """aaa access-list alias archive arp banner boot bridge call-home cdp class-map clock
        config-register control-plane crypto default diagnostic dot1x enable errdisable event
        file hostname interface ip ipv6 key license line lldp logging login mac memory monitor
        mpls multilink no ntp object-group parser platform policy-map port-channel power
        privilege process radius radius-server redundancy rmon route-map router scheduler
        security service snmp snmp-server spanning-tree subscriber system tacacs tacacs-server
        template track transceiver udld username version vlan vrf vtp"""
    )
    #: first words of a configuration line inside a section (any section)
    SECTION_WORDS = _words(
        """accept-lifetime access-class accounting action address address-family
        aggregate-address area arp authentication authorization auto-summary bandwidth bfd bgp
        boolean carrier-delay cdp channel-group class continue crypto cts default
        default-information default-metric default-router delay deny description destination
        dialer distance distribute-list dns-server domain-name dot1x duplex eigrp encapsulation
        evaluate event exec exec-timeout exit-address-family exit-peer-policy exit-peer-session
        export fair-queue flowcontrol frequency group history hold-queue hold-time icmp-echo
        import inherit instance ip ipv6 isis keepalive key key-string lacp lease length
        load-interval log-adjacency-changes logging login logout-warning mab mac-address macro
        macsec match maximum maximum-paths media-type members metric mode mpls mtu nat name
        negotiation neighbor netbios-name-server network no ntp object option pagp passive-interface
        password path permit police port power ppp pppoe preempt priority privilege
        queue-limit random-detect rate-limit rd redistribute remark retransmit revision
        route-target router-id send-lifetime sequence server service-policy session-timeout
        set shape shutdown snmp source speed spanning-tree standby state statistics stopbits
        storm-control summary-address switchport synchronization template time-period timeout
        timers tos track traffic-share traffic-shape transport tunnel type udld
        udp-jitter variance vlan vrf vrrp wait width write-memory"""
    )
    #: lines only valid at top level: typed inside a section, they leave it first
    GLOBAL_ONLY = _prefixes(
        """hostname, interface, router, line, vlan, route-map, class-map, policy-map,
        username, enable, service, aaa, banner, boot, clock timezone, clock summer-time,
        clock calendar-valid, snmp-server, access-list,
        archive, control-plane, alias, config-register, errdisable, file, license,
        redundancy, version, vtp, tacacs-server, radius-server, call-home, object-group,
        scheduler, parser, memory, multilink, rmon, ntp server, ntp peer, ntp source,
        ntp master, ntp authenticate, ntp authentication-key, ntp trusted-key,
        ntp update-calendar, ip route, ip access-list, ip domain, ip domain-name,
        ip domain-lookup, ip name-server, ip http, ip ssh, ip prefix-list, ip vrf, ip dhcp pool,
        ip dhcp excluded-address,
        ip routing, ip cef, ip scp, ip forward-protocol, ip sla, ip community-list,
        ip as-path, ip multicast-routing, ip default-gateway, ip tftp, ip ftp, ip host,
        ip classless, ip subnet-zero, ip bootp, ip source-route, ip finger, ip nat pool,
        ip nat inside source, ipv6 route, ipv6 unicast-routing, ipv6 access-list,
        ipv6 prefix-list, logging host, logging buffered, logging trap, logging console,
        logging monitor, logging source-interface, logging facility, logging origin-id,
        logging on, spanning-tree mode, spanning-tree vlan, spanning-tree extend,
        spanning-tree loopguard, spanning-tree portfast default, spanning-tree mst,
        key chain, vrf definition, cdp run, lldp run, mac address-table, monitor session,
        crypto key, crypto isakmp, crypto ipsec, crypto pki, port-channel load-balance,
        tacacs server, radius server, event manager, system mtu, track"""
    )
    #: lines GLOBAL_ONLY and SECTIONS would take that belong in a section
    NOT_GLOBAL = _prefixes("ip vrf forwarding")
    #: top-level lines that open a section (a sub-mode), and the sub-mode's name
    SECTIONS: tuple[tuple[tuple[str, ...], str], ...] = (
        (("interface",), "config-if"),
        (("router",), "config-router"),
        (("line",), "config-line"),
        (("vlan",), "config-vlan"),
        (("route-map",), "config-route-map"),
        (("class-map",), "config-cmap"),
        (("policy-map",), "config-pmap"),
        (("archive",), "config-archive"),
        (("control-plane",), "config-cp"),
        (("redundancy",), "config-red"),
        (("object-group",), "config-network-group"),
        (("track",), "config-track"),
        (("ip", "access-list", "standard"), "config-std-nacl"),
        (("ip", "access-list", "extended"), "config-ext-nacl"),
        (("ipv6", "access-list"), "config-ipv6-acl"),
        (("ip", "vrf"), "config-vrf"),
        (("ip", "dhcp", "pool"), "dhcp-config"),
        (("ip", "sla"), "config-ip-sla"),
        (("vrf", "definition"), "config-vrf"),
        (("key", "chain"), "config-keychain"),
        (("tacacs", "server"), "config-server-tacacs"),
        (("radius", "server"), "config-radius-server"),
        (("aaa", "group", "server"), "config-sg"),
        (("crypto", "isakmp", "policy"), "config-isakmp"),
        (("crypto", "map"), "config-crypto-map"),
        (("crypto", "pki", "trustpoint"), "ca-trustpoint"),
        (("event", "manager", "applet"), "config-applet"),
        (("spanning-tree", "mst", "configuration"), "config-mst"),
    )
    #: lines opening a section inside a section: (parent's first words, child's, mode name)
    SUBSECTIONS: tuple[tuple[tuple[str, ...], tuple[str, ...], str], ...] = (
        (("router",), ("address-family",), "config-router-af"),
        (("vrf", "definition"), ("address-family",), "config-vrf-af"),
        (("policy-map",), ("class",), "config-pmap-c"),
        (("key", "chain"), ("key",), "config-keychain-key"),
    )
    #: lines shown in their ``no`` form when off (on by default): ``no ip domain lookup``
    NO_FORM = _prefixes(
        """ip domain lookup, ip domain-lookup, ip http server, ip http secure-server,
        ip source-route, ip bootp server, ip redirects, ip unreachables, ip proxy-arp,
        ip route-cache, service pad, service config, cdp enable, cdp run, lldp run,
        switchport, mop enabled, logging console, auto-summary, synchronization, keepalive,
        negotiation auto, aaa new-model"""
    )
    #: single-valued lines: a new value replaces the old line in place (``(?P<k>)`` parts
    #: are part of the key: one ``remote-as`` per neighbor)
    SINGLE_VALUED = tuple(
        re.compile(pattern)
        for pattern in (
            r"^hostname ",
            r"^banner (?P<k>\S+) ",
            r"^description ",
            r"^ip address (?!.*\bsecondary$)",
            r"^speed ",
            r"^duplex ",
            r"^mtu ",
            r"^ip mtu ",
            r"^bandwidth ",
            r"^delay ",
            r"^load-interval ",
            r"^switchport mode ",
            r"^switchport access vlan ",
            r"^switchport trunk native vlan ",
            r"^switchport trunk allowed vlan (?!add |remove |except )",
            r"^encapsulation ",
            r"^vrf forwarding ",
            r"^ip vrf forwarding ",
            r"^channel-group ",
            r"^name ",
            r"^state ",
            r"^snmp-server location ",
            r"^snmp-server contact ",
            r"^ip domain name ",
            r"^ip domain-name ",
            r"^enable secret ",
            r"^enable password ",
            r"^clock timezone ",
            r"^ip default-gateway ",
            r"^logging buffered ",
            r"^logging source-interface ",
            r"^ntp source ",
            r"^router-id ",
            r"^bgp router-id ",
            r"^exec-timeout ",
            r"^transport input ",
            r"^ip ospf cost ",
            r"^ip ssh version ",
            r"^username (?P<k>\S+) ",
            r"^neighbor (?P<k>\S+) remote-as ",
            r"^neighbor (?P<k>\S+) description ",
            r"^neighbor (?P<k>\S+) update-source ",
            r"^neighbor (?P<k>\S+) password ",
            r"^ip access-group \S+ (?P<k>in|out)$",
            r"^service-policy (?P<k>input|output) ",
            r"^standby (?P<k>\d+) ip ",
            r"^standby (?P<k>\d+) priority ",
        )
    )
    #: words that never stand alone after ``no``: ``no ip`` is incomplete, not "every ip"
    NEEDS_SUBCOMMAND = _words(
        """aaa boot cdp clock crypto enable ip ipv6 key lldp logging mac monitor mpls ntp
        service snmp snmp-server spanning-tree switchport standby vrf vrrp"""
    )
    #: interface types in the order an abbreviation picks them (``e`` is Ethernet)
    INTERFACE_TYPES: tuple[str, ...] = (
        "Ethernet",
        "FastEthernet",
        "GigabitEthernet",
        "TenGigabitEthernet",
        "TwentyFiveGigE",
        "FortyGigabitEthernet",
        "HundredGigE",
        "Loopback",
        "Vlan",
        "Port-channel",
        "Tunnel",
        "Serial",
        "BDI",
        "Dialer",
        "Null",
        "Virtual-Template",
        "Management",
        "mgmt",
    )
    _IF_NUMBER = re.compile(r"\d+(?:/\d+)*(?:\.\d+)?(?::\d+)?")
    _IPV4 = re.compile(r"(?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}")

    # -- reading lines ------------------------------------------------------------------

    def interface_name(self, words: Sequence[str]) -> str | None:
        """``gi0/1``, ``Gi 0/1`` or ``GigabitEthernet0/1`` -> ``GigabitEthernet0/1``."""
        text = "".join(words)
        match = re.fullmatch(r"([A-Za-z][A-Za-z-]*)(\S+)", text)
        if match is None or not self._IF_NUMBER.fullmatch(match.group(2)):
            return None
        typed = match.group(1).lower()
        for kind in self.INTERFACE_TYPES:
            if kind.lower() == typed:
                return kind + match.group(2)
        for kind in self.INTERFACE_TYPES:
            if kind.lower().startswith(typed):
                return kind + match.group(2)
        return None

    def canonical(self, words: list[str]) -> list[str]:
        """The words as IOS stores them: keywords in lower case, interface names in full."""
        if not words:
            return words
        words = list(words)
        if words[0].lower() in self.GLOBAL_WORDS | self.SECTION_WORDS:
            words[0] = words[0].lower()
        if words[0] == "interface" and len(words) > 1:
            rest = words[1:]
            joined = 2 if len(rest) > 1 and rest[1][:1].isdigit() else 1
            name = self.interface_name(rest[:joined])
            if name is not None:
                words = ["interface", name, *rest[joined:]]
        return words

    def section_mode(self, parent: Sequence[str] | None, words: Sequence[str]) -> str | None:
        """The sub-mode ``words`` open under a section headed ``parent`` (None: top level)."""
        if parent is None:
            if _starts(words, self.NOT_GLOBAL):
                return None
            for prefix, mode in self.SECTIONS:
                if _starts(words, [prefix]):
                    if prefix == ("interface",) and len(words) > 1 and "." in words[1]:
                        return "config-subif"
                    if prefix == ("vlan",) and not (len(words) > 1 and words[1][:1].isdigit()):
                        return None
                    return mode
            return None
        for parent_prefix, prefix, mode in self.SUBSECTIONS:
            if _starts(parent, [parent_prefix]) and _starts(words, [prefix]):
                return mode
        return None

    def default_mode(self, words: Sequence[str]) -> str:
        """The sub-mode name of a section the tables do not know (it has children)."""
        return f"config-{words[0].lower()}" if words else "config"

    def global_only(self, words: Sequence[str]) -> bool:
        return _starts(words, self.GLOBAL_ONLY) and not _starts(words, self.NOT_GLOBAL)

    def shown_negated(self, words: Sequence[str]) -> bool:
        """Whether ``no <words>`` is a line of the running config (a default-on feature)."""
        return _starts(words, self.NO_FORM) and len(words) == len(
            next(p for p in self.NO_FORM if _starts(words, [p]))
        )

    def single_value_key(self, text: str) -> str | None:
        for pattern in self.SINGLE_VALUED:
            match = pattern.match(text)
            if match is not None:
                return pattern.pattern + "|" + (match.groupdict().get("k") or "")
        return None

    def check(self, top_level: bool, words: Sequence[str], negated: bool) -> tuple[str, int] | None:
        """Why IOS would refuse the line (message, index of the word the caret marks)."""
        first = words[0].lower()
        vocabulary = self.GLOBAL_WORDS if top_level else self.SECTION_WORDS | self.GLOBAL_WORDS
        if first not in vocabulary and not (not top_level and first.isdigit()):
            return INVALID, 0
        if negated and first in self.NEEDS_SUBCOMMAND and len(words) == 1:
            return INCOMPLETE, 0
        if negated:
            return None
        args = words[1:]
        if first in ("hostname", "description", "interface", "router", "remark") and not args:
            return INCOMPLETE, 0
        if first == "hostname" and len(args) > 1:
            return INVALID, 2
        if first == "shutdown" and args:
            return INVALID, 1
        if (
            first == "interface"
            and self.interface_name(args[:1]) is None
            and self.interface_name(args[:2]) is None
        ):
            return INVALID, 1
        if first == "vlan" and top_level and not re.fullmatch(r"[\d,-]+", args[0] if args else ""):
            return (INVALID, 1) if args else (INCOMPLETE, 0)
        if first == "router":
            protocol = args[0].lower()
            if protocol not in ("bgp", "ospf", "eigrp", "rip", "isis", "ospfv3"):
                return INVALID, 1
            if protocol in ("bgp", "ospf", "eigrp", "ospfv3") and len(args) < 2:
                return INCOMPLETE, 0
        if first == "ip" and args[:1] and args[0].lower() == "address":
            values = args[1:]
            if not values:
                return INCOMPLETE, 0
            if values[0].lower() in ("dhcp", "negotiated"):
                return None
            for index, value in enumerate(values[:2]):
                if not self._IPV4.fullmatch(value):
                    return INVALID, 2 + index
            if len(values) < 2:
                return INCOMPLETE, 0
            if len(values) > 2 and values[2:] != ["secondary"]:
                return INVALID, 4
        if first == "ip" and args[:1] and args[0].lower() == "route":
            values = args[1:]
            if len(values) < 3:
                return INCOMPLETE, 0
            for index, value in enumerate(values[:2]):
                if not self._IPV4.fullmatch(value):
                    return INVALID, 2 + index
        return None

    # -- printing ------------------------------------------------------------------------

    #: what a line a fault rule refuses is answered with by default
    refused = INVALID

    def sample(self, name: str) -> str:
        """A device's config when its spec gives none."""
        return sample_config(self.platform, name)

    def new_config(self, text: str) -> Any:
        """The config model of a device speaking this dialect."""
        return RunningConfig(text, self)

    def terminal(self, args: Sequence[str]) -> str:
        """The answer to ``terminal length 0`` / ``terminal width 511``."""
        return ""

    def running_header(self, body: str) -> str:
        size = len(body.encode())
        return f"Building configuration...\n\nCurrent configuration : {size} bytes\n"

    def startup_header(self, body: str) -> str:
        return f"Using {len(body.encode())} out of {NVRAM_SIZE} bytes\n"

    def version(self, hostname: str, booted: float, serial: str) -> str:
        return (
            "Cisco IOS Software, ISR Software (X86_64_LINUX_IOSD-UNIVERSALK9-M), "
            "Version 15.9(3)M4, RELEASE SOFTWARE (fc1)\n"
            "Technical Support: http://www.cisco.com/techsupport\n"
            "Copyright (c) 1986-2024 by Cisco Systems, Inc.\n"
            "Compiled by rookery stateful emulator\n"
            "\n"
            "ROM: IOS-XE ROMMON\n"
            f"{hostname} uptime is {_uptime(time.time() - booted)}\n"
            "System returned to ROM by reload\n"
            'System image file is "flash:isr4400-universalk9.15.9.3.M4.SPA.bin"\n'
            "\n"
            f"cisco ISR4451-X/K9 (2RU) processor with 1795999K/6147K bytes of memory.\n"
            f"Processor board ID {serial}\n"
            "4 Gigabit Ethernet interfaces\n"
            "32768K bytes of non-volatile configuration memory.\n"
            f"{FLASH_SIZE // 1024}K bytes of flash memory at bootflash:.\n"
            "\n"
            "Configuration register is 0x2102"
        )


def _uptime(seconds: float) -> str:
    """``1 week, 2 days, 3 hours, 4 minutes`` (zero parts left out, as IOS does)."""
    minutes = int(seconds // 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    weeks, days = divmod(days, 7)
    parts = [
        f"{value} {unit}{'s' if value != 1 else ''}"
        for value, unit in ((weeks, "week"), (days, "day"), (hours, "hour"), (minutes, "minute"))
        if value
    ]
    return ", ".join(parts) or "0 minutes"


IOS = IosDialect()


class EosDialect(IosDialect):
    """Arista EOS: IOS's vocabulary with EOS's looks and manners.

    Three-space indents, addresses with a prefix length (``ip address 10.0.0.1/30``),
    interfaces named ``Ethernet1``, ``Management1``, ``Port-Channel10`` (sub-mode
    ``config-if-Et1``), a ``! Command: show running-config`` header, ``copy``, ``write``
    and ``configure replace`` that ask nothing (``Copy completed successfully.``), and
    **configure sessions** (``configure session NAME``: lines go to the session's copy
    of the config; ``commit`` applies them all at once, ``abort`` drops them; the
    prompt shows ``config-s-`` and the name's first six characters).
    """

    platform = "arista_eos"
    indent = "   "
    config_sessions = True
    asks = False

    INTERFACE_TYPES: tuple[str, ...] = (
        "Ethernet",
        "Management",
        "Loopback",
        "Port-Channel",
        "Vlan",
        "Vxlan",
        "Tunnel",
    )
    GLOBAL_WORDS = IosDialect.GLOBAL_WORDS | _words("management daemon")
    _PREFIX = re.compile(IosDialect._IPV4.pattern + r"/(?:3[0-2]|[12]?\d)")

    def section_mode(self, parent: Sequence[str] | None, words: Sequence[str]) -> str | None:
        mode = super().section_mode(parent, words)
        if mode in ("config-if", "config-subif") and len(words) > 1:
            name = self.interface_name(words[1:2]) or words[1]
            number = re.sub(r"^[A-Za-z-]+", "", name)
            return f"config-if-{name[:2]}{number}"
        if mode == "config-vlan":
            return f"config-vlan-{words[1]}"
        return mode

    def check(self, top_level: bool, words: Sequence[str], negated: bool) -> tuple[str, int] | None:
        first = words[0].lower()
        args = [w.lower() for w in words[1:3]]
        prefixed = len(words) > 2 and "/" in words[2]
        if not negated and first == "ip" and args[:1] == ["address"] and prefixed:
            if not self._PREFIX.fullmatch(words[2]):
                return INVALID, 2
            return (INVALID, 3) if len(words) > 3 and words[3:] != ["secondary"] else None
        return super().check(top_level, words, negated)

    def terminal(self, args: Sequence[str]) -> str:
        if args[:1] and "width".startswith(args[0].lower()) and len(args) > 1:
            return f"Width set to {args[1]} columns."
        if args[:1] and "length".startswith(args[0].lower()):
            return "Pagination disabled."
        return ""

    def running_header(self, body: str) -> str:
        host = re.search(r"^hostname (\S+)$", body, re.MULTILINE)
        device = host.group(1) if host else "localhost"
        return f"! Command: show running-config\n! device: {device} (vEOS-lab, EOS-4.31.2F)\n"

    def startup_header(self, body: str) -> str:
        return "! Command: show startup-config\n"

    def version(self, hostname: str, booted: float, serial: str) -> str:
        return (
            "Arista vEOS-lab\n"
            "Hardware version:\n"
            f"Serial number: {serial}\n"
            "System MAC address: 5254.0012.3456\n"
            "\n"
            "Software image version: 4.31.2F\n"
            "Architecture: x86_64\n"
            "Internal build version: 4.31.2F-rookery\n"
            "\n"
            f"Uptime: {_uptime(time.time() - booted)}\n"
            "Total memory: 3985032 kB\n"
            "Free memory: 2543132 kB"
        )

    def sample(self, name: str) -> str:
        digest = hashlib.sha256(name.encode()).digest()
        octet2, octet3, vlan = digest[0], digest[1], 100 + digest[2] % 800
        return (
            f"hostname {name}\n!\n"
            "spanning-tree mode mstp\n!\n"
            f"vlan {vlan}\n   name users\n!\n"
            "interface Ethernet1\n"
            f"   description uplink of {name}\n"
            "   no switchport\n"
            f"   ip address 10.{octet2}.{octet3}.1/30\n!\n"
            "interface Ethernet2\n   description access\n   switchport access vlan "
            f"{vlan}\n!\n"
            f"interface Loopback0\n   ip address 192.0.2.{octet3}/32\n!\n"
            "interface Management1\n   ip address 127.0.0.1/8\n!\n"
            "ip routing\n!\n"
            f"snmp-server location rack-{octet2}\n!\n"
            "end\n"
        )


EOS = EosDialect()


class XrDialect(IosDialect):
    """Cisco IOS-XR: a **candidate** configuration and a commit database.

    No ``enable`` (a login lands at ``RP/0/RP0/CPU0:host#``); ``configure`` starts a
    candidate (a copy of the running config) that ``commit`` applies and records as a
    commit (ids from 1000000001, ``show configuration commit list [N]``); ``abort``
    drops it, and ``end`` with uncommitted changes asks (yes: commit, no: drop,
    cancel: stay). ``rollback configuration last N`` undoes the last N commits (itself a
    commit). Addresses are ``ipv4 address A.B.C.D M.M.M.M``; interfaces
    ``GigabitEthernet0/0/0/0``, ``Loopback0``, ``Bundle-Ether1``.
    """

    platform = "cisco_xr"
    commits = True
    enables = False
    prompt_prefix = "RP/0/RP0/CPU0:"

    INTERFACE_TYPES: tuple[str, ...] = (
        "GigabitEthernet",
        "TenGigE",
        "HundredGigE",
        "Loopback",
        "Bundle-Ether",
        "BVI",
        "tunnel-te",
        "Null",
    )
    GLOBAL_WORDS = IosDialect.GLOBAL_WORDS | _words("ipv4 ssh domain")
    SECTION_WORDS = IosDialect.SECTION_WORDS | _words("ipv4")
    GLOBAL_ONLY = (*IosDialect.GLOBAL_ONLY, ("ssh", "server"), ("domain", "name"))
    SINGLE_VALUED = (*IosDialect.SINGLE_VALUED, re.compile(r"^ipv4 address (?!.*\bsecondary$)"))

    def check(self, top_level: bool, words: Sequence[str], negated: bool) -> tuple[str, int] | None:
        if not negated and words[0].lower() == "ipv4" and words[1:2] == ["address"]:
            values = words[2:]
            if len(values) < 2:
                return INCOMPLETE, 0
            for index, value in enumerate(values[:2]):
                if not self._IPV4.fullmatch(value):
                    return INVALID, 2 + index
            return None
        return super().check(top_level, words, negated)

    def running_header(self, body: str) -> str:
        return "Building configuration...\n!! IOS XR Configuration 7.9.2\n"

    def version(self, hostname: str, booted: float, serial: str) -> str:
        return (
            "Cisco IOS XR Software, Version 7.9.2\n"
            "Copyright (c) 2013-2024 by Cisco Systems, Inc.\n"
            "\n"
            "Build Information:\n"
            " Built By     : rookery stateful emulator\n"
            "\n"
            f"cisco IOS-XRv 9000 () processor\n"
            f"System uptime is {_uptime(time.time() - booted)}"
        )

    def sample(self, name: str) -> str:
        digest = hashlib.sha256(name.encode()).digest()
        octet2, octet3 = digest[0], digest[1]
        return (
            f"hostname {name}\n!\n"
            "interface Loopback0\n"
            f" ipv4 address 192.0.2.{octet3} 255.255.255.255\n!\n"
            "interface GigabitEthernet0/0/0/0\n"
            f" description uplink of {name}\n"
            f" ipv4 address 10.{octet2}.{octet3}.1 255.255.255.252\n!\n"
            "interface GigabitEthernet0/0/0/1\n shutdown\n!\n"
            f"snmp-server location rack-{octet2}\n!\n"
            "ssh server v2\n!\n"
            "end\n"
        )


XR = XrDialect()


# --------------------------------------------------------------------------- Junos

#: Junos statements that open a container of one word (``system {``)
JUNOS_CONTAINERS = _words(
    """system services login syslog interfaces protocols routing-options policy-options
    firewall snmp vlans security chassis forwarding-options class-of-service
    routing-instances applications ntp bgp ospf ospf3 isis lldp rstp mstp static
    ethernet-switching-options event-options"""
)
#: statements that open a container named by the word after them (``unit 0 {``)
JUNOS_PAIRED = _words(
    """unit family group neighbor area term interface user class community
    policy-statement route prefix-list filter vlan"""
)
#: containers whose children are all containers named by their first word
#: (``interfaces { ge-0/0/0 { ... } }``)
JUNOS_NAMED = _words("interfaces vlans routing-instances")
#: leaves that hold many values (``address``); any other leaf replaces its old value
JUNOS_MULTI = _words("address member members server name-server")
#: the top of the hierarchy: a ``set`` starting with another word is a syntax error
JUNOS_TOP = JUNOS_CONTAINERS | _words("version apply-groups groups")
_JUNOS_TOKEN = re.compile(r'"[^"]*"|\S+')


def junos_words(text: str) -> list[str]:
    """A statement's words, a quoted string as one (quotes kept)."""
    return _JUNOS_TOKEN.findall(text)


class JunosConfig:
    """A Junos configuration: a tree of statements (a container has children, a leaf
    not), changed by ``set`` and ``delete`` as Junos changes it, printed in braces
    (``show configuration``) or as ``set`` commands (``| display set``). Where a
    ``set`` path opens containers comes from the tables above (Junos knows it from its
    schema): a heuristic good for the usual stanzas, not all of Junos."""

    def __init__(self, text: str = "") -> None:
        self.root = _Line("")
        self.load(text)

    def load(self, text: str) -> None:
        root = _Line("")
        stack = [root]
        for raw in text.replace("\r\n", "\n").split("\n"):
            line = raw.strip()
            if not line or line.startswith(("#", "/*")):
                continue
            if line == "}":
                if len(stack) > 1:
                    stack.pop()
                continue
            if line.endswith("{"):
                node = _Line(" ".join(junos_words(line[:-1])))
                stack[-1].children.append(node)
                stack.append(node)
            else:
                stack[-1].children.append(_Line(" ".join(junos_words(line.rstrip(";")))))
        self.root = root

    # -- text out ------------------------------------------------------------------------

    def body(self) -> str:
        out: list[str] = []

        def walk(node: _Line, depth: int) -> None:
            for child in node.live():
                pad = "    " * depth
                if child.live():
                    out.append(f"{pad}{child.text} {{")
                    walk(child, depth + 1)
                    out.append(f"{pad}}}")
                else:
                    out.append(f"{pad}{child.text};")

        walk(self.root, 0)
        return "\n".join(out) + "\n"

    def show(self) -> str:
        return self.body()

    def display_set(self) -> str:
        out: list[str] = []

        def walk(node: _Line, path: list[str]) -> None:
            for child in node.live():
                if child.live():
                    walk(child, [*path, child.text])
                else:
                    out.append("set " + " ".join([*path, child.text]))

        walk(self.root, [])
        return "\n".join(out)

    def hostname(self) -> str | None:
        system = self.root.find("system")
        for child in system.live() if system is not None else ():
            words = child.text.split()
            if len(words) == 2 and words[0] == "host-name" and not child.live():
                return words[1]
        return None

    def has(self, text: str) -> bool:
        return self.root.find(text) is not None

    # -- set and delete -------------------------------------------------------------------

    def set(self, words: Sequence[str]) -> str | None:
        """``set <words>``; the error Junos would print, or None."""
        if not words or words[0] not in JUNOS_TOP:
            return "syntax error."
        chain, rest = self._walk(words)
        node = chain[-1]
        while rest:
            parent_named = node.text.split()[:1] != [] and node.text.split()[0] in JUNOS_NAMED
            head = rest[0]
            if head in JUNOS_CONTAINERS and len(rest) > 1:
                take = 1
            elif head in JUNOS_PAIRED and len(rest) > 2:
                take = 2
            elif parent_named and len(rest) > 1:
                take = 1
            elif len(rest) <= 2 or parent_named:
                self._leaf(node, rest)
                return None
            else:
                take = 1
            child = _Line(" ".join(rest[:take]))
            node.children.append(child)
            node, rest = child, rest[take:]
        return None

    def delete(self, words: Sequence[str]) -> str | None:
        """``delete <words>``; a warning when there is no such statement."""
        chain, rest = self._walk(words)
        if not rest:
            if len(chain) < 2:
                return "warning: statement not found"
            chain[-2].children.remove(chain.pop())
        else:
            text = " ".join(rest)
            found = next(
                (
                    c
                    for c in chain[-1].live()
                    if c.text == text or (len(rest) == 1 and c.text.split()[0] == rest[0])
                ),
                None,
            )
            if found is None:
                return "warning: statement not found"
            chain[-1].children.remove(found)
        # containers left empty go too (a bare one would print as a leaf)
        while len(chain) > 1 and not chain[-1].children:
            chain[-2].children.remove(chain.pop())
        return None

    def _walk(self, words: Sequence[str]) -> tuple[list[_Line], list[str]]:
        """The existing containers along ``words`` (root first) and the words left."""
        node, rest = self.root, list(words)
        chain = [node]
        while rest:
            step = next(
                (
                    c
                    for c in node.live()
                    if c.live()
                    and rest[: len(c.text.split())] == junos_words(c.text)
                    and len(rest) >= len(junos_words(c.text))
                ),
                None,
            )
            if step is None:
                break
            node, rest = step, rest[len(junos_words(step.text)) :]
            chain.append(node)
        return chain, rest

    def _leaf(self, node: _Line, words: Sequence[str]) -> None:
        text = " ".join(words)
        if node.find(text) is not None:
            return
        if len(words) > 1 and words[0] not in JUNOS_MULTI:
            for child in node.live():
                if not child.live() and child.text.split()[0] == words[0]:
                    child.text = text
                    return
        node.children.append(_Line(text))


class JunosDialect(IosDialect):
    """Juniper Junos: its own CLI (``_JunosSession``) and config (``JunosConfig``); of
    ``IosDialect`` it keeps only the shape the lab's device code reads."""

    platform = "juniper_junos"
    commits = True
    enables = False
    refused = "syntax error."

    def new_config(self, text: str) -> Any:
        return JunosConfig(text)

    def running_header(self, body: str) -> str:
        return ""

    def version(self, hostname: str, booted: float, serial: str) -> str:
        return (
            f"Hostname: {hostname}\n"
            "Model: vmx\n"
            "Junos: 21.4R3.15\n"
            f"JUNOS OS Kernel 64-bit  [20221115.2d3ad0c_builder_stable_12]\n"
            f"Chassis serial {serial}"
        )

    def sample(self, name: str) -> str:
        digest = hashlib.sha256(name.encode()).digest()
        octet2, octet3 = digest[0], digest[1]
        return (
            "version 21.4R3.15;\n"
            "system {\n"
            f"    host-name {name};\n"
            "    services {\n"
            "        ssh;\n"
            "    }\n"
            "}\n"
            "interfaces {\n"
            "    ge-0/0/0 {\n"
            f'        description "uplink of {name}";\n'
            "        unit 0 {\n"
            "            family inet {\n"
            f"                address 10.{octet2}.{octet3}.1/30;\n"
            "            }\n"
            "        }\n"
            "    }\n"
            "    lo0 {\n"
            "        unit 0 {\n"
            "            family inet {\n"
            f"                address 192.0.2.{octet3}/32;\n"
            "            }\n"
            "        }\n"
            "    }\n"
            "}\n"
            "snmp {\n"
            f"    location rack-{octet2};\n"
            "}\n"
        )


JUNOS = JunosDialect()

#: platform -> the dialect its devices speak
DIALECTS: dict[str, IosDialect] = {
    IOS.platform: IOS,
    EOS.platform: EOS,
    XR.platform: XR,
    JUNOS.platform: JUNOS,
}
#: the platforms a StatefulLab emulates
PLATFORMS: tuple[str, ...] = tuple(DIALECTS)

# --------------------------------------------------------------------------- the config


@dataclass(eq=False)
class _Line:
    """One configuration line and its children; a ghost is a removed line kept for its
    place (a line added again goes back there)."""

    text: str
    children: list[_Line] = field(default_factory=list)
    ghost: bool = False

    def live(self) -> list[_Line]:
        return [child for child in self.children if not child.ghost]

    def find(self, text: str) -> _Line | None:
        return next((c for c in self.children if not c.ghost and c.text == text), None)

    def bury(self) -> None:
        self.ghost = True
        for child in self.children:
            child.bury()


@dataclass(frozen=True)
class Applied:
    """The outcome of one configuration line: the section path after it and, when the
    line was refused, the message and the index of the word the caret marks."""

    path: tuple[str, ...]
    error: str | None = None
    caret: int = 0


_BANNER = re.compile(r"^banner\s+(\S+)\s+(\^C|\S)(.*)$", re.IGNORECASE | re.DOTALL)
_SKIPPED = re.compile(
    r"^(?:!.*|Building configuration\.\.\.|Current configuration\s*:.*|Using \d+ out of \d+ bytes)$"
)


def _collapse(line: str) -> str:
    words = line.split()
    if words and words[0].lower() in ("description", "remark") and len(words) > 1:
        return words[0].lower() + " " + line.strip()[len(words[0]) :].strip()
    return " ".join(words)


class RunningConfig:
    """A device's configuration as a tree of lines, changed as IOS's configuration mode
    changes it. Not thread-safe (the lab holds a lock around it)."""

    def __init__(self, text: str = "", dialect: IosDialect = IOS) -> None:
        self.dialect = dialect
        self.root = _Line("")
        self.load(text)

    # -- text in and out -----------------------------------------------------------------

    def load(self, text: str) -> None:
        """Replace everything with ``text`` (a running config, headers and ``!`` ignored)."""
        self.root = _parse(text, self.dialect)

    def body(self) -> str:
        """The configuration as a file holds it: ``!`` ... ``end``."""
        out = ["!"]
        for node in self.root.live():
            if node.live() or self._opens(None, node.text):
                if out[-1] != "!":
                    out.append("!")
                out.extend(_render(node, 0, self.dialect.indent))
                out.append("!")
            else:
                out.append(node.text)
        if out[-1] != "!":
            out.append("!")
        out.append("end")
        return "\n".join(out) + "\n"

    def show(self) -> str:
        """What ``show running-config`` prints."""
        body = self.body()
        return self.dialect.running_header(body) + body

    def section(self, header: str) -> str | None:
        """``show running-config interface X``: that section alone, or None."""
        node = self.root.find(header)
        if node is None:
            return None
        body = "!\n" + "\n".join(_render(node, 0, self.dialect.indent)) + "\nend\n"
        return self.dialect.running_header(body) + body

    # -- reading -------------------------------------------------------------------------

    def hostname(self) -> str | None:
        for node in self.root.live():
            words = node.text.split()
            if len(words) == 2 and words[0] == "hostname":
                return words[1]
        return None

    def has(self, text: str) -> bool:
        return self.root.find(text) is not None

    def interfaces(self) -> list[tuple[str, list[str]]]:
        """(name, its lines) of every interface."""
        return [
            (node.text.split(maxsplit=1)[1], [c.text for c in node.live()])
            for node in self.root.live()
            if node.text.startswith("interface ") and len(node.text.split()) == 2
        ]

    def commands_to(self, target: RunningConfig) -> list[str]:
        """The lines that turn this config into ``target`` (IOS's rollback configlet)."""
        return _diff(self.root, target.root, 0, self.dialect.indent)

    # -- configuration mode --------------------------------------------------------------

    def resolve(self, path: Sequence[str]) -> list[_Line]:
        """The section nodes of ``path`` that still exist (a prefix of it)."""
        nodes = [self.root]
        for text in path:
            child = nodes[-1].find(text)
            if child is None:
                break
            nodes.append(child)
        return nodes

    def apply(self, path: Sequence[str], line: str) -> Applied:
        """Apply one configuration-mode line typed in section ``path``."""
        nodes = self.resolve(path)
        path = tuple(node.text for node in nodes[1:])
        words = line.split()
        if not words:
            return Applied(path)
        if line.strip().lower() == "exit" or words[0].lower().startswith("exit-"):
            return Applied(path[:-1])
        negated = words[0].lower() in ("no", "default")
        body = self.dialect.canonical(words[1:] if negated else words)
        if negated and not body:
            return Applied(path, INCOMPLETE)
        level = self._level(path, body)
        error = self.dialect.check(level == 0, body, negated)
        if error is not None:
            message, index = error
            return Applied(path, message, index + (1 if negated else 0))
        parent = nodes[level]
        free_text = not negated and body[0] in ("description", "remark")
        text = _collapse(line) if free_text else " ".join(body)
        if negated:
            self._negate(parent, text, words[0].lower() == "default")
            return Applied(path[:level])
        node = self._add(parent, text)
        header = path[level - 1].split() if level else None
        if node.live() or self._opens(header, node.text):
            return Applied((*path[:level], node.text))
        return Applied(path[:level])

    def merge(self, text: str) -> list[str]:
        """Apply a file's lines as configuration mode would (``copy flash:x running-config``);
        a line without indentation starts at top level. Returns the refusals."""
        errors = []
        path: tuple[str, ...] = ()
        for raw in _parse_lines(text):
            if raw[:1] not in (" ", "\t"):
                path = ()
            banner = _BANNER.match(raw)
            if banner is not None:
                kind, delimiter, rest = banner.groups()
                self.add_banner(kind, rest.split(delimiter, 1)[0])
                continue
            result = self.apply(path, raw)
            if result.error:
                errors.append(f"{raw.strip()}\n{result.error}")
            path = result.path
        return errors

    def add_banner(self, kind: str, message: str) -> None:
        """``banner <kind>`` with its (multi-line) message, replacing the old one."""
        self._add(self.root, f"banner {kind.lower()} ^C{message}^C")

    def _opens(self, parent: Sequence[str] | None, text: str) -> bool:
        return self.dialect.section_mode(parent, text.split()) is not None

    def mode_name(self, path: Sequence[str]) -> str:
        nodes = self.resolve(path)
        if len(nodes) == 1:
            return "config"
        parent = nodes[-2].text.split() if len(nodes) > 2 else None
        words = nodes[-1].text.split()
        return self.dialect.section_mode(parent, words) or self.dialect.default_mode(words)

    def _level(self, path: tuple[str, ...], words: list[str]) -> int:
        """Where a line typed in ``path`` applies: a line opening a section of an enclosing
        level, or one valid only at top level, leaves the current section(s)."""
        for level in range(len(path), -1, -1):
            parent = path[level - 1].split() if level else None
            if self.dialect.section_mode(parent, words) is not None:
                return level
        if self.dialect.global_only(words):
            return 0
        return len(path)

    def _add(self, parent: _Line, text: str) -> _Line:
        words = text.split()
        for child in parent.live():
            # the line ends what a shown ``no`` line said: ``ip address ..`` ends ``no ip address``
            negated = child.text.split()
            if negated[0] == "no" and words[: len(negated) - 1] == negated[1:]:
                child.bury()
                if negated[1:] == words and self.dialect.shown_negated(words):
                    return child  # back to the default: no line at all
        if self.dialect.shown_negated(words):
            return _Line(text)  # on by default: never shown
        existing = parent.find(text)
        if existing is not None:
            return existing
        key = self.dialect.single_value_key(text)
        if key is not None:
            for child in parent.live():
                if self.dialect.single_value_key(child.text) == key:
                    child.text = text
                    return child
        for child in parent.children:
            if child.ghost and (
                child.text == text
                or (key is not None and self.dialect.single_value_key(child.text) == key)
            ):
                child.text = text
                child.ghost = False
                return child
        # IOS keeps like commands together: after the last sibling of the same first word
        node = _Line(text)
        first = text.split()[0]
        same = [
            i for i, c in enumerate(parent.children) if not c.ghost and c.text.split()[0] == first
        ]
        parent.children.insert(same[-1] + 1 if same else len(parent.children), node)
        return node

    def _negate(self, parent: _Line, text: str, default: bool) -> None:
        words = text.split()
        if default and words[0] == "interface":
            node = parent.find(text)
            for child in node.live() if node is not None else ():
                child.bury()
            return
        removed = False
        for child in parent.live():
            if child.text.split()[: len(words)] == words:
                child.bury()
                removed = True
        shown = next((c for c in parent.children if c.ghost and c.text == "no " + text), None)
        if removed and shown is not None:
            shown.ghost = False  # the line the device showed before: ``no ip address``
        if removed or default or not self.dialect.shown_negated(words):
            return
        if parent.find("no " + text) is None:
            self._add(parent, "no " + text)


def _parse_lines(text: str) -> Iterator[str]:
    """The configuration lines of a text (banners as one line), without comments,
    headers or the closing ``end``."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    index = 0
    while index < len(lines):
        raw = lines[index].rstrip()
        index += 1
        stripped = raw.strip()
        if not stripped or _SKIPPED.match(stripped) or raw == "end":
            continue
        banner = _BANNER.match(stripped)
        if banner is not None and raw == stripped:
            kind, delimiter, rest = banner.groups()
            parts = [rest]
            while delimiter not in "\n".join(parts) and index < len(lines):
                parts.append(lines[index])
                index += 1
            message = "\n".join(parts).split(delimiter, 1)[0]
            yield f"banner {kind.lower()} ^C{message}^C"
            continue
        yield raw


def _parse(text: str, dialect: IosDialect) -> _Line:
    root = _Line("")
    stack: list[tuple[int, _Line]] = [(-1, root)]
    for raw in _parse_lines(text):
        indent = len(raw) - len(raw.lstrip())
        while stack[-1][0] >= indent:
            stack.pop()
        stripped = raw.strip()
        words = dialect.canonical(stripped.split())
        if stripped.startswith("banner ") or words[0] in ("description", "remark"):
            text = _collapse(stripped) if not stripped.startswith("banner ") else stripped
        else:
            text = " ".join(words)
        node = _Line(text)
        stack[-1][1].children.append(node)
        stack.append((indent, node))
    return root


def _render(node: _Line, depth: int, indent: str) -> list[str]:
    out = [indent * depth + node.text]
    for child in node.live():
        out.extend(_render(child, depth + 1, indent))
    return out


def _diff(current: _Line, target: _Line, depth: int, indent: str) -> list[str]:
    out: list[str] = []
    pad = indent * depth
    wanted = {child.text for child in target.live()}
    for child in current.live():
        if child.text not in wanted:
            out.append(f"{pad}no {child.text}")
    for child in target.live():
        mine = current.find(child.text)
        if mine is None:
            out.extend(_render(child, depth, indent))
            continue
        inner = _diff(mine, child, depth + 1, indent)
        if inner:
            out.append(pad + child.text)
            out.extend(inner)
    return out


# --------------------------------------------------------------------------- device state


@dataclass(frozen=True)
class Received:
    """One line a device received: its SSH session (1, 2 ... per device), the prompt it
    was typed at, the line, and the message it was refused with (None: accepted)."""

    session: int
    prompt: str
    command: str
    refused: str | None = None


@dataclass
class _Rule:
    pattern: re.Pattern[str]
    message: str
    where: str
    times: int | None


@dataclass
class _File:
    text: str
    modified: float


@dataclass(frozen=True)
class _Commit:
    """One entry of an IOS-XR commit database: the config right after it."""

    id: int
    when: float
    user: str
    body: str
    comment: str = ""
    #: how it was made, as Junos shows it (``commit confirmed, rollback in 5mins``)
    how: str = ""


#: AAA sending logins to a server group: ``aaa authentication login default group ...``
_AAA_LOGIN = re.compile(r"^aaa authentication login default group \S+")


class _Device:
    """One device's state, shared by its sessions and the lab's API (under ``lock``)."""

    def __init__(self, spec: LabDevice, dialect: IosDialect) -> None:
        self.spec = spec
        self.dialect = dialect
        self.lock = threading.RLock()
        text = spec.config if spec.config is not None else dialect.sample(spec.name)
        self.initial = dialect.new_config(text).body()
        self.serial = "FGL" + hashlib.sha256(spec.name.encode()).hexdigest()[:8].upper()
        self.connections: set[Any] = set()
        self.sessions = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.running = self.dialect.new_config(self.initial)
            self.startup: str | None = self.initial
            self.flash: dict[str, _File] = {}
            self.rules: list[_Rule] = []
            self.fail_after: tuple[int, str] | None = None
            self.accepted = 0
            self.shows: dict[str, list[tuple[re.Pattern[str] | None, str]]] = {}
            self.rollback_error: str | None = None
            self.hang_seconds = 0.0
            self.hang_pattern: re.Pattern[str] | None = None
            self.history: list[Received] = []
            self.booted = time.time()
            #: pending configure sessions (EOS): name -> the session's copy of the config
            self.config_sessions: dict[str, RunningConfig] = {}
            #: the commit database (IOS-XR, Junos), newest last
            self.commits: list[_Commit] = []
            #: Junos: the shared candidate (None: the running config), and the token of
            #: the commit confirmed that waits for its confirming commit
            self.candidate: Any = None
            self.pending_confirm: object | None = None
            if self.dialect.commits:
                self.record_commit("system")

    def record_commit(self, user: str, comment: str = "", how: str = "") -> _Commit:
        """The running config as a new commit (IOS-XR, Junos)."""
        last = self.commits[-1].id if self.commits else 1_000_000_000
        entry = _Commit(last + 1, time.time(), user, self.running.body(), comment, how)
        self.commits.append(entry)
        return entry

    @property
    def hostname(self) -> str:
        with self.lock:
            return self.running.hostname() or self.spec.name

    def quiet(self) -> bool:
        return self.running.has("file prompt quiet")

    def locked_out(self) -> bool:
        """New logins fail: AAA sends them to a server group with no ``local`` fallback,
        and the lab has no TACACS+ or RADIUS server (the classic lock-out change)."""
        with self.lock:
            body = self.running.body()
        return any(_AAA_LOGIN.match(line) and " local" not in line for line in body.splitlines())

    def refusal(self, command: str, where: str) -> str | None:
        """The message a fault rule refuses ``command`` with (counting it), or None."""
        for rule in self.rules:
            if rule.where not in (where, "any") or not rule.pattern.search(command):
                continue
            if rule.times is not None:
                if rule.times <= 0:
                    continue
                rule.times -= 1
            return rule.message
        if where == "config" and self.fail_after is not None:
            limit, message = self.fail_after
            if self.accepted >= limit:
                return message
        return None

    def show_override(self, command: str) -> str | None:
        entries = self.shows.get(_command_key(command))
        if not entries:
            return None
        config = self.running.body()
        for when, text in reversed(entries):
            if when is None or when.search(config):
                return text
        return None


def _command_key(command: str) -> str:
    return " ".join(command.lower().split())


# --------------------------------------------------------------------------- the CLI

#: exec commands: keywords abbreviate to a unique prefix; None takes any arguments
EXEC_GRAMMAR: dict[str, Any] = {
    "show": {
        "running-config": None,
        "startup-config": None,
        "version": None,
        "flash:": None,
        "clock": None,
        "ip": {"interface": {"brief": None}},
        "privilege": None,
    },
    "configure": {"terminal": None, "replace": None},
    "copy": None,
    "write": {"memory": None, "": None},
    "terminal": None,
    "enable": None,
    "disable": None,
    "exit": None,
    "logout": None,
    "quit": None,
    "dir": None,
    "delete": None,
    "more": None,
}
#: IOS-XR adds its commit database and a bare ``configure`` (terminal)
XR_GRAMMAR: dict[str, Any] = {
    **EXEC_GRAMMAR,
    "show": {**EXEC_GRAMMAR["show"], "configuration": {"commit": {"list": None}}},
    "configure": {"terminal": None, "": None},
    "rollback": {"configuration": {"last": None, "to": None}},
}
#: what IOS-XR asks when configuration mode is left with a candidate not committed
UNCOMMITTED = "Uncommitted changes found, commit them before exiting(yes/no/cancel)? [cancel]:"
#: what IOS-XR says when a commit (or a rollback's commit) fails
FAILED_COMMIT = (
    "% Failed to commit one or more configuration items during a pseudo-atomic operation. "
    "All changes made have been reverted."
)
#: EOS adds ``configure session NAME`` and a bare ``configure`` (terminal)
EOS_GRAMMAR: dict[str, Any] = {
    **EXEC_GRAMMAR,
    "configure": {"terminal": None, "replace": None, "session": None, "": None},
}
#: what EOS prints after a copy or ``write memory``
COPIED_EOS = "Copy completed successfully."
#: what may be typed at ``host>``
USER_COMMANDS = frozenset({"enable", "exit", "logout", "quit", "terminal", "show"})
PIPES = ("include", "exclude", "begin", "section", "count")
ROLLBACK_WARNING = (
    "This will apply all necessary additions and deletions\n"
    "to replace the current running configuration with the\n"
    "contents of the specified configuration file, which is\n"
    "assumed to be a complete configuration, not a partial\n"
    "configuration. Enter Y if you are sure you want to proceed. ? [no]: "
)


def _expand(words: Sequence[str], grammar: dict[str, Any]) -> tuple[list[str], int | None, bool]:
    """Words with keywords in full; the index of the first unknown keyword (None: all
    known) and whether a keyword was ambiguous."""
    out: list[str] = []
    node: Any = grammar
    for index, word in enumerate(words):
        if node is None:
            return out + list(words[index:]), None, False
        lowered = word.lower()
        matches = [key for key in node if key.startswith(lowered) or key == lowered + ":"]
        exact = [key for key in matches if key in (lowered, lowered + ":")]
        if exact:
            matches = exact
        if not matches:
            return out + list(words[index:]), index, False
        if len(matches) > 1:
            return out + list(words[index:]), index, True
        out.append(matches[0])
        node = node[matches[0]]
    if isinstance(node, dict) and node and "" not in node:
        return out, len(words), False  # incomplete
    return out, None, False


def _pipe(text: str, spec: str) -> str | None:
    """``text`` through ``| include X`` (and the others); None for an unknown filter."""
    words = spec.split(maxsplit=1)
    if not words:
        return None
    kinds = [kind for kind in PIPES if kind.startswith(words[0].lower())]
    if len(kinds) != 1:
        return None
    kind = kinds[0]
    expression = words[1] if len(words) > 1 else ""
    try:
        pattern = re.compile(expression)
    except re.error:
        pattern = re.compile(re.escape(expression))
    lines = text.split("\n")
    if kind == "include":
        lines = [line for line in lines if pattern.search(line)]
    elif kind == "exclude":
        lines = [line for line in lines if not pattern.search(line)]
    elif kind == "begin":
        starts = [i for i, line in enumerate(lines) if pattern.search(line)]
        lines = lines[starts[0] :] if starts else []
    elif kind == "section":
        blocks: list[list[str]] = []
        for line in lines:
            if line[:1] in (" ", "\t") and blocks:
                blocks[-1].append(line)
            else:
                blocks.append([line])
        lines = [
            line
            for block in blocks
            if any(pattern.search(line) for line in block)
            for line in block
        ]
    else:
        count = sum(1 for line in lines if pattern.search(line))
        return f"Number of lines which match regexp = {count}"
    return "\n".join(lines)


def _caret(prompt: str, raw: str, index: int) -> str:
    """The ``^`` line under word ``index`` of the typed line."""
    spans = [m.start() for m in re.finditer(r"\S+", raw)]
    column = spans[min(index, len(spans) - 1)] if spans else 0
    if index >= len(spans) and spans:
        column = len(raw.rstrip()) + 1
    return " " * (len(prompt) + column) + "^"


def _flash_name(url: str) -> str | None:
    """``flash:name``, ``flash:/name`` or ``bootflash:name`` -> ``name``."""
    match = re.fullmatch(r"(?:boot)?flash:/?([^/\s]*)", url, re.IGNORECASE)
    return match.group(1) if match else None


def _config_file(url: str) -> str | None:
    """``running-config`` / ``startup-config`` for their names and abbreviations."""
    lowered = url.lower()
    for name in ("running-config", "startup-config"):
        if lowered in (name, f"system:{name}", f"nvram:{name}") or (
            len(lowered) >= 3 and name.startswith(lowered)
        ):
            return name
    return None


@dataclass
class _Silent:
    """Output not followed by a prompt (a banner is being typed)."""

    text: str


@dataclass
class _Ask:
    """A question: printed without a prompt; the next line typed answers it."""

    text: str
    answer: Callable[[str], Any]
    secret: bool = False


class _Session:
    """The CLI of one SSH session (a PTY shell; the session does the echo)."""

    def __init__(self, process: Any, device: _Device, lab: StatefulLab) -> None:
        self.process = process
        self.device = device
        self.lab = lab
        self.number = next(device.sessions)
        self.mode = ">"  # ">", "#" or "config"
        self.path: tuple[str, ...] = ()
        self.asking: _Ask | None = None
        self.banner: tuple[str, str, list[str]] | None = None  # kind, delimiter, lines
        self.config_session: str | None = None  # EOS: the configure session typed into
        #: what configuration mode edits when not the running config: an EOS session's
        #: copy, an IOS-XR candidate
        self.candidate: RunningConfig | None = None
        if not device.dialect.enables:
            self.mode = "#"

    @property
    def config(self) -> RunningConfig:
        """The config configuration mode changes: the running config, or a candidate."""
        return self.candidate if self.candidate is not None else self.device.running

    @property
    def prompt(self) -> str:
        host = self.device.dialect.prompt_prefix + self.device.hostname
        if self.mode != "config":
            return host + self.mode
        with self.device.lock:
            mode = self.config.mode_name(self.path)
        if self.config_session is not None:
            mode = f"config-s-{self.config_session[:6]}{mode[len('config') :]}"
        return f"{host}({mode})#"

    @property
    def echo(self) -> bool:
        return not (self.asking is not None and self.asking.secret)

    async def run(self) -> None:
        import asyncssh

        write = self.process.stdout.write
        line: list[str] = []
        skip_lf = False
        try:
            write(f"\r\n{self.prompt}")
            while True:
                data = await self.process.stdin.read(4096)
                if not data:
                    break
                out: list[str] = []
                for ch in data:
                    if skip_lf and ch == "\n":
                        skip_lf = False
                        continue
                    skip_lf = ch == "\r"
                    if ch in "\r\n\x1a":
                        out.append("\r\n")
                        write("".join(out))
                        out = []
                        typed = "end" if ch == "\x1a" and self.mode == "config" else "".join(line)
                        line = []
                        reply = await self.handle(typed)
                        if reply is None:
                            self.process.exit(0)
                            return
                        write(reply)
                    elif ch in "\x08\x7f":
                        if line:
                            line.pop()
                            if self.echo:
                                out.append("\x08 \x08")
                    elif ch == "\x03":  # Ctrl-C
                        line = []
                        self.asking = self.banner = None
                        out.append(f"\r\n{self.prompt}")
                    elif ch >= " " or ch == "\t":
                        line.append(ch)
                        if self.echo:
                            out.append(ch)
                if out:
                    write("".join(out))
        except (asyncssh.BreakReceived, asyncssh.TerminalSizeChanged):
            pass
        except (BrokenPipeError, ConnectionError, asyncssh.Error):
            return
        self.process.exit(0)

    # -- one line ------------------------------------------------------------------------

    async def handle(self, raw: str) -> str | None:
        """What to write after the echoed line: output and the next prompt (None: hang up)."""
        if self.asking is not None:
            ask, self.asking = self.asking, None
            if not ask.secret:
                self._log(raw.strip())
            with self.device.lock:
                return self._format(ask.answer(raw.strip()))
        if self.banner is not None:
            self._log(raw)
            return self._banner_line(raw)
        command = raw.strip()
        if not command:
            return self.prompt
        prompt = self.prompt
        await self._hang(command)
        with self.device.lock:
            if self.mode == "config":
                reply = self._configure(raw, prompt)
            else:
                refused = self.device.refusal(command, "exec")
                if refused is not None:
                    self._log(command, prompt, refused)
                    reply = _error(refused, prompt, raw, 0)
                else:
                    self._log(command, prompt)
                    reply = self._exec(command, raw, prompt)
        return self._format(reply)

    def _format(self, reply: Any) -> str | None:
        if reply is None:
            return None
        if isinstance(reply, _Ask):
            self.asking = reply
            return _crlf(reply.text)
        if isinstance(reply, _Silent):
            return _crlf(reply.text)
        if reply == "":
            return self.prompt
        return _crlf(reply) + "\r\n" + self.prompt

    def _log(self, command: str, prompt: str | None = None, refused: str | None = None) -> None:
        if not command:
            return
        with self.device.lock:
            self.device.history.append(
                Received(self.number, prompt or self.prompt, command, refused)
            )

    async def _hang(self, command: str) -> None:
        device = self.device
        started = time.monotonic()
        while (
            device.hang_seconds > 0
            and (device.hang_pattern is None or device.hang_pattern.search(command))
            and time.monotonic() - started < device.hang_seconds
            and self.lab.running
        ):
            await asyncio.sleep(0.05)

    # -- configuration mode --------------------------------------------------------------

    def _configure(self, raw: str, prompt: str) -> Any:
        command = raw.strip()
        words = command.split()
        first = words[0].lower()
        device = self.device
        if command.lower() == "end" or (command.lower() == "exit" and not self.path):
            self._log(command, prompt)
            if device.dialect.commits and self._uncommitted():
                return _Ask(UNCOMMITTED, self._uncommitted_answer)
            self._leave()
            return ""
        if device.dialect.commits and first in ("commit", "abort"):
            self._log(command, prompt)
            if first == "abort":
                self._leave()
                return ""
            return self._commit()
        if command.lower() == "exit" or first.startswith("exit-"):
            self._log(command, prompt)
            self.path = self.config.apply(self.path, command).path
            return ""
        if self.config_session is not None and command.lower() in ("commit", "abort"):
            self._log(command, prompt)
            pending = device.config_sessions.pop(self.config_session)
            if command.lower() == "commit":
                device.running = pending
            self._leave()
            return ""
        if first == "do" and len(words) > 1:
            self._log(command, prompt)
            return self._exec(" ".join(words[1:]), raw.replace(words[0], "  ", 1), prompt)
        refused = device.refusal(command, "config")
        if refused is not None:
            self._log(command, prompt, refused)
            return _error(refused, prompt, raw, 0)
        banner = _BANNER.match(command)
        if banner is not None:
            self._log(command, prompt)
            kind, delimiter, rest = banner.groups()
            if delimiter in rest:
                return self._apply_banner(kind, rest.split(delimiter, 1)[0])
            self.banner = (kind, delimiter, [rest])
            shown = "^" if delimiter == "^C" else delimiter
            return _Silent(f"Enter TEXT message.  End with the character '{shown}'.\n")
        result = self.config.apply(self.path, command)
        self._log(command, prompt, result.error)
        if result.error is not None:
            return _error(result.error, prompt, raw, result.caret)
        device.accepted += 1
        self.path = result.path
        return ""

    def _leave(self) -> None:
        """Back to exec mode: an IOS-XR candidate is dropped, an EOS session stays pending."""
        self.mode, self.path, self.config_session, self.candidate = "#", (), None, None

    def _uncommitted(self) -> bool:
        return self.candidate is not None and self.candidate.body() != self.device.running.body()

    def _uncommitted_answer(self, answer: str) -> Any:
        word = answer.lower()
        if word in ("yes", "y"):
            output = self._commit()
            self._leave()
            return output
        if word in ("no", "n"):
            self._leave()
        return ""

    def _commit(self) -> str:
        """IOS-XR ``commit``: the candidate becomes the running config, a new commit."""
        device = self.device
        assert self.candidate is not None
        if not self._uncommitted():
            return "% No configuration changes to commit."
        device.running = self.candidate
        self.candidate = copy.deepcopy(device.running)
        device.record_commit(device.spec.username)
        return ""

    def _banner_line(self, raw: str) -> str:
        assert self.banner is not None
        kind, delimiter, parts = self.banner
        parts.append(raw)
        text = "\n".join(parts)
        if delimiter not in text:
            return ""
        self.banner = None
        with self.device.lock:
            return self._format(self._apply_banner(kind, text.split(delimiter, 1)[0])) or ""

    def _apply_banner(self, kind: str, message: str) -> str:
        self.config.add_banner(kind, message)
        self.device.accepted += 1
        self.path = ()
        return ""

    # -- exec mode -----------------------------------------------------------------------

    def _exec(self, command: str, raw: str, prompt: str) -> Any:
        device = self.device
        main, _, pipe = command.partition("|")
        words = main.split()
        grammar = (
            EOS_GRAMMAR
            if device.dialect.config_sessions
            else XR_GRAMMAR
            if device.dialect.commits
            else EXEC_GRAMMAR
        )
        expanded, bad, ambiguous = _expand(words, grammar)
        privileged = self.mode != ">"
        override = device.show_override(main) or device.show_override(" ".join(expanded))
        if override is not None and words and words[0].lower().startswith("sh"):
            output: Any = override
        elif ambiguous:
            return f'% Ambiguous command:  "{main.strip()}"\n'
        elif bad is not None:
            if bad >= len(words):
                return INCOMPLETE + "\n"
            return _error(INVALID, prompt, raw, bad)
        elif not privileged and expanded[0] not in USER_COMMANDS:
            return _error(INVALID, prompt, raw, 0)
        else:
            output = self._run(expanded, raw, prompt, privileged)
        if pipe and isinstance(output, str):
            filtered = _pipe(output, pipe)
            if filtered is None:
                return _error(INVALID, prompt, raw, len(words) + 1)
            output = filtered
        return output

    def _run(self, words: list[str], raw: str, prompt: str, privileged: bool) -> Any:
        device = self.device
        head, args = words[0], words[1:]
        if head in ("exit", "logout", "quit"):
            return None if self.mode != "config" else ""
        if head == "terminal":
            return device.dialect.terminal(args)
        if head == "enable":
            if self.mode != ">":
                return ""
            if device.spec.enable_secret is None:
                self.mode = "#"
                return ""
            return _Ask("Password: ", self._enable, secret=True)
        if head == "disable":
            self.mode = ">"
            return ""
        if head == "show":
            return self._show(args, raw, prompt, privileged)
        if head == "rollback":
            return self._rollback_commits(args[1:], raw, prompt)
        if head == "configure":
            if args[:1] == ["session"]:
                return self._session(args[1:], raw, prompt)
            if args[:1] == ["replace"]:
                return self._replace(args[1:], raw, prompt)
            self.mode, self.path = "config", ()
            if device.dialect.commits:
                self.candidate = copy.deepcopy(device.running)
            if device.dialect.asks and not device.dialect.commits:
                return "Enter configuration commands, one per line.  End with CNTL/Z."
            return ""
        if head == "write":
            device.startup = device.running.body()
            return "Building configuration...\n[OK]" if device.dialect.asks else COPIED_EOS
        if head == "copy":
            return self._copy(args, raw, prompt)
        if head == "dir":
            return self._dir(args[0] if args else "flash:", raw, prompt)
        if head == "delete":
            return self._delete(args, raw, prompt)
        if head == "more":
            name = _flash_name(args[0]) if args else None
            if not args:
                return INCOMPLETE + "\n"
            file = device.flash.get(name or "")
            if file is None:
                return f"%Error opening {args[0]} (No such file or directory)\n"
            return file.text.rstrip("\n")
        return _error(INVALID, prompt, raw, 0)

    def _enable(self, secret: str) -> str:
        if secret == self.device.spec.enable_secret:
            self.mode = "#"
            return ""
        return "% Access denied\n"

    def _show(self, args: list[str], raw: str, prompt: str, privileged: bool) -> Any:
        device = self.device
        what = args[0]
        if what in ("running-config", "startup-config", "flash:") and not privileged:
            return _error(INVALID, prompt, raw, 1)
        if what == "running-config":
            rest = args[1:]
            if rest and rest[0].lower().startswith("int"):
                name = device.dialect.interface_name(rest[1:3]) or " ".join(rest[1:])
                section = device.running.section(f"interface {name}")
                if section is None:
                    return _error(INVALID, prompt, raw, 3)
                return section.rstrip("\n")
            return device.running.show().rstrip("\n")
        if what == "startup-config":
            if device.startup is None:
                return "startup-config is not present"
            return (device.dialect.startup_header(device.startup) + device.startup).rstrip("\n")
        if what == "version":
            return device.dialect.version(device.hostname, device.booted, device.serial)
        if what == "clock":
            now = datetime.now(UTC)
            return (
                now.strftime("*%H:%M:%S.")
                + f"{now.microsecond // 1000:03d}"
                + now.strftime(" UTC %a %b %d %Y")
            )
        if what == "flash:":
            return self._dir("flash:", raw, prompt)
        if what == "ip":
            return _ip_interface_brief(device.running)
        if what == "configuration":
            return self._commit_list(args[3:], raw, prompt)
        if what == "privilege":
            return f"Current privilege level is {15 if privileged else 1}"
        return _error(INVALID, prompt, raw, 1)

    def _commit_list(self, args: list[str], raw: str, prompt: str) -> str:
        """``show configuration commit list [N]``: newest first."""
        if args and not args[0].isdigit():
            return _error(INVALID, prompt, raw, 4)
        entries = list(reversed(self.device.commits))[: int(args[0]) if args else None]
        lines = [
            "SNo. Label/ID              User      Line                Client      Time Stamp",
            "~~~~ ~~~~~~~~              ~~~~      ~~~~                ~~~~~~      ~~~~~~~~~~",
        ]
        for number, entry in enumerate(entries, 1):
            stamp = datetime.fromtimestamp(entry.when, UTC).strftime("%a %b %d %H:%M:%S %Y")
            lines.append(
                f"{number:<4} {entry.id:<21} {entry.user[:9]:<9} vty0:node0_RP0_CPU0 "
                f"CLI         {stamp}"
            )
        return "\n".join(lines)

    def _rollback_commits(self, args: list[str], raw: str, prompt: str) -> str:
        """``rollback configuration last N``: the config as it was before the last N
        commits, applied as a new commit; ``to ID``: as it was right after commit ID."""
        device = self.device
        if len(args) != 2 or not args[1].isdigit():
            return INCOMPLETE + "\n" if len(args) < 2 else _error(INVALID, prompt, raw, 3)
        how, value = args[0], int(args[1])
        if how == "last":
            if not 0 < value < len(device.commits):
                most = len(device.commits) - 1
                return f"% Invalid commit count {value}: {most} can be rolled back"
            target = device.commits[-1 - value]
        else:
            found = [entry for entry in device.commits if entry.id == value]
            if not found:
                return f"% Commit ID {value} was not found in the commit database"
            target = found[0]
        steps = ["Loading Rollback Changes.", "Loaded Rollback Changes in 1 sec", "Committing."]
        if device.rollback_error is not None:
            return "\n".join([*steps, FAILED_COMMIT, device.rollback_error])
        changed = RunningConfig(device.running.body(), device.dialect).commands_to(
            RunningConfig(target.body, device.dialect)
        )
        device.running = RunningConfig(target.body, device.dialect)
        device.record_commit(device.spec.username)
        done = f"{value} commits." if how == "last" else f"'{value}'."
        return "\n".join(
            [
                *steps,
                f"{len(changed)} items committed in 1 sec ({len(changed)})items/sec",
                "Updating.",
                "Updated Commit database in 1 sec",
                f"Configuration successfully rolled back {'to ' if how == 'to' else ''}{done}",
            ]
        )

    def _dir(self, url: str, raw: str, prompt: str) -> str:
        if _flash_name(url) != "":
            return _error(INVALID, prompt, raw, 1)
        files = sorted(self.device.flash.items())
        used = sum(len(file.text.encode()) for _, file in files)
        lines = ["Directory of flash:/", ""]
        for index, (name, file) in enumerate(files, 1):
            stamp = datetime.fromtimestamp(file.modified, UTC).strftime("%b %d %Y %H:%M:%S")
            lines.append(f"{index:>5}  -rw-  {len(file.text.encode()):>10}  {stamp} +00:00  {name}")
        if not files:
            lines.append("No files in directory")
        lines += ["", f"{FLASH_SIZE} bytes total ({FLASH_SIZE - used} bytes free)"]
        return "\n".join(lines)

    def _copy(self, args: list[str], raw: str, prompt: str) -> Any:
        device = self.device
        if len(args) < 2:
            return INCOMPLETE + "\n"
        source, target = args[0], args[1]
        source_file, target_file = _config_file(source), _config_file(target)
        source_flash, target_flash = _flash_name(source), _flash_name(target)
        if source_file is None and source_flash is None:
            return _error(INVALID, prompt, raw, 1)
        if (target_file is None and target_flash is None) or target_flash == "":
            return _error(INVALID, prompt, raw, 2)
        if source_file == "running-config":
            text: str | None = device.running.body()
        elif source_file == "startup-config":
            text = device.startup
        else:
            file = device.flash.get(source_flash or "")
            text = file.text if file is not None else None
        if text is None:
            return f"%Error opening {source} (No such file or directory)\n"
        default = target_file or target_flash or ""

        def finish(name: str) -> Any:
            return self._copy_to(text, target_file, name)

        if device.quiet() or not device.dialect.asks:
            return finish(default)

        def destination(answer: str) -> Any:
            name = answer or default
            if target_file is None and name in device.flash:
                return _Ask(
                    "%Warning:There is a file already existing with this name \n"
                    "Do you want to over write? [confirm]",
                    lambda yes: finish(name) if yes.lower() in ("", "y", "yes") else "",
                )
            return finish(name)

        return _Ask(f"Destination filename [{default}]? ", destination)

    def _copy_to(self, text: str, target_file: str | None, name: str) -> str:
        device = self.device
        size = len(text.encode())
        copied = f"{size} bytes copied in 0.012 secs ({size * 83} bytes/sec)"
        if not device.dialect.asks:
            copied = COPIED_EOS
        if target_file == "startup-config":
            device.startup = text
            if text == device.running.body() and device.dialect.asks:
                return "Building configuration...\n[OK]"
            return copied
        if target_file == "running-config":
            errors = device.running.merge(text)
            return "\n".join([copied, *errors])
        name = _flash_name(name) if ":" in name else name
        if not name:
            return "%Error opening flash: (Is a directory)\n"
        device.flash[name] = _File(text, time.time())
        return copied

    def _delete(self, args: list[str], raw: str, prompt: str) -> Any:
        device = self.device
        force = any(arg.lower() == "/force" for arg in args)
        urls = [arg for arg in args if not arg.startswith("/")]
        if not urls:
            return INCOMPLETE + "\n"
        name = _flash_name(urls[0])
        if not name:
            return _error(INVALID, prompt, raw, args.index(urls[0]) + 1)

        def remove(_answer: str = "") -> str:
            if device.flash.pop(name, None) is None:
                return f"%Error deleting flash:/{name} (No such file or directory)\n"
            return ""

        if force or device.quiet() or not device.dialect.asks:
            return remove()
        return _Ask(
            f"Delete filename [{name}]? ",
            lambda _answer: _Ask(f"Delete flash:/{name}? [confirm]", remove),
        )

    def _replace(self, args: list[str], raw: str, prompt: str) -> Any:
        device = self.device
        if not args:
            return INCOMPLETE + "\n"
        url = args[0]
        options = {arg.lower() for arg in args[1:]}
        if url.lower() in ("nvram:startup-config", "startup-config"):
            text = device.startup
        else:
            name = _flash_name(url)
            if not name:
                return _error(INVALID, prompt, raw, 2)
            file = device.flash.get(name)
            text = file.text if file is not None else None
        if text is None:
            return f"%Error opening {url} (No such file or directory)\n"

        def proceed(answer: str = "y") -> str:
            if answer.lower() not in ("y", "yes"):
                return ""
            return self._rollback(text, "list" in options)

        if "force" in options or not device.dialect.asks:
            return proceed()
        return _Ask(ROLLBACK_WARNING, proceed)

    def _session(self, args: list[str], raw: str, prompt: str) -> str:
        """EOS ``configure session [NAME]``: a new session starts as a copy of the
        running config; typing the name of a pending one goes back into it."""
        device = self.device
        name = args[0] if args else f"session{next(device.sessions)}"
        if len(args) > 1 or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            return _error(INVALID, prompt, raw, 3 if len(args) > 1 else 2)
        if name not in device.config_sessions:
            device.config_sessions[name] = copy.deepcopy(device.running)
        self.mode, self.path, self.config_session = "config", (), name
        self.candidate = device.config_sessions[name]
        return ""

    def _rollback(self, text: str, listing: bool) -> str:
        device = self.device
        target = RunningConfig(text, device.dialect)
        commands = device.running.commands_to(target)
        if device.rollback_error is not None and not device.dialect.asks:
            return f"% Configuration replace failed: {device.rollback_error}"
        if device.rollback_error is not None:
            return "\n".join(
                [
                    "The rollback configlet from the last pass is listed below:",
                    "********",
                    "!List of Rollback Commands:",
                    *commands,
                    "end",
                    "********",
                    "",
                    "",
                    device.rollback_error,
                ]
            )
        device.running = target
        if not device.dialect.asks:
            return ""
        out = []
        if listing and commands:
            out += ["!Pass 1", "!List of Commands:", *commands, "end"]
        out += [f"Total number of passes: {1 if commands else 0}", "Rollback Done"]
        return "\n".join(out)


#: what Junos asks when configuration mode is left with changes not committed
JUNOS_UNCOMMITTED = (
    "The configuration has been changed but not committed\nExit with uncommitted changes? "
    "[yes,no] (yes) "
)
#: Junos's default ``commit confirmed`` minutes
JUNOS_CONFIRM_MINUTES = 10


class _JunosSession(_Session):
    """The Junos CLI of one SSH session: operational mode (``user@host> ``) and
    configuration mode (``[edit]``, ``user@host# ``) editing the device's shared
    candidate with ``set``/``delete``; ``commit [check] [confirmed [N]] [comment "x"]
    [and-quit]``, ``rollback N`` (loads commit N into the candidate), ``show | compare``,
    ``run``; ``show system commit`` lists the commits, newest first, with comments. A
    ``commit confirmed N`` not confirmed by another commit within N minutes (the lab's
    ``minute`` seconds each) is rolled back by the device itself."""

    def __init__(self, process: Any, device: _Device, lab: StatefulLab) -> None:
        super().__init__(process, device, lab)
        self.mode = ">"

    @property
    def prompt(self) -> str:
        host = f"{self.device.spec.username}@{self.device.hostname}"
        if self.mode == "config":
            return f"\r\n[edit]\r\n{host}# "
        return f"{host}> "

    @property
    def candidate_config(self) -> JunosConfig:
        device = self.device
        if device.candidate is None:
            device.candidate = copy.deepcopy(device.running)
        return device.candidate

    def _uncommitted(self) -> bool:
        device = self.device
        return device.candidate is not None and device.candidate.body() != device.running.body()

    # -- operational mode ------------------------------------------------------------------

    def _exec(self, command: str, raw: str, prompt: str) -> Any:
        device = self.device
        main, _, pipe = command.partition("|")
        words = main.split()
        override = device.show_override(main)
        if override is not None and words[0].startswith("sh"):
            return self._pipe(override, pipe)
        if words[:2] == ["show", "configuration"]:
            if "display set" in pipe:
                return device.running.display_set()
            last = device.commits[-1]
            stamp = datetime.fromtimestamp(last.when, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            return self._pipe(
                f"## Last commit: {stamp} by {last.user}\n{device.running.show()}", pipe
            )
        if words[:3] == ["show", "system", "commit"]:
            return self._commit_list()
        if words[:2] == ["show", "version"]:
            return device.dialect.version(device.hostname, device.booted, device.serial)
        if words[:2] == ["set", "cli"] and len(words) > 2:
            return {
                "screen-width": f"Screen width set to {words[-1]}",
                "screen-length": f"Screen length set to {words[-1]}",
                "complete-on-space": "Disabling complete-on-space",
            }.get(words[2], "")
        if words[0] == "configure":
            self.mode, self.path = "config", ()
            changed = self._uncommitted()
            self.candidate_config  # noqa: B018 - the shared candidate exists from now on
            note = "\nThe configuration has been changed but not committed" if changed else ""
            return "Entering configuration mode" + note
        if words[0] in ("exit", "quit"):
            return None
        return _junos_error("unknown command.", prompt, raw, 0)

    def _pipe(self, text: str, pipe: str) -> str:
        spec = pipe.strip()
        if spec.startswith("match "):
            pattern = re.compile(spec.split(maxsplit=1)[1])
            return "\n".join(line for line in text.split("\n") if pattern.search(line))
        return text.rstrip("\n")

    def _commit_list(self) -> str:
        lines = []
        for index, entry in enumerate(reversed(self.device.commits)):
            stamp = datetime.fromtimestamp(entry.when, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            how = f" {entry.how}" if entry.how else ""
            lines.append(f"{index:<3} {stamp} by {entry.user} via cli{how}")
            if entry.comment:
                lines.append(f"    {entry.comment}")
        return "\n".join(lines)

    # -- configuration mode ----------------------------------------------------------------

    def _configure(self, raw: str, prompt: str) -> Any:
        device = self.device
        command = raw.strip()
        words = junos_words(command)
        first = words[0]
        refused = device.refusal(command, "config")
        if refused is not None:
            self._log(command, prompt, refused)
            return _junos_error(refused, prompt, raw, 0)
        self._log(command, prompt)
        if first in ("set", "delete"):
            config = self.candidate_config
            said = config.set(words[1:]) if first == "set" else config.delete(words[1:])
            if said is not None and first == "set":
                device.history[-1] = Received(self.number, prompt, command, said)
                return _junos_error(said, prompt, raw, 1)
            device.accepted += 1
            return said or ""
        if first == "commit":
            return self._commit(words[1:])
        if first == "rollback":
            number = int(words[1]) if len(words) > 1 and words[1].isdigit() else 0
            if number >= len(device.commits):
                return f"error: rollback {number} does not exist"
            device.candidate = JunosConfig(device.commits[-1 - number].body)
            return "load complete"
        if first == "show":
            if "compare" in command:
                return _compare(device.running.body(), self.candidate_config.body())
            return self.candidate_config.show().rstrip("\n")
        if first == "run":
            return self._exec(" ".join(words[1:]), raw, prompt)
        if first in ("exit", "quit"):
            if self._uncommitted():
                return _Ask(JUNOS_UNCOMMITTED, self._exit_answer)
            return self._leave_config()
        if first in ("top", "up"):
            return ""
        return _junos_error("unknown command.", prompt, raw, 0)

    def _exit_answer(self, answer: str) -> str:
        if answer.lower() in ("", "y", "yes"):
            return self._leave_config()
        return ""

    def _leave_config(self) -> str:
        self.mode, self.path = ">", ()
        return "Exiting configuration mode"

    def _commit(self, args: list[str]) -> str:
        device = self.device
        if args[:1] == ["check"]:
            return "configuration check succeeds"
        confirmed = "confirmed" in args
        minutes = JUNOS_CONFIRM_MINUTES
        if confirmed:
            after = args[args.index("confirmed") + 1 : args.index("confirmed") + 2]
            minutes = int(after[0]) if after and after[0].isdigit() else minutes
        comment = ""
        if "comment" in args and args.index("comment") + 1 < len(args):
            comment = args[args.index("comment") + 1].strip('"')
        previous = device.running.body()
        device.running = copy.deepcopy(self.candidate_config)
        device.candidate = None
        how = f"commit confirmed, rollback in {minutes}mins" if confirmed else ""
        device.record_commit(device.spec.username, comment, how)
        device.pending_confirm = None  # any commit confirms the one before
        lines = []
        if confirmed:
            token = object()
            device.pending_confirm = token
            asyncio.get_running_loop().call_later(
                minutes * self.lab.minute, self._confirm_timed_out, token, previous
            )
            lines.append(
                f"commit confirmed will be automatically rolled back in {minutes} minutes "
                "unless confirmed"
            )
        lines.append("commit complete")
        if "and-quit" in args:
            lines.append(self._leave_config())
        return "\n".join(lines)

    def _confirm_timed_out(self, token: object, previous: str) -> None:
        device = self.device
        with device.lock:
            if device.pending_confirm is not token:
                return  # confirmed, or the device was reset
            device.pending_confirm = None
            device.running = JunosConfig(previous)
            device.record_commit("root", how="rollback (commit confirmed timed out)")


def _junos_error(message: str, prompt: str, raw: str, index: int) -> str:
    """A refusal as Junos prints it: a ``^`` under the word, then the message."""
    return f"{_caret(prompt.split(chr(10))[-1], raw, index)}\n{message}\n"


def _compare(before: str, after: str) -> str:
    """``show | compare``, as a unified diff of the two configs' lines."""
    import difflib

    lines = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    return "\n".join(line for line in lines if not line.startswith(("---", "+++", "@@")))


def _ip_interface_brief(running: RunningConfig) -> str:
    lines = ["Interface              IP-Address      OK? Method Status                Protocol"]
    for name, children in running.interfaces():
        address = next(
            (c.split()[2] for c in children if c.startswith("ip address ") and len(c.split()) > 2),
            "unassigned",
        )
        method = "unset" if address == "unassigned" else "manual"
        down = "shutdown" in children
        status = "administratively down" if down else "up"
        protocol = "down" if down else "up"
        lines.append(f"{name:<23}{address:<16}YES {method:<7}{status:<22}{protocol}")
    return "\n".join(lines)


def _error(message: str, prompt: str, raw: str, index: int) -> str:
    """A refusal as IOS prints it: the ``^`` marker line when the message points at it."""
    if "'^' marker" in message:
        return f"{_caret(prompt, raw, index)}\n{message}\n"
    return message.rstrip("\n") + "\n"


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


# --------------------------------------------------------------------------- the lab


@functools.cache
def _server_class() -> type:
    """An asyncssh server class checking one device's credentials (asyncssh imported here)."""
    import asyncssh

    class DeviceServer(asyncssh.SSHServer):
        def __init__(self, device: _Device) -> None:
            self._device = device
            self._conn: Any = None

        def connection_made(self, conn: Any) -> None:
            self._conn = conn
            with self._device.lock:
                self._device.connections.add(conn)

        def connection_lost(self, exc: Exception | None) -> None:
            with self._device.lock:
                self._device.connections.discard(self._conn)

        def begin_auth(self, username: str) -> bool:
            return True

        def password_auth_supported(self) -> bool:
            return True

        def validate_password(self, username: str, password: str) -> bool:
            spec = self._device.spec
            if self._device.locked_out():
                return False
            return username == spec.username and password == spec.password

    return DeviceServer


class StatefulLab(LoopThread):
    """Stateful cisco_ios devices on 127.0.0.1, served by an asyncio loop in a thread.

    The shape of ``app.demo_lab.DeviceLab``: ``start``/``stop`` (or ``with``), ``devices``
    (``LabDevice`` with host and port), ``port_of``, ``netmiko_params``, ``config_of``,
    ``set_config``, ``reset``; plus the device's other state (``startup_of``,
    ``flash_of``, ``set_file``), fault injection (``fail_command``, ``fail_after``,
    ``set_show``, ``break_rollback``, ``hang``, ``clear_faults``) and what each device
    received (``commands_of``, ``history``). Every method may be called from any thread
    while the lab runs.
    """

    def __init__(
        self, devices: Iterable[LabDevice], *, quiet: bool = True, minute: float = 60.0
    ) -> None:
        """``minute``: how many seconds a Junos ``commit confirmed N`` minute lasts (a
        test makes it short)."""
        self.minute = minute
        self._specs: dict[str, LabDevice] = {}
        for spec in devices:
            if spec.name in self._specs:
                raise ValueError(f"duplicate device name {spec.name!r}")
            if spec.platform not in DIALECTS:
                raise ValueError(
                    f"{spec.name}: the stateful lab emulates {', '.join(PLATFORMS)}, "
                    f"not {spec.platform!r}"
                )
            self._specs[spec.name] = spec
        self._devices = {
            name: _Device(spec, DIALECTS[spec.platform]) for name, spec in self._specs.items()
        }
        super().__init__()
        self._listeners: list[Any] = []
        self._key: Any = None
        self._quiet = quiet

    # -- reading -------------------------------------------------------------------------

    @property
    def devices(self) -> list[LabDevice]:
        return list(self._specs.values())

    @property
    def running(self) -> bool:
        return self._loop is not None

    def device(self, name: str) -> LabDevice:
        return self._specs[name]

    def port_of(self, name: str) -> int:
        port = self._specs[name].port
        if port is None:
            raise RuntimeError(f"device {name} is not running")
        return port

    def netmiko_params(self, name: str, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for netmiko's ConnectHandler (``cisco_ios``, fast_cli)."""
        return self._specs[name].netmiko_params(**overrides)

    def inventory(self) -> list[dict[str, Any]]:
        return [spec.inventory_row() for spec in self._specs.values()]

    def config_of(self, name: str) -> str:
        """The running config exactly as ``show running-config`` prints it (``\\n`` ends)."""
        device = self._devices[name]
        with device.lock:
            return device.running.show()

    def startup_of(self, name: str) -> str | None:
        """The startup config (``!`` ... ``end``), None when erased."""
        device = self._devices[name]
        with device.lock:
            return device.startup

    def flash_of(self, name: str) -> dict[str, str]:
        """The device's flash files: file name -> text."""
        device = self._devices[name]
        with device.lock:
            return {file: entry.text for file, entry in device.flash.items()}

    def commands_of(self, name: str) -> list[str]:
        """Every line the device received, in order, across its sessions (login passwords
        and enable secrets are never recorded)."""
        return [entry.command for entry in self.history(name)]

    def history(self, name: str) -> list[Received]:
        """``commands_of`` with each line's session, prompt and refusal."""
        device = self._devices[name]
        with device.lock:
            return list(device.history)

    def host_key(self) -> HostKey:
        """The SSH host key every device of this lab presents (one per lab, kept across
        restarts of the lab), as an ``app.ssh_keys.HostKey``."""
        from app.ssh_keys import parse_public_key

        return parse_public_key(self._host_key().export_public_key("openssh").decode())

    # -- changing state ------------------------------------------------------------------

    def set_config(self, name: str, text: str) -> None:
        """Replace the running config (headers, ``!`` lines and ``end`` are ignored)."""
        device = self._devices[name]
        with device.lock:
            device.running = device.dialect.new_config(text)

    def set_startup(self, name: str, text: str | None) -> None:
        device = self._devices[name]
        with device.lock:
            device.startup = None if text is None else device.dialect.new_config(text).body()

    def set_file(self, name: str, file_name: str, text: str) -> None:
        """Put a file on the device's flash (e.g. a golden config for configure replace)."""
        device = self._devices[name]
        with device.lock:
            device.flash[file_name] = _File(text, time.time())

    def reset(self, name: str | None = None) -> None:
        """Every device (or one) as it started: config, startup, flash, faults, history."""
        for device in self._select(name):
            device.reset()

    # -- faults --------------------------------------------------------------------------

    def fail_command(
        self,
        name: str,
        pattern: str,
        message: str | None = None,
        *,
        times: int | None = None,
        where: str = "config",
    ) -> None:
        """Refuse lines matching the regex ``pattern`` (``re.search`` on the stripped line)
        with ``message`` (None: the platform's usual refusal, ``% Invalid input ...`` or
        Junos ``syntax error.``); they change nothing. ``where``: ``config`` (configuration-mode
        lines but ``end``/``exit``/``do``), ``exec`` or ``any``; ``times``: only the next
        so many matches (None: until ``clear_faults``)."""
        if where not in ("config", "exec", "any"):
            raise ValueError(f"where must be config, exec or any, not {where!r}")
        device = self._devices[name]
        refusal = message if message is not None else device.dialect.refused
        with device.lock:
            device.rules.append(_Rule(re.compile(pattern), refusal, where, times))

    def fail_after(self, name: str, n: int, message: str = INVALID) -> None:
        """Accept ``n`` more configuration lines, then refuse every one after them."""
        device = self._devices[name]
        with device.lock:
            device.accepted = 0
            device.fail_after = (n, message)

    def set_show(self, name: str, command: str, text: str, *, when: str | None = None) -> None:
        """Make ``command`` (a show command, as typed) answer ``text``; with ``when`` (a regex,
        multi-line) only while the running config matches it, so a post-check can start
        failing once a change lands and pass again after a rollback. The latest matching
        ``set_show`` wins; pipes (``| include``) still filter the text."""
        device = self._devices[name]
        pattern = re.compile(when, re.MULTILINE) if when is not None else None
        with device.lock:
            device.shows.setdefault(_command_key(command), []).append((pattern, text))

    def clear_show(self, name: str, command: str | None = None) -> None:
        """Forget ``set_show`` for one command (None: all of them)."""
        device = self._devices[name]
        with device.lock:
            if command is None:
                device.shows.clear()
            else:
                device.shows.pop(_command_key(command), None)

    def break_rollback(
        self, name: str, broken: bool = True, message: str = ROLLBACK_ABORTED
    ) -> None:
        """Make ``configure replace`` fail (running config unchanged), or work again."""
        device = self._devices[name]
        with device.lock:
            device.rollback_error = message if broken else None

    def hang(self, name: str, seconds: float, *, pattern: str | None = None) -> None:
        """Delay the answer to each command (matching ``pattern``, if given) by ``seconds``
        (``math.inf``: until ``hang(name, 0)`` or the lab stops)."""
        device = self._devices[name]
        with device.lock:
            device.hang_seconds = seconds
            device.hang_pattern = re.compile(pattern) if pattern is not None else None

    def clear_faults(self, name: str | None = None) -> None:
        """Undo fail_command, fail_after, set_show, break_rollback and hang."""
        for device in self._select(name):
            with device.lock:
                device.rules.clear()
                device.fail_after = None
                device.shows.clear()
                device.rollback_error = None
                device.hang_seconds = 0.0
                device.hang_pattern = None

    def drop_sessions(self, name: str) -> None:
        """Close every SSH session of the device at once (as a reload would)."""
        device = self._devices[name]
        with device.lock:
            connections = list(device.connections)
        if self._loop is not None:
            for conn in connections:
                self._loop.call_soon_threadsafe(conn.abort)

    # -- lifecycle -----------------------------------------------------------------------

    thread_name = "stateful-lab"

    def _before_start(self) -> None:
        if self._quiet:
            # asyncssh logs every connection and channel at INFO.
            logging.getLogger("asyncssh").setLevel(logging.WARNING)
        self._host_key()

    def _port_holders(self) -> Iterable[LabDevice]:
        return self._specs.values()

    # -- internals -----------------------------------------------------------------------

    def _select(self, name: str | None) -> list[_Device]:
        return list(self._devices.values()) if name is None else [self._devices[name]]

    def _host_key(self) -> Any:
        if self._key is None:
            import asyncssh

            self._key = asyncssh.generate_private_key("ssh-ed25519")
        return self._key

    async def _start(self) -> None:
        import asyncssh

        server = _server_class()

        async def listen(device: _Device) -> Any:
            return await asyncssh.listen(
                LOCALHOST,
                0,
                server_factory=lambda: server(device),
                server_host_keys=[self._key],
                process_factory=lambda process: (
                    _JunosSession if device.dialect is JUNOS else _Session
                )(process, device, self).run(),
                line_editor=False,
                encoding="utf-8",
                keepalive_interval=0,
                login_timeout=30,
            )

        self._listeners = list(
            await asyncio.gather(*(listen(device) for device in self._devices.values()))
        )
        for spec, listener in zip(self._specs.values(), self._listeners, strict=True):
            spec.host = LOCALHOST
            spec.port = listener.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        for listener in self._listeners:
            listener.close()
        for device in self._devices.values():
            with device.lock:
                connections = list(device.connections)
            for conn in connections:
                conn.close()
        for listener in self._listeners:
            await listener.wait_closed()
        self._listeners.clear()
