#!/usr/bin/env python
"""Compliance engine benchmark: parse + check of typical rules on ~300-line IOS configs.

    python bench/compliance.py [--devices 1000] [--rules 20] [--rounds 3]

No database, no processes: the engine (``app.compliance``) alone, on ``--devices``
generated IOS access-switch configs (about 300 lines each: 24 access ports, uplinks,
SVIs, VLANs, OSPF, ACLs, logging, SNMP, NTP, a banner, console and vty lines, each device
different) and ``--rules`` typical rules (required lines, blocks under ``re:interface``,
forbidden lines, regular expressions; about a third of the devices fail some).

Measured, best of ``--rounds``, per device:

- **baseline**: ``hier_config.get_hconfig`` of the whole config, once (what reading a
  config costs before any rule is checked);
- **backup**: ``parse_config`` and ``check`` of every rule, as a backup's finalize step
  does for each changed device;
- **recheck**: ``parse_config`` and ``check`` of one rule (an interface block), as
  re-checking the fleet after one rule was edited does; projected to 10,000 devices;
- **whole**: the backup figure with the lazy reading turned off (``lazy=False``), to
  show what reading only the sections a rule names saves.

Figures (ratios to the baseline, higher is better): ``backup_vs_get_hconfig`` (target
1.0: twenty rules cost no more than hier_config reading the config once) and
``recheck_vs_get_hconfig`` (target 2.0).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hier_config import Platform, get_hconfig

from app import compliance

RULES: dict[str, tuple[str, str]] = {
    "password-encryption": ("service password-encryption", ""),
    "timestamps": ("service timestamps log datetime msec localtime show-timezone", ""),
    "no-http": ("", "ip http server"),
    "no-source-route": ("no ip source-route", ""),
    "ntp": ("ntp server 10.0.0.1\nre:ntp server 10\\.0\\.0\\.[12]", ""),
    "syslog": ("logging host 10.0.0.50", ""),
    "snmp-rw": ("", "re:snmp-server community \\S+ RW.*"),
    "portfast": (
        "re:interface GigabitEthernet1/0/\\d+\n"
        " spanning-tree portfast\n"
        " spanning-tree bpduguard enable",
        "",
    ),
    "no-telnet": ("", "re:line vty .*\n re:transport input .*telnet.*"),
    "vty": ("line vty 0 4\n exec-timeout 10 0\n transport input ssh", ""),
    "banner": ("re:(?s)banner motd .*Authorized.*", ""),
    "aaa": ("aaa new-model\naaa authentication login default group tacacs+ local", ""),
    "ssh": ("ip ssh version 2", ""),
    "no-plain-users": ("", "re:username \\S+ .*password 0 .*"),
    "svi": ("re:interface Vlan\\d+\n no ip redirects\n no ip proxy-arp", ""),
    "no-cdp-access": ("", "re:interface GigabitEthernet1/0/\\d+\n cdp enable"),
    "ospf": ("router ospf 1\n passive-interface default\n re:router-id \\S+", ""),
    "mgmt-acl": ("ip access-list standard MGMT\n re:\\d+ permit 10\\.0\\.0\\.0 .*", ""),
    "console": ("line con 0\n exec-timeout 5 0\n logging synchronous", ""),
    "no-small-servers": ("", "service tcp-small-servers\nservice udp-small-servers"),
}


def ios_config(n: int) -> str:
    """A ~300-line access switch config; about a third deviate from the rules."""
    rnd = random.Random(n)
    bad = n % 3 == 0
    lines = [
        "version 15.2",
        "service timestamps debug datetime msec",
        "service timestamps log datetime msec localtime show-timezone",
        "service password-encryption" if not bad else "no service password-encryption",
        "!",
        f"hostname sw-{n:05d}",
        "!",
        "boot-start-marker",
        "boot-end-marker",
        "!",
        "aaa new-model",
        "aaa authentication login default group tacacs+ local",
        "aaa authorization exec default group tacacs+ local",
        "!",
        "clock timezone CET 1 0",
        "no ip source-route",
        "ip domain name example.net",
        "ip ssh version 2",
        "!",
        "username admin privilege 15 secret 9 <removed>",
    ]
    if bad:
        lines.append("username backdoor privilege 15 password 0 <removed>")
    lines.append("!")
    for vlan in (10, 20, 30, 40, 99):
        lines += [f"vlan {vlan}", f" name users-{vlan}", "!"]
    lines += ["spanning-tree mode rapid-pvst", "spanning-tree extend system-id", "!"]
    for port in range(1, 25):
        vlan = rnd.choice((10, 20, 30, 40))
        lines += [
            f"interface GigabitEthernet1/0/{port}",
            f" description access port {port} room {rnd.randint(100, 400)}",
            f" switchport access vlan {vlan}",
            " switchport mode access",
            " spanning-tree portfast",
        ]
        if not (bad and port == 7):
            lines.append(" spanning-tree bpduguard enable")
        lines.append("!")
    for port in (1, 2):
        lines += [
            f"interface TenGigabitEthernet1/1/{port}",
            f" description uplink {port} to dist-{n // 40:03d}",
            " switchport trunk allowed vlan 10,20,30,40,99",
            " switchport mode trunk",
            "!",
        ]
    lines += [
        "interface Vlan99",
        f" ip address 10.99.{n // 250 % 250}.{n % 250 + 2} 255.255.255.0",
        " no ip redirects",
        " no ip proxy-arp",
        "!",
        "router ospf 1",
        f" router-id 10.255.{n // 250 % 250}.{n % 250}",
        " passive-interface default",
        " no passive-interface Vlan99",
        " network 10.99.0.0 0.0.255.255 area 0",
        "!",
        "ip forward-protocol nd",
        "no ip http server" if not bad else "ip http server",
        "no ip http secure-server",
        "!",
        "ip access-list standard MGMT",
        " permit 10.0.0.0 0.0.0.255",
        " permit 10.1.0.0 0.0.0.255",
        " deny   any log",
        "ip access-list extended UPLINK-IN",
    ]
    for i in range(20):
        lines.append(f" permit tcp any host 10.{i}.0.1 eq {rnd.choice((22, 443, 161))}")
    lines += [" deny   ip any any log", "!", "logging trap informational", "logging host 10.0.0.50"]
    lines += [f"logging host 10.0.1.{i}" for i in range(rnd.randint(1, 4))]
    lines += [
        "!",
        "snmp-server community <removed> RO" if not bad else "snmp-server community <removed> RW",
        f"snmp-server location building-{rnd.randint(1, 9)}",
        "snmp-server contact noc@example.net",
        "!",
        "banner motd ^C",
        "Authorized access only.",
        "Disconnect now if you are not authorised.",
        "^C",
        "!",
        "line con 0",
        " exec-timeout 5 0",
        " logging synchronous",
        "line vty 0 4",
        " access-class MGMT in",
        " exec-timeout 10 0",
        " transport input ssh" if not bad else " transport input telnet ssh",
        "line vty 5 15",
        " access-class MGMT in",
        " transport input none",
        "!",
        "ntp server 10.0.0.1",
        "ntp server 10.0.0.2",
        "!",
        "end",
    ]
    while len(lines) < 300:  # more ACL entries to reach the size of the fleet's configs
        lines.insert(-15, f"access-list 199 permit ip host 10.9.{len(lines)}.1 any")
    return "\n".join(lines) + "\n"


def best_of(rounds: int, function) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--rules", type=int, default=len(RULES))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    configs = [ios_config(n) for n in range(args.devices)]
    specs = list(RULES.items())[: args.rules]
    rules = [
        compliance.compile_rule(compliance.RuleSpec(name=name, required=req, forbidden=forb))
        for name, (req, forb) in specs
    ]
    one = next(r for r in rules if r.name == "portfast")
    failing = 0

    def backup(lazy: bool = True) -> None:
        nonlocal failing
        failing = 0
        for text in configs:
            parsed = compliance.parse_config(text, "cisco_ios", lazy=lazy)
            for rule in rules:
                finding = compliance.check(rule, parsed)
                assert finding.error is None, finding.error
                failing += not finding.compliant

    def recheck() -> None:
        for text in configs:
            compliance.check(one, compliance.parse_config(text, "cisco_ios"))

    def baseline() -> None:
        for text in configs:
            get_hconfig(Platform.CISCO_IOS, text)

    n = len(configs)
    lines = sum(text.count("\n") for text in configs) / n
    t_base = best_of(args.rounds, baseline) / n
    t_backup = best_of(args.rounds, backup) / n
    found = failing
    t_whole = best_of(args.rounds, lambda: backup(lazy=False)) / n
    t_recheck = best_of(args.rounds, recheck) / n

    print(f"{n} IOS configs of {lines:.0f} lines, {len(rules)} rules, best of {args.rounds}")
    print(f"  failing (device, rule) pairs: {found} of {n * len(rules)}")
    print(f"  get_hconfig (baseline)            {t_base * 1000:7.2f} ms per device")
    print(f"  parse_config + {len(rules)} checks (lazy)     {t_backup * 1000:7.2f} ms per device")
    print(f"  parse_config + {len(rules)} checks (whole)    {t_whole * 1000:7.2f} ms per device")
    print(
        f"  parse_config + 1 check (re-check) {t_recheck * 1000:7.2f} ms per device, "
        f"{t_recheck * 10000:.1f} s for 10,000 devices"
    )
    for figure, value, target in (
        ("backup_vs_get_hconfig", t_base / t_backup, 1.0),
        ("recheck_vs_get_hconfig", t_base / t_recheck, 2.0),
    ):
        print(
            json.dumps(
                {
                    "bench": "compliance",
                    "figure": figure,
                    "value": round(value, 3),
                    "target": target,
                    "pass": value >= target,
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
