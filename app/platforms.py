"""Network platforms by netmiko device type: their canonical names, the names people
write for them instead (``suggest``), and what they print when they refuse a command.

A device that does not know a command still answers, at its prompt, with an error
message instead of output: ``% Invalid input detected at '^' marker.`` on IOS,
``syntax error, expecting <command>.`` on Junos, ``Error: Unrecognized command`` on VRP.
Read as output, that answer made a run of show commands a success and could have been
committed to git as a configuration. ``command_error`` recognises it.
"""

from __future__ import annotations

import difflib
import functools
import logging
import re
from collections.abc import Collection

logger = logging.getLogger(__name__)

#: other names of a platform (netmiko's older names, short forms) -> its canonical key
ALIASES: dict[str, str] = {
    "juniper": "juniper_junos",
    "cisco_iosxe": "cisco_xe",
    "eos": "arista_eos",
}

#: Nornir/NAPALM platform names and the netmiko device types they mean (a Nornir import
#: takes them)
NAPALM: dict[str, str] = {
    "ios": "cisco_ios",
    "eos": "arista_eos",
    "junos": "juniper_junos",
    "nxos": "cisco_nxos",
    "nxos_ssh": "cisco_nxos",
    "iosxr": "cisco_xr",
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
    "routeros": "mikrotik_routeros",
}

#: how many lines of an answer are read for an error: a refusal is the first thing a
#: device prints (IOS-XR may print its clock line first), so the rest of a long output
#: (logs, a configuration) can never be mistaken for one
ERROR_HEAD_LINES = 3

# Each pattern is matched at the start of a line (after its indentation), ignoring case.
#: Cisco-style refusals, printed by IOS, IOS-XE, IOS-XR, NX-OS, EOS, Comware and many more
#: ("% Invalid input detected", "% Unavailable command", "% Too many parameters found")
_PERCENT = (
    r"%\s*(?:invalid (?:input|command)"
    r"|(?:unknown|incomplete|ambiguous|unrecognized|unavailable|bad) command"
    r"|(?:too many|wrong) parameter|error\b)"
)
#: Junos "unknown command.", and the bare "Unknown command" of simple CLIs
_UNKNOWN = r"unknown command"
#: Junos "syntax error, expecting <command>.", NX-OS "Syntax error while parsing ..."
_SYNTAX = r"syntax error"
#: NX-OS and EOS "Error: ...", Junos "error: ...", VRP "Error: Unrecognized command found ..."
_ERROR = r"error:"
#: ASA "ERROR: % Invalid input detected at '^' marker."
_ASA_ERROR = r"error:\s*%"
#: a Unix shell: "-bash: foo: command not found"
_SHELL = r"(?:\S+:\s+)*\S+: (?:command not found|not found)"

#: the refusals each platform prints; platforms not listed use GENERIC
ERROR_PATTERNS: dict[str, tuple[str, ...]] = {
    "cisco_ios": (_PERCENT, _UNKNOWN),
    "cisco_xe": (_PERCENT, _UNKNOWN),
    "cisco_xr": (_PERCENT, _UNKNOWN),
    "cisco_asa": (_PERCENT, _ASA_ERROR),
    "cisco_nxos": (_PERCENT, _UNKNOWN, _SYNTAX, _ERROR),
    "arista_eos": (_PERCENT, _UNKNOWN, _ERROR),
    "juniper_junos": (_UNKNOWN, _SYNTAX, _ERROR),
    "huawei": (_ERROR, _PERCENT),
    "huawei_vrpv8": (_ERROR, _PERCENT),
    "hp_comware": (_PERCENT, _ERROR),
    "linux": (_SHELL,),
}
#: the platforms Rookery has a profile of: it reads their refusals (above) and their
#: read-only commands (``command_policy``); every other device type gets the generic ones
PROFILED: tuple[str, ...] = tuple(ERROR_PATTERNS)
#: any platform else: every refusal above but a shell's
GENERIC: tuple[str, ...] = (_PERCENT, _UNKNOWN, _SYNTAX, _ERROR)

_CARET = re.compile(r"\s*\^\s*")  # the marker line under the refused word


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


def _letters(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def suggest(name: str, valid: Collection[str] | None = None) -> str | None:
    """The platform of ``valid`` (default: every known one) ``name`` most likely means,
    or None when none is close.

    An alias, a NAPALM name or a product name first (``cisco_iosxe`` -> ``cisco_xe``,
    ``junos`` -> ``juniper_junos``, ``IOS-XE`` -> ``cisco_xe``), then the same letters
    (``aristaeos`` -> ``arista_eos``), then the closest spelling (``hp_procurv`` ->
    ``hp_procurve``); a type found with a transport suffix or as an alias is given by its
    canonical name (``junipr`` -> ``juniper`` -> ``juniper_junos``).
    """
    valid = known_platforms() if valid is None else valid
    key = name.strip().lower()
    canonical = platform_key(key)
    letters = _letters(key)
    named = [canonical, NAPALM.get(key), SPOKEN.get(letters), SPOKEN.get(_letters(canonical))]
    for candidate in named:
        if candidate and candidate != key and candidate in valid:
            return candidate
    names = sorted(valid)
    found = [v for v in names if _letters(v) == letters]
    found = found or difflib.get_close_matches(key, names, n=1, cutoff=0.8)
    if not found:
        return None
    return platform_key(found[0]) if platform_key(found[0]) in valid else found[0]


@functools.lru_cache(maxsize=64)
def _error_pattern(key: str) -> re.Pattern[str]:
    patterns = ERROR_PATTERNS.get(key, GENERIC)
    return re.compile(r"\s*(?:" + "|".join(patterns) + ")", re.IGNORECASE)


def command_error(platform: str, output: str) -> str | None:
    """The line of ``output`` in which the device refused its command, or None.

    Only the first ``ERROR_HEAD_LINES`` lines that say something are read (blank lines
    and the ``^`` marker line do not count). The line is returned stripped, e.g.
    ``% Invalid input detected at '^' marker.``.
    """
    pattern = _error_pattern(platform_key(platform))
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
