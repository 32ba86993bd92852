#!/usr/bin/env python
"""A fast SSH emulator for benchmarks: many cisco_ios-like devices in one asyncio process.

    python bench/_fastssh.py [--devices N] [--delay S] [--inventory FILE] [--configs DIR]
        [--config-style sample|fleet] [--shared-credentials]

Each device listens on its own port of 127.0.0.1, checks its own username and password
(and enable secret when it has one) and answers netmiko's ``cisco_ios`` driver (with
fast_cli) at once: ``terminal length 0``, ``terminal width 511``, ``enable``,
``show running-config`` (``show run``), ``show version``, ``configure terminal`` / ``end``,
``exit``. Prompts are ``hostname>`` and ``hostname#``; input is echoed without delay
(FakeNOS waits 10 ms a byte). A backup takes a few milliseconds of emulator time, so
the emulator is rarely what a benchmark measures.

A device prints the sample config of its name (``app.demo_lab.sample_config``, about
400 bytes); with ``--config-style fleet`` a large one instead (``FleetConfigs``: 30-100 KB,
1,000-3,000 lines of interfaces, ACLs, prefix-lists, route-maps, BGP neighbours and
static routes, different for every device name and the same for the same name and
``--seed``, assembled at each ``show running-config`` from blocks made once, in about
0.2 ms). With ``--configs DIR`` it prints ``DIR/<name>.cfg`` instead when that file
exists, read at each ``show running-config``: a benchmark changes a device's config
between two backups by rewriting its file (write a temporary file and rename it over
the old one).

``--shared-credentials`` gives every device the same login (``FLEET_USERNAME`` and a
password derived from ``--seed``), as a large fleet has, so one credential covers it.
Each device holds a listening socket: the process raises its soft limit of open files
(``RLIMIT_NOFILE``) when ``--devices`` needs it, up to the hard limit.

From the command line it prints the inventory as JSON (stdout, or ``--inventory FILE``)
and serves until SIGINT/SIGTERM; run it as its own process so it does not share a GIL
with what is measured. In a process::

    with FastSSHLab(default_fleet(500, ["cisco_ios"])) as lab:
        lab.port_of("ios-001"); lab.set_config("ios-001", "hostname x\\n")

Needs asyncssh (``pip install asyncssh``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import resource
import signal
import sys
import threading
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from app.lab_loop import ASYNCSSH_DSA, LoopThread  # noqa: E402

warnings.filterwarnings("ignore", **ASYNCSSH_DSA)

import asyncssh  # noqa: E402

from app.demo_lab import LOCALHOST, LabDevice, default_fleet, sample_config  # noqa: E402

INVALID = "% Invalid input detected at '^' marker."
#: the login every device has with --shared-credentials (the password derives from --seed)
FLEET_USERNAME = "netops"


def shared_password(seed: str) -> str:
    return "pw-" + hashlib.sha256(f"{seed}:fleet".encode()).hexdigest()[:12]


class FleetConfigs:
    """Large cisco_ios running configs, 30-100 KB each, one per device name.

    Every block (an interface of each kind on each port, an ACL, a prefix-list, a
    route-map, a BGP neighbour with its address-family lines, a static route) is
    rendered once from ``seed``; a device's config picks, with a generator seeded by
    its name, its size, how many of each it has and which, and adds its own lines
    (hostname, loopbacks, router-id, SVIs, SNMP location, timestamps). So configs
    differ from device to device, are the same at each ``show running-config``, and
    cost a join of a few hundred strings, not their rendering. The text is what
    ``show running-config`` prints on IOS: volatile header lines and secrets (type 7
    and type 9 hashes, SNMP communities, TACACS keys, BGP passwords) included, as a
    backup must clean them up.
    """

    SIZE = (32_000, 95_000)  # bytes aimed at, drawn per device (30-100 KB come out)
    PORTS = 384  # GigabitEthernet<1-8>/0/<1-48>
    PORT_KINDS = (6, 1, 1, 2)  # weights of access, trunk, routed and unused ports
    ACLS = 160
    PREFIX_LISTS = 120
    ROUTE_MAPS = 120
    NEIGHBORS = 1000
    STATIC_ROUTES = 2000
    #: what the size left after the fixed lines goes to
    SHARES = {
        "interfaces": 0.35,
        "acls": 0.25,
        "bgp": 0.15,
        "prefix_lists": 0.07,
        "route_maps": 0.08,
        "static": 0.10,
    }

    def __init__(self, seed: str = "rookery") -> None:
        self.seed = seed
        rng = random.Random(f"fleet-blocks:{seed}")
        kinds = (self._access_port, self._trunk_port, self._routed_port, self._unused_port)
        self._ports = [[kind(rng, p) for kind in kinds] for p in range(self.PORTS)]
        self._acls = [self._acl(rng, i) for i in range(self.ACLS)]
        self._prefix_lists = [self._prefix_list(rng, i) for i in range(self.PREFIX_LISTS)]
        self._route_maps = [self._route_map(rng, i) for i in range(self.ROUTE_MAPS)]
        self._neighbors = [self._neighbor(rng, i) for i in range(self.NEIGHBORS)]
        self._static = [self._static_route(rng, i) for i in range(self.STATIC_ROUTES)]

        def mean(blocks: list[str]) -> float:
            return sum(map(len, blocks)) / len(blocks)

        self._mean = {
            "interfaces": sum(
                w * mean([port[kind] for port in self._ports])
                for kind, w in enumerate(self.PORT_KINDS)
            )
            / sum(self.PORT_KINDS),
            "acls": mean(self._acls),
            "bgp": mean([a + b for a, b in self._neighbors]),
            "prefix_lists": mean(self._prefix_lists),
            "route_maps": mean(self._route_maps),
            "static": mean(self._static),
        }
        self._fixed = len(self.config("size-probe", _budget=0))

    # -- the blocks, rendered once -----------------------------------------------------

    @staticmethod
    def _port_name(p: int) -> str:
        return f"GigabitEthernet{p // 48 + 1}/0/{p % 48 + 1}"

    def _access_port(self, rng: random.Random, p: int) -> str:
        vlan = rng.choice((10, 20, 30, 40, 110, 120, 210, 220))
        return (
            f"interface {self._port_name(p)}\n"
            f" description access B{rng.randint(1, 9)}-F{rng.randint(0, 12)}"
            f"-R{rng.randint(1, 40):02d}-J{rng.randint(1, 48):02d}\n"
            f" switchport access vlan {vlan}\n"
            " switchport mode access\n"
            f" switchport voice vlan {vlan + 500}\n"
            " switchport port-security maximum 3\n"
            " switchport port-security violation restrict\n"
            " switchport port-security aging time 2\n"
            " switchport port-security aging type inactivity\n"
            " switchport port-security\n"
            " ip arp inspection limit rate 100\n"
            " authentication event fail action next-method\n"
            " authentication host-mode multi-domain\n"
            " authentication order dot1x mab\n"
            " authentication priority dot1x mab\n"
            " authentication port-control auto\n"
            " authentication periodic\n"
            " authentication timer reauthenticate server\n"
            " mab\n"
            " dot1x pae authenticator\n"
            " dot1x timeout tx-period 10\n"
            " storm-control broadcast level 1.00\n"
            " storm-control action trap\n"
            " spanning-tree portfast\n"
            " spanning-tree bpduguard enable\n"
            " service-policy input QOS-ACCESS-IN\n"
            " ip dhcp snooping limit rate 15\n"
            "!\n"
        )

    def _trunk_port(self, rng: random.Random, p: int) -> str:
        allowed = ",".join(str(v) for v in sorted(rng.sample(range(10, 400, 10), 12)))
        return (
            f"interface {self._port_name(p)}\n"
            f" description uplink to dist-{rng.randint(1, 99):02d} Te1/1/{rng.randint(1, 8)}\n"
            " switchport trunk native vlan 999\n"
            f" switchport trunk allowed vlan {allowed}\n"
            " switchport mode trunk\n"
            " switchport nonegotiate\n"
            f" channel-group {rng.randint(1, 8)} mode active\n"
            " ip arp inspection trust\n"
            " ip dhcp snooping trust\n"
            " service-policy input QOS-TRUST-IN\n"
            "!\n"
        )

    def _routed_port(self, rng: random.Random, p: int) -> str:
        a, b = rng.randint(0, 255), rng.randint(0, 63) * 4
        return (
            f"interface {self._port_name(p)}\n"
            f" description p2p to core-{rng.randint(1, 40):02d} Gi0/0/{rng.randint(0, 7)}\n"
            " no switchport\n"
            f" ip address 10.{rng.randint(200, 250)}.{a}.{b + 1} 255.255.255.252\n"
            " no ip redirects\n"
            " no ip proxy-arp\n"
            " ip ospf authentication message-digest\n"
            f" ip ospf message-digest-key 1 md5 7 {rng.getrandbits(64):016X}\n"
            " ip ospf network point-to-point\n"
            " ip ospf cost 10\n"
            " ip pim sparse-mode\n"
            " load-interval 30\n"
            " bfd interval 250 min_rx 250 multiplier 3\n"
            "!\n"
        )

    def _unused_port(self, rng: random.Random, p: int) -> str:
        return (
            f"interface {self._port_name(p)}\n"
            " description unused\n"
            " switchport access vlan 999\n"
            " switchport mode access\n"
            " shutdown\n"
            " spanning-tree portfast\n"
            " spanning-tree bpduguard enable\n"
            "!\n"
        )

    @staticmethod
    def _host(rng: random.Random) -> str:
        return f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"

    @staticmethod
    def _net(rng: random.Random) -> tuple[str, str]:
        """A subnet and its wildcard mask."""
        length = rng.choice((16, 22, 24, 24, 24, 26, 28))
        host_bits = 32 - length
        base = rng.getrandbits(24) >> host_bits << host_bits
        wildcard = (1 << host_bits) - 1
        addr = f"10.{base >> 16 & 255}.{base >> 8 & 255}.{base & 255}"
        mask = f"0.{wildcard >> 16 & 255}.{wildcard >> 8 & 255}.{wildcard & 255}"
        return addr, mask

    def _acl(self, rng: random.Random, i: int) -> str:
        purpose = rng.choice(("MGMT", "USERS", "VOICE", "PRINTERS", "GUEST", "SERVERS", "PCI"))
        lines = [f"ip access-list extended ACL-{purpose}-{i:03d}\n"]
        for seq in range(10, 10 * rng.randint(8, 60) + 1, 10):
            action = "permit" if rng.random() < 0.8 else "deny"
            proto = rng.choice(("tcp", "tcp", "udp", "ip", "icmp"))
            src, src_mask = self._net(rng)
            dst = f"host {self._host(rng)}" if rng.random() < 0.5 else " ".join(self._net(rng))
            port = ""
            if proto in ("tcp", "udp"):
                port = f" eq {rng.choice((22, 53, 80, 123, 161, 443, 445, 514, 1812, 3389, 8443))}"
            log = " log" if action == "deny" else ""
            lines.append(f" {seq} {action} {proto} {src} {src_mask} {dst}{port}{log}\n")
        lines.append(f" {10 * len(lines)} deny ip any any log\n!\n")
        return "".join(lines)

    def _prefix_list(self, rng: random.Random, i: int) -> str:
        name = f"PL-{rng.choice(('CUST', 'PEER', 'TRANSIT', 'DC', 'BRANCH'))}-{i:03d}"
        lines = []
        for seq in range(5, 5 * rng.randint(3, 25) + 1, 5):
            length = rng.choice((16, 20, 22, 24))
            base = rng.getrandbits(24) >> (32 - length) << (32 - length)
            prefix = f"10.{base >> 16 & 255}.{base >> 8 & 255}.{base & 255}/{length}"
            le = f" le {rng.choice((24, 28, 32))}" if rng.random() < 0.4 else ""
            lines.append(f"ip prefix-list {name} seq {seq} permit {prefix}{le}\n")
        return "".join(lines)

    def _route_map(self, rng: random.Random, i: int) -> str:
        name = f"RM-{rng.choice(('IN', 'OUT'))}-{rng.choice(('CUST', 'PEER', 'DC'))}-{i:03d}"
        lines = []
        for seq in range(10, 10 * rng.randint(2, 6) + 1, 10):
            lines.append(f"route-map {name} permit {seq}\n")
            lines.append(f" match ip address prefix-list PL-{rng.randint(0, 999):03d}\n")
            if rng.random() < 0.5:
                lines.append(f" match community CL-{rng.randint(1, 50)}\n")
            lines.append(f" set local-preference {rng.choice((80, 100, 120, 150, 200))}\n")
            lines.append(f" set community 65000:{rng.randint(100, 999)} additive\n")
            if rng.random() < 0.3:
                lines.append(f" set as-path prepend 65000 65000 {rng.randint(64512, 65534)}\n")
            lines.append("!\n")
        lines.append(f"route-map {name} deny {10 * (len(lines) + 1)}\n!\n")
        return "".join(lines)

    def _neighbor(self, rng: random.Random, i: int) -> tuple[str, str]:
        """A neighbour's lines under ``router bgp``, and its address-family lines."""
        peer = f"172.{16 + i // 250}.{i % 250}.{rng.randint(1, 254)}"
        remote_as = rng.randint(64512, 65534)
        top = [
            f" neighbor {peer} remote-as {remote_as}\n",
            f" neighbor {peer} description eBGP AS{remote_as} "
            f"circuit CID-{rng.getrandbits(32):08X}\n",
            f" neighbor {peer} update-source Loopback0\n",
            f" neighbor {peer} timers 10 30\n",
        ]
        if rng.random() < 0.4:
            top.append(f" neighbor {peer} password 7 {rng.getrandbits(80):020X}\n")
        family = (
            f"  neighbor {peer} activate\n"
            f"  neighbor {peer} send-community both\n"
            f"  neighbor {peer} soft-reconfiguration inbound\n"
            f"  neighbor {peer} route-map RM-IN-PEER-{rng.randint(0, 119):03d} in\n"
            f"  neighbor {peer} route-map RM-OUT-PEER-{rng.randint(0, 119):03d} out\n"
            f"  neighbor {peer} maximum-prefix {rng.choice((100, 1000, 5000))} 80\n"
        )
        return "".join(top), family

    def _static_route(self, rng: random.Random, i: int) -> str:
        net, wildcard = self._net(rng)
        mask = ".".join(str(255 - int(octet)) for octet in wildcard.split("."))
        return f"ip route {net} {mask} {self._host(rng)} name SR-{i:04d}\n"

    # -- a device's config -------------------------------------------------------------

    def config(self, name: str, *, _budget: int | None = None) -> str:
        """The running config of device ``name`` (the same text for the same name)."""
        rng = random.Random(f"{self.seed}:{name}")
        budget = rng.randint(*self.SIZE) if _budget is None else _budget
        left = max(0, budget - getattr(self, "_fixed", 0))

        def count(kind: str, most: int) -> int:
            wanted = round(left * self.SHARES[kind] / self._mean[kind]) if left else 0
            return max(0 if _budget == 0 else 1, min(most, wanted))

        digest = hashlib.sha256(name.encode()).digest()
        o2, o3 = digest[0], digest[1]
        asn = 64512 + (digest[2] << 8 | digest[3]) % 1000
        ports = count("interfaces", self.PORTS)
        kinds = rng.choices(range(4), weights=self.PORT_KINDS, k=ports)
        parts = [
            f"! Last configuration change at {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:"
            f"{rng.randint(0, 59):02d} UTC Mon Mar 4 2024 by netops\n"
            "! NVRAM config last updated at 02:00:11 UTC Sun Mar 3 2024 by netops\n"
            "!\nversion 17.9\n"
            "service timestamps debug datetime msec localtime show-timezone\n"
            "service timestamps log datetime msec localtime show-timezone\n"
            "service password-encryption\nservice sequence-numbers\n"
            "no platform punt-keepalive disable-kernel-core\n!\n"
            f"hostname {name}\n!\n"
            "vrf definition Mgmt-vrf\n !\n address-family ipv4\n exit-address-family\n!\n"
            "logging buffered 64000 informational\nno logging console\n"
            f"enable secret 9 $9$x{digest[4:12].hex()}$Q{digest[12:28].hex()}\n!\n"
            "aaa new-model\naaa group server tacacs+ ISE\n"
            " server name ISE-1\n server name ISE-2\n!\n"
            "aaa authentication login default group ISE local\n"
            "aaa authorization exec default group ISE local if-authenticated\n"
            "aaa accounting exec default start-stop group ISE\n"
            "aaa accounting commands 15 default start-stop group ISE\n!\n"
            "clock timezone UTC 0 0\n"
            "ip domain name net.example.com\nip name-server 10.0.0.53 10.0.1.53\n"
            "ip dhcp snooping vlan 10-400\nip dhcp snooping\nip arp inspection vlan 10-400\n"
            "login on-failure log\nlogin on-success log\n!\n"
            "username netops privilege 15 secret 9 "
            f"$9$n{digest[28:32].hex()}$0{digest[:16].hex()}\n"
            "!\nspanning-tree mode rapid-pvst\nspanning-tree extend system-id\n"
            f"spanning-tree vlan 1-4094 priority {4096 * (digest[5] % 16)}\n!\n"
            "vlan 10\n name USERS\n!\nvlan 20\n name VOICE\n!\nvlan 999\n name PARKING\n!\n"
            "interface Loopback0\n description router-id\n"
            f" ip address 10.255.{o2}.{o3} 255.255.255.255\n!\n"
            f"interface Vlan10\n description users\n ip address 10.{o2}.{o3}.1 255.255.255.0\n"
            " ip helper-address 10.0.0.67\n no ip redirects\n!\n"
            "interface GigabitEthernet0/0\n vrf forwarding Mgmt-vrf\n"
            f" ip address 192.168.{o2}.{o3} 255.255.255.0\n negotiation auto\n!\n",
        ]
        ports_ = self._ports
        parts.extend(ports_[p][kind] for p, kind in enumerate(kinds))
        parts.append(
            "router ospf 1\n"
            f" router-id 10.255.{o2}.{o3}\n"
            " auto-cost reference-bandwidth 100000\n"
            " passive-interface default\n"
            " no passive-interface Vlan10\n"
            f" network 10.{o2}.{o3}.0 0.0.0.255 area 0\n!\n"
            f"router bgp {asn}\n bgp router-id 10.255.{o2}.{o3}\n bgp log-neighbor-changes\n"
        )
        neighbors = [
            self._neighbors[i]
            for i in sorted(rng.sample(range(self.NEIGHBORS), count("bgp", self.NEIGHBORS)))
        ]
        parts.extend(top for top, _ in neighbors)
        parts.append(f" !\n address-family ipv4\n  network 10.{o2}.{o3}.0 mask 255.255.255.0\n")
        parts.extend(family for _, family in neighbors)
        parts.append(
            " exit-address-family\n!\nip forward-protocol nd\n"
            "ip http server\nip http secure-server\n!\n"
        )
        for kind, pool in (
            ("static", self._static),
            ("acls", self._acls),
            ("prefix_lists", self._prefix_lists),
            ("route_maps", self._route_maps),
        ):
            parts.extend(
                pool[i] for i in sorted(rng.sample(range(len(pool)), count(kind, len(pool))))
            )
        parts.append(
            "!\nlogging source-interface Loopback0\nlogging host 10.0.0.14\n!\n"
            "snmp-server community 7xSecretRO RO SNMP-RO\n"
            f"snmp-server location site-{o2:03d} rack-{o3:03d}\n"
            "snmp-server contact noc@example.com\n"
            "snmp-server enable traps snmp authentication linkdown linkup coldstart warmstart\n"
            "snmp-server host 10.0.0.162 version 2c 7xSecretTrap\n!\n"
            "tacacs server ISE-1\n address ipv4 10.0.0.49\n"
            f" key 7 {digest[16:26].hex().upper()}\n!\n"
            "tacacs server ISE-2\n address ipv4 10.0.1.49\n"
            f" key 7 {digest[16:26].hex().upper()}\n!\n"
            "control-plane\n service-policy input COPP\n!\n"
            "banner motd ^C\n"
            "Authorized access only. Disconnect now if you are not authorized.\n^C\n!\n"
            "line con 0\n exec-timeout 10 0\n logging synchronous\n stopbits 1\n"
            "line vty 0 4\n access-class ACL-VTY in vrf-also\n exec-timeout 10 0\n"
            " logging synchronous\n transport input ssh\n"
            "line vty 5 15\n access-class ACL-VTY in vrf-also\n transport input ssh\n!\n"
            "ntp authentication-key 1 md5 7 104D000A0618 7\nntp authenticate\n"
            "ntp trusted-key 1\nntp server 10.0.0.123 key 1 prefer\nntp server 10.0.1.123 key 1\n"
            "!\nend\n"
        )
        body = "".join(parts)
        return f"Building configuration...\n\nCurrent configuration : {len(body)} bytes\n" + body


