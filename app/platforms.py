"""Network platforms by netmiko device type: their canonical names, the names people
write for them instead (``suggest``), and what they print when they refuse a command.

A device that does not know a command still answers, at its prompt, with an error
message instead of output: ``% Invalid input detected at '^' marker.`` on IOS,
``syntax error, expecting <command>.`` on Junos, ``Error: Unrecognized command`` on VRP.
Read as output, that answer made a run of show commands a success and could have been
committed to git as a configuration. ``command_error`` recognises it with the ``errors``
of the platform's profile (``app.profiles``, one data file per platform).

Netmiko's device types are the canonical names. Nornir, NAPALM and Ansible name
platforms otherwise (``ios``, ``junos``, ``cisco.nxos.nxos``): ``LIBRARY_NAMES`` maps
them through netutils' library mapper (a Nornir import takes them).
"""

from __future__ import annotations

import difflib
import functools
import logging
import re
from collections.abc import Collection
from typing import Any

logger = logging.getLogger(__name__)

#: other names of a platform (netmiko's older names, short forms, netmiko's synonyms for
#: one driver) -> its canonical key: the name of its profile
ALIASES: dict[str, str] = {
    "juniper": "juniper_junos",
    "cisco_iosxe": "cisco_xe",
    "eos": "arista_eos",
    "alcatel_sros": "nokia_sros",
    "avaya_ers": "extreme_ers",
    "avaya_vsp": "extreme_vsp",
    "brocade_fastiron": "ruckus_fastiron",
    "brocade_netiron": "extreme_netiron",
    "brocade_vyos": "vyos",
    "vyatta_vyos": "vyos",
    "huawei_vrp": "huawei",
    "h3c_comware": "hp_comware",
    "dell_os9": "dell_force10",
    "dell_dnos9": "dell_force10",
    "extreme": "extreme_exos",
    "aruba_procurve": "hp_procurve",
    "aruba_osswitch": "hp_procurve",
    "ubiquiti_edge": "ubiquiti_edgeswitch",
    "huawei_olt": "huawei_smartax",
    "cisco_s500": "cisco_s300",
}

#: names people write for a platform that are not device types (product names, vendor
#: prefixes), by their letters and digits alone ("IOS-XE", "ios_xe" and "iosxe" are one):
#: only ever suggested, never taken in place of the type
SPOKEN: dict[str, str] = {
    "iosxe": "cisco_xe",
    "ciscoiosxe": "cisco_xe",
    "iosxr": "cisco_xr",
    "ciscoiosxr": "cisco_xr",
    "nexus": "cisco_nxos",
    "cisconexus": "cisco_nxos",
    "asa": "cisco_asa",
    "panos": "paloalto_panos",
    "paloalto": "paloalto_panos",
    "fortios": "fortinet",
    "fortigate": "fortinet",
    "routeros": "mikrotik_routeros",
    "mikrotik": "mikrotik_routeros",
    "procurve": "hp_procurve",
    "comware": "hp_comware",
    "vrp": "huawei",
    "screenos": "juniper_screenos",
    "exos": "extreme_exos",
    "sros": "nokia_sros",
    "edgeos": "ubiquiti_edgerouter",
}

#: how many lines of an answer are read for an error: a refusal is the first thing a
#: device prints (IOS-XR may print its clock line first), so the rest of a long output
#: (logs, a configuration) can never be mistaken for one
ERROR_HEAD_LINES = 3

_CARET = re.compile(r"\s*\^\s*")  # the marker line under the refused word


def __getattr__(name: str) -> Any:
    # Computed on use: the profiles in force change when an app loads an admin folder,
    # and netutils' tables need netmiko's list of device types.
    if name == "PROFILED":  # the platforms with a profile of their own
        from app import profiles

        return profiles.current().names()
    if name in ("LIBRARY_NAMES", "NAPALM"):
        return library_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def platform_key(platform: str) -> str:
    """The canonical name of a netmiko device type: ``cisco_ios_ssh`` -> ``cisco_ios``."""
    key = platform.strip().lower()
    for suffix in ("_ssh", "_telnet", "_serial"):
        key = key.removesuffix(suffix)
    return ALIASES.get(key, key)


@functools.cache
def known_platforms() -> frozenset[str]:
    """Every netmiko device type a device may name (``autodetect`` is not a type)."""
    from netmiko.ssh_dispatcher import CLASS_MAPPER  # here: netmiko is slow to import

    return frozenset(CLASS_MAPPER) - {"autodetect"}


@functools.cache
def library_names() -> dict[str, str]:
    """Nornir/NAPALM and Ansible platform names (lower case) and the netmiko device types
    they mean, by netutils' library mapper (``ios`` -> ``cisco_ios``, ``huawei_vrp`` ->
    ``huawei``, ``cisco.nxos.nxos`` -> ``cisco_nxos``)."""
    from netutils import lib_mapper

    known = known_platforms()
    names: dict[str, str] = {}
    for mapper in (lib_mapper.ANSIBLE_LIB_MAPPER, lib_mapper.NAPALM_LIB_MAPPER):
        for name, normalised in mapper.items():
            device_type = lib_mapper.NETMIKO_LIB_MAPPER_REVERSE.get(normalised)
            if device_type in known:
                names[name.lower()] = device_type
    return names


def _letters(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def suggest(name: str, valid: Collection[str] | None = None) -> str | None:
    """The platform of ``valid`` (default: every known one) ``name`` most likely means,
    or None when none is close.

    An alias, a NAPALM/Ansible name or a product name first (``cisco_iosxe`` -> ``cisco_xe``,
    ``junos`` -> ``juniper_junos``, ``IOS-XE`` -> ``cisco_xe``), then the same letters
    (``aristaeos`` -> ``arista_eos``), then the closest spelling (``hp_procurv`` ->
    ``hp_procurve``); a type found with a transport suffix or as an alias is given by its
    canonical name (``junipr`` -> ``juniper`` -> ``juniper_junos``).
    """
    valid = known_platforms() if valid is None else valid
    key = name.strip().lower()
    canonical = platform_key(key)
    letters = _letters(key)
    named = [
        canonical,
        library_names().get(key),
        SPOKEN.get(letters),
        SPOKEN.get(_letters(canonical)),
    ]
    for candidate in named:
        if candidate and candidate != key and candidate in valid:
            return candidate
    names = sorted(valid)
    found = [v for v in names if _letters(v) == letters]
    found = found or difflib.get_close_matches(key, names, n=1, cutoff=0.8)
    if not found:
        return None
    return platform_key(found[0]) if platform_key(found[0]) in valid else found[0]


def command_error(platform: str, output: str) -> str | None:
    """The line of ``output`` in which the device refused its command, or None.

    Only the first ``ERROR_HEAD_LINES`` lines that say something are read (blank lines
    and the ``^`` marker line do not count). The line is returned stripped, e.g.
    ``% Invalid input detected at '^' marker.``. The refusals are the ``errors`` of the
    platform's profile; a platform whose profile lists none never refuses.
    """
    from app import profiles

    pattern = profiles.get(platform).error_pattern
    if pattern is None:
        return None
    read = 0
    for line in output.splitlines():
        if not line.strip() or _CARET.fullmatch(line):
            continue
        if pattern.match(line):
            return line.strip()
        read += 1
        if read == ERROR_HEAD_LINES:
            break
    return None
