"""Every platform Rookery has a profile of, backed up by the real config_backup job.

One FakeNOS lab on 127.0.0.1 serves two devices per platform (``tests.devices.PlatformLab``):
one prints a configuration in its platform's syntax, with the lines that platform prints
that change by themselves and the secrets it keeps; the other answers its configuration
command with the refusal that platform prints. One backup run takes them all (the lab,
the database and the run are made once for the module). For each platform: the good
device's stored config is its config (no prompt, no error, every other line kept), its
volatile lines and secrets are gone, and the refusing device failed with nothing stored.
Junos carries extra commands through an admin's profile folder
(``ROOKERY_PLATFORM_PROFILES_DIR``): kept as a comment block, their volatile lines dropped,
a refused one left out.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import select

from app import create_app, platforms, profiles
from app.config_store import REMOVED, store_for
from app.extensions import db
from app.models import DeviceResult, JobRun
from app.services import credentials, inventory, jobs, runs
from tests.conftest import AuthActions, _swap_db, make_config
from tests.integration.helpers import drain, reload
from tests.integration.test_api_support import Api, make_tokens, ok

pytest_plugins = ["tests.devices"]

CARET = "                    ^"
IOS_ERROR = f"{CARET}\n% Invalid input detected at '^' marker."


@dataclass(frozen=True)
class Sample:
    """What one platform's device prints: ``config`` for its configuration command
    (``{name}``: the device's name), of which the ``volatile`` lines and the ``secrets``
    must not be stored; ``error`` when it refuses the command."""

    config: str
    volatile: tuple[str, ...]
    secrets: tuple[str, ...]
    error: str = IOS_ERROR


def lines(text: str) -> tuple[str, ...]:
    return tuple(text.strip("\n").splitlines())


SAMPLES: dict[str, Sample] = {
    "cisco_ios": Sample(
        config="""\
Load for five secs: 4%/0%; one minute: 3%; five minutes: 3%
Time source is NTP, 10:21:07.123 UTC Mon Mar 4 2024
Building configuration...

Current configuration : 1893 bytes
!
! Last configuration change at 10:21:07 UTC Mon Mar 4 2024 by netops
! NVRAM config last updated at 10:21:09 UTC Mon Mar 4 2024 by netops
!
version 15.2
hostname {name}
!
enable secret 9 $9$Sy4m3bBq5Ux7$Q1p0zF
username netops privilege 15 secret 9 $9$hT8jL0aA$u2m9Vx
!
interface GigabitEthernet0/1
 description uplink to core
 ip address 10.0.0.1 255.255.255.252
 ip ospf message-digest-key 1 md5 7 0822455D0A16
!
snmp-server community Pr1v4t3C0mm RO
tacacs-server host 10.1.1.1 key 7 070C285F4D06
ntp clock-period 17179865
line vty 0 4
 password 7 094F471A1A0A
end
""",
        volatile=lines("""\
Load for five secs: 4%/0%; one minute: 3%; five minutes: 3%
Time source is NTP, 10:21:07.123 UTC Mon Mar 4 2024
Building configuration...
Current configuration : 1893 bytes
! Last configuration change at 10:21:07 UTC Mon Mar 4 2024 by netops
! NVRAM config last updated at 10:21:09 UTC Mon Mar 4 2024 by netops
ntp clock-period 17179865
"""),
        secrets=(
            "$9$Sy4m3bBq5Ux7$Q1p0zF",
            "$9$hT8jL0aA$u2m9Vx",
            "0822455D0A16",
            "Pr1v4t3C0mm",
            "070C285F4D06",
            "094F471A1A0A",
        ),
    ),
    "cisco_xr": Sample(
        config="""\
Mon Mar  4 10:21:07.123 UTC
Building configuration...
!! IOS XR Configuration 7.3.2
!! Last configuration change at Mon Mar  4 10:20:00 2024 by netops
!
hostname {name}
username netops
 group root-lr
 secret 10 $6$abcDEF12$XyZ9
!
interface Loopback0
 ipv4 address 192.0.2.1 255.255.255.255
!
snmp-server community Xr5nmpC0mm RO
end
""",
        volatile=(
            "Mon Mar  4 10:21:07.123 UTC",
            "Building configuration...",
            "!! Last configuration change at Mon Mar  4 10:20:00 2024 by netops",
        ),
        secrets=("$6$abcDEF12$XyZ9", "Xr5nmpC0mm"),
        error=f"Mon Mar  4 10:21:08.456 UTC\n{IOS_ERROR}",
    ),
    "cisco_nxos": Sample(
        config="""\
!Command: show running-config
!Running configuration last done at: Mon Mar  4 10:20:00 2024
!Time: Mon Mar  4 10:21:07 2024

version 9.3(8) Bios:version
hostname {name}
username admin password 5 $5$NXk3y$abcdef  role network-admin
snmp-server user admin network-admin auth md5 0x1a2b3c4d priv 0x5e6f7a8b localizedkey
snmp-server community Nx0sC0mm group network-operator
interface Ethernet1/1
  description uplink
""",
        volatile=(
            "!Running configuration last done at: Mon Mar  4 10:20:00 2024",
            "!Time: Mon Mar  4 10:21:07 2024",
        ),
        secrets=("$5$NXk3y$abcdef", "0x1a2b3c4d", "0x5e6f7a8b", "Nx0sC0mm"),
        error=f"{CARET}\n% Invalid command at '^' marker.",
    ),
    "cisco_asa": Sample(
        config="""\
: Saved

: Serial Number: JAD12345678
: Hardware:   ASA5516, 8192 MB RAM, CPU Atom C2000 series 2416 MHz, 1 CPU (8 cores)
: Written by enable_15 at 10:21:07.123 UTC Mon Mar 4 2024
!
ASA Version 9.12(4)
!
hostname {name}
enable password $sha512$5000$AsAh4sh== pbkdf2
passwd 2KFQnbNIdI.2KYOU encrypted
username netops password $sha512$5000$N3t0ps== pbkdf2 privilege 15
failover key F41l0v3rK3y
aaa-server TACACS (inside) host 10.1.1.1
 key T4c4csK3y
snmp-server host inside 10.1.1.2 community Sn1mpC0mm version 2c
Cryptochecksum:0123456789abcdef0123456789abcdef
: end
""",
        volatile=(
            ": Saved",
            ": Written by enable_15 at 10:21:07.123 UTC Mon Mar 4 2024",
            "Cryptochecksum:0123456789abcdef0123456789abcdef",
        ),
        secrets=(
            "$sha512$5000$AsAh4sh==",
            "2KFQnbNIdI.2KYOU",
            "$sha512$5000$N3t0ps==",
            "F41l0v3rK3y",
            "T4c4csK3y",
            "Sn1mpC0mm",
        ),
        error=f"{CARET}\nERROR: % Invalid input detected at '^' marker.",
    ),
    "cisco_ftd": Sample(
        config="""\
: Saved

: Written by enable_15 at 10:21:07.123 UTC Mon Mar 4 2024
!
NGFW Version 7.0.4
!
hostname {name}
enable password $sha512$5000$FtDh4sh== pbkdf2
username netops password $sha512$5000$Ftd0ps== pbkdf2 privilege 15
Cryptochecksum:fedcba9876543210fedcba9876543210
: end
""",
        volatile=(
            ": Saved",
            ": Written by enable_15 at 10:21:07.123 UTC Mon Mar 4 2024",
            "Cryptochecksum:fedcba9876543210fedcba9876543210",
        ),
        secrets=("$sha512$5000$FtDh4sh==", "$sha512$5000$Ftd0ps=="),
        error="Syntax error: Illegal parameter",
    ),
    "cisco_s300": Sample(
        config="""\
config-file-header
{name}
v1.4.11.2 / R800_NIK_1_4_194_194
CLI v1.0
set system mode switch
@
hostname {name}
username netops password encrypted 5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8 privilege 15
snmp-server community S300C0mm ro view Default
encrypted radius-server key Rad1usK3yHash==
interface gigabitethernet1
 description uplink
exit
""",
        volatile=(),
        secrets=(
            "5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8",
            "S300C0mm",
            "Rad1usK3yHash==",
        ),
        error=f"{CARET}\n% Unrecognized command",
    ),
    "arista_eos": Sample(
        config="""\
! Command: show running-config
! device: {name} (DCS-7050SX3-48YC8, EOS-4.28.3M)
! Time: Mon Mar  4 10:21:07 2024
! Startup-config last modified at Mon Mar  4 10:20:00 2024 by admin
!
hostname {name}
username admin privilege 15 role network-admin secret sha512 $6$Ar1sta$xyz
enable password sha512 $6$En4bl3$abc
snmp-server community Ar1staC0mm ro
!
interface Ethernet1
   description uplink
!
end
""",
        volatile=(
            "! Time: Mon Mar  4 10:21:07 2024",
            "! Startup-config last modified at Mon Mar  4 10:20:00 2024 by admin",
        ),
        secrets=("$6$Ar1sta$xyz", "$6$En4bl3$abc", "Ar1staC0mm"),
        error="% Invalid input (at token 1: 'running-confg')",
    ),
    "juniper_junos": Sample(
        config="""\
## Last commit: 2024-03-04 10:20:00 UTC by netops
version 21.4R3-S4;
system {
    host-name {name};
    root-authentication {
        encrypted-password "$6$Jun0s$rootHash"; ## SECRET-DATA
    }
    login {
        user netops {
            class super-user;
            authentication {
                encrypted-password "$6$Jun0s$userHash"; ## SECRET-DATA
            }
        }
    }
}
snmp {
    community JunSnmpC0mm {
        authorization read-only;
    }
}
""",
        volatile=("## Last commit: 2024-03-04 10:20:00 UTC by netops",),
        secrets=("$6$Jun0s$rootHash", "$6$Jun0s$userHash", "JunSnmpC0mm"),
        error=f"{CARET}\nsyntax error, expecting <command>.",
    ),
    "huawei": Sample(
        config="""\
2024-03-04 10:21:07.123+08:00
!Software Version V200R019C10SPC800
#
sysname {name}
#
aaa
 local-user admin password irreversible-cipher $1c$Hu4w3i$HashValue$
 local-user admin privilege level 15
#
snmp-agent community read cipher %^%#Hw5nmpC1ph3r%^%#
#
interface GigabitEthernet0/0/1
 description uplink
#
return
""",
        volatile=("2024-03-04 10:21:07.123+08:00",),
        secrets=("$1c$Hu4w3i$HashValue$", "%^%#Hw5nmpC1ph3r%^%#"),
        error=f"{CARET}\nError: Unrecognized command found at '^' position.",
    ),
    "huawei_smartax": Sample(
        config="""\
2024-03-04 10:21:07+08:00
[MA5600V800R015C10: 8100]
#
[global-config]
  <global-config>
 sysname {name}
 snmp-agent community read %^%#Sm4rtAxC1ph3r%^%#
#
return
""",
        volatile=("2024-03-04 10:21:07+08:00",),
        secrets=("%^%#Sm4rtAxC1ph3r%^%#",),
        error="% Unknown command, the error locates at '^'",
    ),
    "hp_comware": Sample(
        config="""\
 version 7.1.064, Release 3208P10
#
 sysname {name}
#
local-user admin class manage
 password hash $h$6$C0mw4r3$HashValue==
 service-type ssh
#
 snmp-agent community read cipher $c$3$Sn1mpCiph3r==
#
return
""",
        volatile=(),
        secrets=("$h$6$C0mw4r3$HashValue==", "$c$3$Sn1mpCiph3r=="),
        error=f"{CARET}\n % Unrecognized command found at '^' position.",
    ),
    "hp_procurve": Sample(
        config="""\
Running configuration:

; J9729A Configuration Editor; Created on release #WB.16.02.0012
; Ver #0d:01.7c.59.f4.7b.ff.ff.fc.ff.ff.3f.ef:ba
hostname "{name}"
snmp-server community "Pr0CurveC0mm" unrestricted
radius-server host 10.1.1.1 key "R4d1usK3y"
password manager user-name "admin" sha1 "5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8"
vlan 1
   name "DEFAULT_VLAN"
   exit
""",
        volatile=(),
        secrets=("Pr0CurveC0mm", "R4d1usK3y", "5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8"),
        error="Invalid input: running-confg",
    ),
    "linux": Sample(
        config="{name}\n",
        volatile=(),
        secrets=(),
        error="-bash: cat: command not found",
    ),
    "alcatel_aos": Sample(
        config="""\
! File: /flash/working/vcboot.cfg         Snapshot created 03/04/24 10:21:07
! Chassis:
system name {name}
user netops password Al4t3lH4sh== read-write all
snmp community-map Al4t3lC0mm user netops on
aaa radius-server "rad1" host 10.1.1.1 key R4d1usK3y
vlan 10 admin-state enable
""",
        volatile=("! File: /flash/working/vcboot.cfg         Snapshot created 03/04/24 10:21:07",),
        secrets=("Al4t3lH4sh==", "Al4t3lC0mm", "R4d1usK3y"),
        error='ERROR: Invalid entry: "snapshott"',
    ),
    "alcatel_sros": Sample(
        config="""\
# TiMOS-B-20.10.R1 both/x86_64 Nokia 7750 SR Copyright (c) 2000-2020 Nokia.
# All rights reserved. All use subject to applicable license agreements.
# Generated MON MAR 04 10:21:07 2024 UTC

exit all
configure
    system
        name "{name}"
        snmp
            community "Sr0sC0mm" r version both
        exit
        security
            user "netops"
                password "$2y$10$Sr0sHashValue" hash2
            exit
        exit
    exit
exit all

# Finished MON MAR 04 10:21:07 2024 UTC
""",
        volatile=(
            "# Generated MON MAR 04 10:21:07 2024 UTC",
            "# Finished MON MAR 04 10:21:07 2024 UTC",
        ),
        secrets=('"Sr0sC0mm"', "$2y$10$Sr0sHashValue"),
        error="Error: Bad command.",
    ),
    "allied_telesis_awplus": Sample(
        config="""\
!
service password-encryption
!
hostname {name}
!
username manager privilege 15 password 8 $1$Aw9lU5$HashValue
!
snmp-server community Aw9lusC0mm
!
interface port1.0.1
 switchport mode access
!
end
""",
        volatile=(),
        secrets=("$1$Aw9lU5$HashValue", "Aw9lusC0mm"),
    ),
    "avaya_ers": Sample(
        config="""\
! Embedded ASCII Configuration Generator Script
! Model = Ethernet Routing Switch 4850GTS-PWR+
! Software version = v7.6.0.030
! Displaying only parameters different to default
! Date and time: 2024-03-04 10:21:07 GMT+00:00
!
enable
configure terminal
!
! *** CORE (Phase 1) ***
!
! clock set 10:21:07 2024-03-04
snmp-server name "{name}"
snmp-server community Er5C0mm ro
radius-server host 10.1.1.1 key Er5R4d1us
""",
        volatile=(
            "! Date and time: 2024-03-04 10:21:07 GMT+00:00",
            "! clock set 10:21:07 2024-03-04",
        ),
        secrets=("Er5C0mm", "Er5R4d1us"),
    ),
    "avaya_vsp": Sample(
        config="""\
#
# Mon Mar 04 10:21:07 2024 UTC
# box type             : VSP-4450GSX-PWR+
# software version     : 8.1.0.0
# cli mode             : ECLI
#
config terminal
prompt "{name}"
snmp-server community Vsp5nmpC0mm index first secname readview
cli password rwa rwa Vsp4dm1nPw
end
""",
        volatile=("# Mon Mar 04 10:21:07 2024 UTC",),
        secrets=("Vsp5nmpC0mm", "Vsp4dm1nPw"),
    ),
    "broadcom_icos": Sample(
        config="""\
!Current Configuration:
!
!System Description "ICOS switch"
!System Software Version 3.3.1.2
!System Up Time          5 days 2 hrs 3 mins 4 secs
!Current System Time:Mar 04 2024 10:21:07
!Current SNTP Synchronized Time: Mar 04 10:21:07 2024 UTC
!
hostname "{name}"
username "admin" password 5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8 level 15 encrypted
snmp-server community Ic0sC0mm
exit
""",
        volatile=(
            "!System Up Time          5 days 2 hrs 3 mins 4 secs",
            "!Current System Time:Mar 04 2024 10:21:07",
            "!Current SNTP Synchronized Time: Mar 04 10:21:07 2024 UTC",
        ),
        secrets=("5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8", "Ic0sC0mm"),
    ),
    "ubiquiti_edgeswitch": Sample(
        config="""\
!Current Configuration:
!
!System Description "EdgeSwitch 24-Port Lite, 1.9.3.5343114, Linux 3.6.5-f4a26ed5"
!System Software Version "1.9.3.5343114"
!System Up Time          "5 days 2 hrs 3 mins 4 secs"
!Additional Packages     QOS,IPv6 Management,Routing
!Current SNTP Synchronized Time: Not Synchronized
!
hostname "{name}"
username "ubnt" password 8bd4b1f5a8d8d5f0e1f8d1c1b0a9f8e7 level 15 encryption-sha512
snmp-server community "Ubn7C0mm"
exit
""",
        volatile=(
            '!System Up Time          "5 days 2 hrs 3 mins 4 secs"',
            "!Current SNTP Synchronized Time: Not Synchronized",
        ),
        secrets=("8bd4b1f5a8d8d5f0e1f8d1c1b0a9f8e7", "Ubn7C0mm"),
    ),
    "brocade_fastiron": Sample(
        config="""\
Current configuration:
!
ver 08.0.30tT7f3
!
hostname {name}
enable super-user-password 8 $1$Br0c4d3$HashValue
username netops password 8 $1$N3t0ps$HashValue
snmp-server community 2 $Br0cS3cr3t ro
!
end
""",
        volatile=(),
        secrets=("$1$Br0c4d3$HashValue", "$1$N3t0ps$HashValue", "$Br0cS3cr3t"),
        error="Invalid input -> running-confg\nType ? for a list",
    ),
    "ruckus_fastiron": Sample(
        config="""\
Current configuration:
!
ver 08.0.95gT213
!
hostname {name}
enable super-user-password 8 $1$Ruckus$HashValue
snmp-server community 2 $RuckS3cr3t ro
tacacs-server host 10.1.1.1 key 2 $Tac4csK3y
!
end
""",
        volatile=(),
        secrets=("$1$Ruckus$HashValue", "$RuckS3cr3t", "$Tac4csK3y"),
        error="Invalid input -> running-confg\nType ? for a list",
    ),
    "brocade_netiron": Sample(
        config="""\
Current configuration:
!
ver V5.8.0T163
!
hostname {name}
enable super-user-password 8 $1$N3t1r0n$HashValue
snmp-server community 2 $N3tS3cr3t ro
!
end
""",
        volatile=(),
        secrets=("$1$N3t1r0n$HashValue", "$N3tS3cr3t"),
        error="Invalid input -> running-confg\nType ? for a list",
    ),
    "checkpoint_gaia": Sample(
        config="""\
#
# Configuration of {name}
# Language version: 13.4v1
#
# Exported by admin on Mon Mar  4 10:21:07 2024
#
set hostname {name}
set expert-password-hash $1$Gai4$ExpertHash
set user admin password-hash $6$Gai4$AdminHash
add snmp address-range community Gai4C0mm
set snmp usm user snmpv3 security-level authNoPriv auth-pass-phrase-hashed 0x9a8b7c6d
""",
        volatile=("# Exported by admin on Mon Mar  4 10:21:07 2024",),
        secrets=("$1$Gai4$ExpertHash", "$6$Gai4$AdminHash", "Gai4C0mm", "0x9a8b7c6d"),
        error="CLINFR0329  Invalid command:'show configuratin'.",
    ),
    "ciena_saos": Sample(
        config="""\
! CIENA-3930 Configuration File
! Created: Mon Mar  4 10:21:07 2024
! On terminal: console
!
system set host-name {name}
user create user netops access-level super secret C13n4S3cr3tHash
snmp create community C13n4C0mm
!
! END OF CONFIG FILE
""",
        volatile=("! Created: Mon Mar  4 10:21:07 2024", "! On terminal: console"),
        secrets=("C13n4S3cr3tHash", "C13n4C0mm"),
        error="SHELL PARSER FAILURE: 'configuration shw' - invalid input 'shw'",
    ),
    "dell_force10": Sample(
        config="""\
Current Configuration ...
! Version 9.14(2.0)
! Last configuration change at Mon Mar  4 10:21:07 2024 by admin
! Startup-config last updated at Mon Mar  4 10:20:00 2024 by admin
!
hostname {name}
enable password 7 b125455cf679b208e79b910e85789edf
username admin password 7 1d28e9f33f99cf5c privilege 15
snmp-server community F0rc3C0mm ro
!
end
""",
        volatile=(
            "! Last configuration change at Mon Mar  4 10:21:07 2024 by admin",
            "! Startup-config last updated at Mon Mar  4 10:20:00 2024 by admin",
        ),
        secrets=("b125455cf679b208e79b910e85789edf", "1d28e9f33f99cf5c", "F0rc3C0mm"),
    ),
    "dlink_ds": Sample(
        config="""\
#-------------------------------------------------------------------
#                       DES-3200-28 Configuration
#
#                       Firmware: Build 4.04.B007
#        Copyright(C) 2013 D-Link Corporation. All rights reserved.
#-------------------------------------------------------------------
# System Uptime : 5 days, 2 hours, 3 minutes
config snmp system_name {name}
create snmp community DL1nkC0mm view CommunityView read_only
#  End of configuration file for DES-3200-28
""",
        volatile=("# System Uptime : 5 days, 2 hours, 3 minutes",),
        secrets=("DL1nkC0mm",),
        error="Available commands:\n..  ?  cable_diag  cd",
    ),
    "eltex": Sample(
        config="""\
hostname {name}
!
username admin password encrypted 5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8 privilege 15
snmp-server community E1t3xC0mm ro
tacacs-server host 10.1.1.1 key encrypted E1t3xT4cKey
!
interface gigabitethernet1/0/1
 description uplink
exit
""",
        volatile=(),
        secrets=("5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8", "E1t3xC0mm", "E1t3xT4cKey"),
    ),
    "ericsson_ipos": Sample(
        config="""\
Current configuration:
! Configuration last changed by user 'admin' at Mon Mar  4 10:21:07 2024
!
system hostname {name}
!
administrator admin@local encrypted 1 $1$Er1cs$HashValue
snmp community Er1cC0mm read-only
!
end
""",
        volatile=("! Configuration last changed by user 'admin' at Mon Mar  4 10:21:07 2024",),
        secrets=("$1$Er1cs$HashValue", "Er1cC0mm"),
        error=f"{CARET}\n% Invalid input at '^' marker.",
    ),
    "extreme_exos": Sample(
        config="""\
#
# Module devmgr configuration.
#
configure snmp sysName "{name}"
#
# Module AAA configuration.
#
configure account admin encrypted "$5$Exos$AdminHash"
create account user netops encrypted "$5$Exos$UserHash"
configure radius mgmt-access primary shared-secret encrypted "Ex0sR4d1us"
#
# Configuration generated Mon Mar  4 10:21:07 2024
""",
        volatile=("# Configuration generated Mon Mar  4 10:21:07 2024",),
        secrets=("$5$Exos$AdminHash", "$5$Exos$UserHash", "Ex0sR4d1us"),
        error=f"{CARET}\n%% Invalid input detected at '^' marker.",
    ),
    "fortinet": Sample(
        config="""\
#config-version=FGT60F-7.2.8-FW-build1639-240313:opmode=0:vdom=0:user=admin
#conf_file_ver=4711471147114711
#buildno=1639
#global_vdom=1
config system global
    set hostname "{name}"
end
config system admin
    edit "admin"
        set password ENC SH2F0rt1H4shValue=
    next
end
config user local
    edit "netops"
        set passwd ENC F0rt1N3t0ps==
    next
end
""",
        volatile=(
            "#config-version=FGT60F-7.2.8-FW-build1639-240313:opmode=0:vdom=0:user=admin",
            "#conf_file_ver=4711471147114711",
        ),
        secrets=("SH2F0rt1H4shValue=", "F0rt1N3t0ps=="),
        error="Command fail. Return code -61",
    ),
    "ipinfusion_ocnos": Sample(
        config="""\
!
! Software version: DELL_S6000-ON-OcNOS-5.0.187-MPLS-S0-P0 04/03/2024 10:21:07
!
!Last configuration change at 10:21:07 UTC Mon Mar 04 2024 by root
!
hostname {name}
username admin role network-admin password encrypted 0x9f8e7d6c5b4a
snmp-server community 0cN0sC0mm group network-operator vrf management
!
end
""",
        volatile=("!Last configuration change at 10:21:07 UTC Mon Mar 04 2024 by root",),
        secrets=("0x9f8e7d6c5b4a", "0cN0sC0mm"),
        error="% Unknown command.",
    ),
    "juniper_screenos": Sample(
        config="""\
Total Config size 4711:
set clock timezone 0
set hostname {name}
set admin name "netscreen"
set admin password "nKVUM2rwMUzPcrkG5sWIHdCtqkAibn"
set auth-server "rad1" radius secret "Scr33nR4d1us"
set ike gateway "gw1" address 192.0.2.9 main outgoing-interface "ethernet0/0" preshare "Scr33nPsk"
""",
        volatile=("Total Config size 4711:",),
        secrets=('"netscreen"', "nKVUM2rwMUzPcrkG5sWIHdCtqkAibn", "Scr33nR4d1us", "Scr33nPsk"),
        error="unknown keyword confg",
    ),
    "mikrotik_routeros": Sample(
        config="""\
# 2024-03-04 10:21:07 by RouterOS 7.12.1
# software id = ABCD-1234
#
/system identity
set name={name}
/radius
add address=10.1.1.1 secret=M1kr0R4d1us service=login
/interface wireless security-profiles
set [ find default=yes ] wpa2-pre-shared-key=M1kr0Wpa2Key
""",
        volatile=("# 2024-03-04 10:21:07 by RouterOS 7.12.1",),
        secrets=("M1kr0R4d1us", "M1kr0Wpa2Key"),
        error="bad command name export (line 1 column 2)",
    ),
    "ubiquiti_edgerouter": Sample(
        config="""\
set system host-name {name}
set system login user ubnt authentication encrypted-password '$6$Ubnt$UserHash'
set system login user ops authentication plaintext-password 'Ubn7Pl41n'
set service snmp community Ubn7C0mm authorization ro
set vpn ipsec site-to-site peer 192.0.2.9 authentication pre-shared-secret 'Ubn7Psk'
""",
        volatile=(),
        secrets=("$6$Ubnt$UserHash", "Ubn7Pl41n", "Ubn7C0mm", "Ubn7Psk"),
        error="Invalid command: show [configuratin]",
    ),
    "vyatta_vyos": Sample(
        config="""\
set system host-name '{name}'
set system login user vyos authentication encrypted-password '$6$Vy0s$UserHash'
set service snmp community 'Vy0sC0mm' authorization 'ro'
set vpn ipsec authentication psk peer1 secret 'Vy0sPsk'
""",
        volatile=(),
        secrets=("$6$Vy0s$UserHash", "Vy0sC0mm", "Vy0sPsk"),
        error="Invalid command: show [configuratin]",
    ),
    "yamaha": Sample(
        config="""\
# RTX1200 Rev.10.01.71 (Thu Sep 29 15:08:40 2016)
# MAC Address : 00:a0:de:aa:bb:11, 00:a0:de:aa:bb:22, 00:a0:de:aa:bb:33
# Memory 128Mbytes, 3LAN, 1BRI
# main:  RTX1200 ver=c0 serial=D12345678 MAC-Address=00:a0:de:aa:bb:11
# Reporting Date: Mar 4 10:21:07 2024
login password Y4m4h4L0g1n
administrator password Y4m4h4Adm1n
login user netops Y4m4h4User
ip lan1 address 192.0.2.1/24
console prompt {name}
""",
        volatile=("# Reporting Date: Mar 4 10:21:07 2024",),
        secrets=("Y4m4h4L0g1n", "Y4m4h4Adm1n", "Y4m4h4User"),
        error="Error: Invalid command name",
    ),
    "zyxel_os": Sample(
        config="""\
hostname {name}
!
admin-password Zyx3lAdm1n 1
snmp-server get-community Zyx3lC0mm
!
interface port-channel 1
  name uplink
""",
        volatile=(),
        secrets=("Zyx3lAdm1n", "Zyx3lC0mm"),
        error="% Invalid command",
    ),
}

#: devices backed up at once: FakeNOS serves them from this process and echoes every byte
#: after a pause, so on a busy machine a crowd of sessions makes netmiko read an echo or a
#: prompt where the answer should be (no real device is that slow)
PARALLEL = 4

#: the commands Junos answers as an admin's profile folder asks (``show bogus``: refused)
JUNOS_EXTRAS = ("show version", "show system uptime", "show bogus")


def config_of(platform: str, name: str) -> str:
    return SAMPLES[platform].config.replace("{name}", name)


def command_of(platform: str) -> str:
    return profiles.get(platform).config_commands[0]


@pytest.fixture(scope="module")
def lab() -> Iterator[Any]:
    # imported here: pytest_plugins registers (and rewrites) tests.devices first
    from tests.devices import PlatformDevice, PlatformLab

    devices = []
    for i, platform in enumerate(sorted(SAMPLES)):
        token = hashlib.sha256(platform.encode()).hexdigest()[:10]
        for kind in ("ok", "err"):
            name = f"{platform}-{kind}"
            answer = config_of(platform, name) if kind == "ok" else SAMPLES[platform].error
            devices.append(
                PlatformDevice(
                    name=name,
                    platform=platform,
                    username=f"ops{i:02d}{kind}",
                    password=f"pw-{token}-{kind}",
                    outputs={command_of(platform): answer},
                )
            )
    with PlatformLab(devices) as started:
        yield started


_counter = itertools.count(1)


@pytest.fixture(scope="module")
def module_database(pg_admin: str, template_db: str) -> Iterator[str]:
    """A database of this module's own, cloned from the migrated template."""
    name = f"rookery_pp_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                sql.Identifier(name), sql.Identifier(template_db)
            )
        )
    yield _swap_db(pg_admin, name)
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="module")
def module_app(module_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    folder = tmp_path_factory.mktemp("platform-profiles")
    extras = ", ".join(f'"{c}"' for c in JUNOS_EXTRAS)
    (folder / "juniper_junos.toml").write_text(f"extra_commands = [{extras}]\n")
    (folder / "nokia_sros.toml").write_text("volatile = ['x'\n")  # broken: TOML
    application = create_app(
        make_config(
            module_database,
            folder.parent / "instance",
            ROOKERY_CONFIG_REPO=str(folder.parent / "configs"),
            ROOKERY_PLATFORM_PROFILES_DIR=str(folder),
            ROOKERY_SSH_CONNECT_TIMEOUT=10,
            ROOKERY_SSH_READ_TIMEOUT=15,
            ROOKERY_CONNECT_RETRIES=1,
            ROOKERY_DEFAULT_RETRIES=0,
            ROOKERY_WORKER_DEVICE_LIMIT=64,
        )
    )
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()
    profiles._current = None  # the built-in profiles for the modules after this one


@dataclass
class Backup:
    run: JobRun
    results: dict[str, DeviceResult]
    stored: dict[str, str | None]


@pytest.fixture(scope="module")
def backup(module_app: Any, lab: Any) -> Backup:
    """One config_backup run over every device of the lab."""
    with module_app.app_context():
        for device in lab.devices:
            inventory.create_device(
                name=device.name,
                host="127.0.0.1",
                port=device.port,
                platform=device.platform,
                tags=["lab", f"dev-{device.name}"],
                actor="test",
            )
            credentials.create_credential(
                f"cred-{device.name}",
                device.username,
                device.password,
                priority=100,
                tags=[f"dev-{device.name}"],
                actor="test",
            )
        job = jobs.create_job(
            name="every-platform",
            job_type="config_backup",
            target_tags=["lab"],
            no_overlap=False,
            max_parallel=PARALLEL,
            actor="test",
        )
        started = runs.start_run(job, triggered_by="test")
        drain(module_app, concurrency=1)
        run = reload(started.id)
        results = {
            r.device_name: r
            for r in db.session.scalars(select(DeviceResult).where(DeviceResult.run_id == run.id))
        }
        store = store_for(module_app)
        stored = {d.name: _read(store, d.name) for d in lab.devices}
        return Backup(run=run, results=results, stored=stored)


def _read(store: Any, name: str) -> str | None:
    try:
        return store.read(name)
    except Exception:  # no file: nothing was ever committed for it
        return None


# ---------------------------------------------------------------------------- per platform


def test_every_platform_netmiko_supports_that_fakenos_ships_is_covered() -> None:
    from tests.devices import FAKENOS_PLATFORMS

    assert set(SAMPLES) == set(FAKENOS_PLATFORMS)
    covered = {platforms.platform_key(p) for p in SAMPLES}
    assert len(covered) >= 25
    assert covered <= set(profiles.load().names())
    assert sum(1 for s in SAMPLES.values() if s.volatile) >= 25, "volatile lines of 25+"


@pytest.mark.parametrize("platform", sorted(SAMPLES))
def test_the_stored_config_is_the_config(backup: Backup, platform: str) -> None:
    name = f"{platform}-ok"
    result = backup.results[name]
    assert result.status == "success", (result.status, result.message)
    stored = backup.stored[name]
    assert stored is not None
    sample = SAMPLES[platform]
    config = [line.rstrip() for line in config_of(platform, name).splitlines()]
    kept = [
        line
        for line in config
        if line not in sample.volatile and not any(s in line for s in sample.secrets)
    ]
    body = stored.splitlines()
    if platform == "juniper_junos":  # the admin's extra commands come first
        body = body[body.index(config[1]) :]
        kept = kept[kept.index(config[1]) :]
    # every line but the volatile ones and those holding a secret, as the device printed
    # it: no prompt, no echo, no error message, nothing lost or added. (Blank lines aside:
    # FakeNOS echoes the CR LF RouterOS's driver sends anywhere in the answer.)
    assert [line for line in body if REMOVED not in line and line] == [x for x in kept if x]
    assert platforms.command_error(platform, stored) is None
    assert "Unknown command" not in stored
    assert result.changed and result.commit_sha == backup.run.result["commit"]


@pytest.mark.parametrize("platform", sorted(SAMPLES))
def test_volatile_lines_are_gone(backup: Backup, platform: str) -> None:
    stored = backup.stored[f"{platform}-ok"] or ""
    lines_stored = {line.strip() for line in stored.splitlines()}
    for line in SAMPLES[platform].volatile:
        assert line.strip() not in lines_stored, line


@pytest.mark.parametrize("platform", sorted(SAMPLES))
def test_secrets_are_gone(backup: Backup, platform: str) -> None:
    name = f"{platform}-ok"
    stored = backup.stored[name] or ""
    sample = SAMPLES[platform]
    for secret in sample.secrets:
        assert secret not in stored, secret
    holding = [
        line
        for line in config_of(platform, name).splitlines()
        if any(s in line for s in sample.secrets)
    ]
    assert stored.count(REMOVED) >= len(holding)
    assert "pw-" not in stored  # nor do the credentials Rookery logged in with


@pytest.mark.parametrize("platform", sorted(SAMPLES))
def test_an_error_answer_fails_and_stores_nothing(backup: Backup, platform: str) -> None:
    result = backup.results[f"{platform}-err"]
    refusal = platforms.command_error(platform, SAMPLES[platform].error)
    assert refusal is not None
    assert result.status == "failed", (result.status, result.message)
    assert "refused the configuration command" in result.message
    assert refusal in result.message
    assert backup.stored[f"{platform}-err"] is None


def test_the_run_counts_each_platform_once(backup: Backup) -> None:
    assert backup.run.status == "COMPLETED_PARTIAL_FAILURE"
    ok_names = {f"{p}-ok" for p in SAMPLES}
    assert sorted(backup.run.result["changed"]) == sorted(ok_names)


# ------------------------------------------------------ an admin's folder, the API, the page


def test_extra_commands_head_the_config_as_comments(backup: Backup) -> None:
    stored = backup.stored["juniper_junos-ok"] or ""
    head = stored.split("version 21.4R3-S4;")[0].splitlines()
    assert head[0] == "# show version"
    assert "# Model: ex4550-32f" in head
    assert "# show system uptime" in head
    assert not any("Current time" in line or " up 185 days" in line for line in head)
    assert not any("bogus" in line or "Unknown command" in line for line in stored.splitlines())
    assert all(line.startswith("#") for line in head)


def test_the_api_lists_the_platforms_and_the_broken_profile(
    module_app: Any, backup: Backup
) -> None:
    api = Api(client=module_app.test_client(), tokens=make_tokens(module_app))
    body = ok(api.get("/api/v1/platforms", as_="viewer"))
    by_type = {p["device_type"]: p for p in body["platforms"]}
    assert {platforms.platform_key(p) for p in SAMPLES} <= set(by_type)
    junos = by_type["juniper_junos"]
    assert junos["source"] == "admin" and junos["extra_commands"] == list(JUNOS_EXTRAS)
    assert junos["config_commands"] == ["show configuration"]
    assert junos["volatile_rules"] >= 1 and junos["error_rules"] == 3
    assert by_type["cisco_ios"]["source"] == "built-in"
    assert by_type["nokia_sros"]["source"] == "built-in"  # its broken file was skipped
    assert body["generic"]["device_type"] == "generic"
    [skipped] = body["skipped"]
    assert skipped["path"].endswith("nokia_sros.toml") and "invalid TOML" in skipped["reason"]
    body = ok(api.get("/api/v1/platforms?verbose=1", as_="viewer"), 422)
    assert "verbose" in body["message"]


def test_the_job_types_page_lists_the_platforms(module_app: Any, backup: Backup) -> None:
    client = module_app.test_client()
    auth = AuthActions(module_app, client)
    auth.create("pageviewer", role="viewer")
    auth.login("pageviewer")
    page = client.get("/job-types")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert 'id="platform-fortinet"' in text and 'id="platform-generic"' in text
    assert "show configuration snapshot" in text
    assert 'id="skipped-profiles"' in text and "nokia_sros.toml" in text