class _Device:
    """One device's state: what it prints, and how slowly."""

    def __init__(self, spec: LabDevice) -> None:
        self.spec = spec
        self.config = (
            spec.config if spec.config is not None else sample_config("cisco_ios", spec.name)
        )
        self.delay = 0.0  # seconds before the configuration is printed
        self.config_dir: Path | None = None  # <dir>/<name>.cfg, when it exists, wins
        self.generated: FleetConfigs | None = None  # else this, when set, over .config
        self.released = asyncio.Event()
        self.released.set()  # cleared: show running-config hangs

    def running_config(self) -> str:
        if self.config_dir is not None:
            try:
                return (self.config_dir / f"{self.spec.name}.cfg").read_text()
            except FileNotFoundError:
                pass
        if self.generated is not None:
            return self.generated.config(self.spec.name)
        return self.config


class _Server(asyncssh.SSHServer):
    def __init__(self, device: _Device, lab: FastSSHLab) -> None:
        self._device = device
        self._lab = lab

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._lab._connections.add(conn)
        self._conn = conn

    def connection_lost(self, exc: Exception | None) -> None:
        self._lab._connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        spec = self._device.spec
        return username == spec.username and password == spec.password


class _Session:
    """The CLI of one SSH session (a PTY shell; the emulator does the echo)."""

    def __init__(self, process: asyncssh.SSHServerProcess, device: _Device) -> None:
        self.process = process
        self.device = device
        self.name = device.spec.name
        self.mode = ">"  # ">", "#" or "(config)#"
        self.awaiting_secret = False

    @property
    def prompt(self) -> str:
        return f"{self.name}{self.mode}"

    async def run(self) -> None:
        write = self.process.stdout.write
        write(f"\r\n{self.prompt}")
        line: list[str] = []
        skip_lf = False
        try:
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
                    if ch in "\r\n":
                        out.append("\r\n")
                        write("".join(out))
                        out = []
                        reply = await self.handle("".join(line).strip())
                        line = []
                        if reply is None:
                            self.process.exit(0)
                            return
                        write(reply)
                    elif ch in "\x08\x7f":
                        if line:
                            line.pop()
                            if not self.awaiting_secret:
                                out.append("\x08 \x08")
                    elif ch == "\x03":  # Ctrl-C
                        line = []
                        out.append(f"\r\n{self.prompt}")
                    elif ch >= " ":
                        line.append(ch)
                        if not self.awaiting_secret:
                            out.append(ch)
                if out:
                    write("".join(out))
        except (asyncssh.BreakReceived, asyncssh.TerminalSizeChanged):
            pass
        except (BrokenPipeError, ConnectionError, asyncssh.Error):
            return
        self.process.exit(0)

    async def handle(self, command: str) -> str | None:
        """The text after the echoed line: output then the next prompt (None: hang up)."""
        if self.awaiting_secret:
            self.awaiting_secret = False
            if command == self.device.spec.enable_secret:
                self.mode = "#"
                return self.prompt
            return f"% Access denied\r\n\r\n{self.prompt}"
        output = await self.output(command)
        if output is None:
            return None
        if self.awaiting_secret:
            return output  # "Password: ", no prompt
        if output == "":
            return self.prompt
        return output.replace("\r\n", "\n").replace("\n", "\r\n") + "\r\n" + self.prompt

    async def output(self, command: str) -> str | None:
        words = command.split()
        if not words:
            return ""
        first = words[0]
        if first in ("exit", "logout", "quit"):
            if self.mode == "(config)#":
                self.mode = "#"
                return ""
            return None
        if command in ("end", "\x1a") and self.mode == "(config)#":
            self.mode = "#"
            return ""
        if self.mode == "(config)#":
            return ""  # configuration lines are accepted and forgotten
        if command.startswith("terminal "):
            return ""
        if first in ("en", "enable"):
            if self.mode == "#":
                return ""
            if self.device.spec.enable_secret is None:
                self.mode = "#"
                return ""
            self.awaiting_secret = True
            return "Password: "
        if first in ("disable",):
            self.mode = ">"
            return ""
        if command in ("configure terminal", "conf t"):
            if self.mode != "#":
                return INVALID
            self.mode = "(config)#"
            return "Enter configuration commands, one per line.  End with CNTL/Z."
        if command in ("show running-config", "show run"):
            if self.mode != "#":
                return INVALID
            if self.device.delay:
                await asyncio.sleep(self.device.delay)
            await self.device.released.wait()
            return self.device.running_config().rstrip("\n")
        if command in ("show version", "show ver"):
            return (
                "Cisco IOS Software, fastssh emulator, Version 15.9(3)M\n"
                f"{self.name} uptime is 1 week, 2 days, 3 hours, 4 minutes\n"
                "cisco ISR4451-X/K9 processor"
            )
        return INVALID


class FastSSHLab(LoopThread):
    """cisco_ios-like devices on 127.0.0.1, served by an asyncio loop in a thread.

    Same shape as app.demo_lab.DeviceLab: ``start``/``stop`` (or ``with``), ``devices``
    (LabDevice with host/port), ``port_of``, ``set_config``, ``config_of``, plus
    ``set_delay`` (seconds before show running-config answers), ``set_hanging`` and
    ``set_config_dir`` (configs read from ``<dir>/<name>.cfg`` where such a file exists)
    and ``set_generated_configs`` (large configs made at each show running-config).
    """

    def __init__(self, devices: Iterable[LabDevice]) -> None:
        self._specs: dict[str, LabDevice] = {}
        for spec in devices:
            if spec.name in self._specs:
                raise ValueError(f"duplicate device name {spec.name!r}")
            if spec.platform != "cisco_ios":
                raise ValueError(f"{spec.name}: fastssh only emulates cisco_ios")
            self._specs[spec.name] = spec
        self._devices = {name: _Device(spec) for name, spec in self._specs.items()}
        super().__init__()
        self._listeners: list[asyncssh.SSHAcceptor] = []
        self._connections: set[asyncssh.SSHServerConnection] = set()

    # -- reading -----------------------------------------------------------------------

    @property
    def devices(self) -> list[LabDevice]:
        return list(self._specs.values())

    def port_of(self, name: str) -> int:
        port = self._specs[name].port
        if port is None:
            raise RuntimeError(f"device {name} is not running")
        return port

    def config_of(self, name: str) -> str:
        return self._devices[name].config

    def inventory(self) -> list[dict[str, Any]]:
        return [spec.inventory_row() for spec in self._specs.values()]

    # -- changing ----------------------------------------------------------------------

    def set_config(self, name: str, text: str) -> None:
        self._devices[name].config = text

    def set_delay(self, name: str, seconds: float) -> None:
        self._devices[name].delay = seconds

    def set_config_dir(self, folder: Path | None) -> None:
        """Serve ``folder/<name>.cfg`` (read at each show running-config) when it exists."""
        for device in self._devices.values():
            device.config_dir = folder

    def set_generated_configs(self, configs: FleetConfigs | None) -> None:
        """Serve ``configs.config(<name>)`` (unless a config_dir file wins); None: stop."""
        for device in self._devices.values():
            device.generated = configs

    def set_hanging(self, name: str, hanging: bool = True) -> None:
        event = self._devices[name].released
        self._call(event.clear if hanging else event.set)

    # -- lifecycle ---------------------------------------------------------------------

    thread_name = "fastssh"

    def _port_holders(self) -> Iterable[LabDevice]:
        return self._specs.values()

    # -- in the loop -------------------------------------------------------------------

    def _call(self, func: Any) -> None:
        if self._loop is None:
            func()
        else:
            self._loop.call_soon_threadsafe(func)

    async def _start(self) -> None:
        key = asyncssh.generate_private_key("ssh-ed25519")
        for spec in self._specs.values():
            device = self._devices[spec.name]
            listener = await asyncssh.listen(
                LOCALHOST,
                0,
                server_factory=lambda device=device: _Server(device, self),
                server_host_keys=[key],
                process_factory=lambda process, device=device: _Session(process, device).run(),
                line_editor=False,
                encoding="utf-8",
                keepalive_interval=0,
                login_timeout=30,
            )
            self._listeners.append(listener)
            spec.host = LOCALHOST
            spec.port = listener.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        for device in self._devices.values():
            device.released.set()
        for listener in self._listeners:
            listener.close()
        for conn in list(self._connections):
            conn.close()
        for listener in self._listeners:
            await listener.wait_closed()
        self._listeners.clear()


def raise_open_files(needed: int) -> None:
    """Raise this process's soft RLIMIT_NOFILE to ``needed`` (at most the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100, help="how many (default 100)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds per show run")
    parser.add_argument("--seed", default="rookery", help="credentials derive from it")
    parser.add_argument("--enable-secrets", action="store_true", help="devices ask for one")
    parser.add_argument("--inventory", type=Path, help="write the JSON here, not stdout")
    parser.add_argument(
        "--configs",
        type=Path,
        help="serve DIR/<name>.cfg as a device's running config when that file exists",
    )
    parser.add_argument(
        "--config-style",
        choices=("sample", "fleet"),
        default="sample",
        help="sample: app.demo_lab's small config (default); fleet: FleetConfigs' 30-100 KB",
    )
    parser.add_argument(
        "--shared-credentials",
        action="store_true",
        help=f"every device logs in {FLEET_USERNAME} with one password (from --seed)",
    )
    args = parser.parse_args(argv)

    fleet = default_fleet(
        args.devices, ["cisco_ios"], seed=args.seed, enable_secrets=args.enable_secrets
    )
    if args.shared_credentials:
        for spec in fleet:
            spec.username, spec.password = FLEET_USERNAME, shared_password(args.seed)
    raise_open_files(args.devices + 1024)  # a listening socket per device, and sessions
    generated = FleetConfigs(args.seed) if args.config_style == "fleet" else None
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    with FastSSHLab(fleet) as lab:
        for spec in lab.devices:
            lab.set_delay(spec.name, args.delay)
        lab.set_config_dir(args.configs)
        lab.set_generated_configs(generated)
        text = json.dumps(lab.inventory(), indent=1)
        if args.inventory:
            args.inventory.write_text(text + "\n")
            print(f"fastssh: {len(fleet)} devices, inventory in {args.inventory}", flush=True)
        else:
            print(text, flush=True)
        stopped.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
