"""Network platforms by netmiko device type: their canonical names, and what they print
when they refuse a command.

A device that does not know a command still answers, at its prompt, with an error
message instead of output: ``% Invalid input detected at '^' marker.`` on IOS,
``syntax error, expecting <command>.`` on Junos, ``Error: Unrecognized command`` on VRP.
Read as output, that answer made a run of show commands a success and could have been
committed to git as a configuration. ``command_error`` recognises it.
"""

from __future__ import annotations

import functools
import logging
import re

logger = logging.getLogger(__name__)

#: other names of a platform (netmiko's older names, short forms) -> its canonical key
ALIASES: dict[str, str] = {
    "juniper": "juniper_junos",
    "cisco_iosxe": "cisco_xe",
    "eos": "arista_eos",
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
#: any platform else: every refusal above but a shell's
GENERIC: tuple[str, ...] = (_PERCENT, _UNKNOWN, _SYNTAX, _ERROR)

_CARET = re.compile(r"\s*\^\s*")  # the marker line under the refused word


def platform_key(platform: str) -> str:
    """The canonical name of a netmiko device type: ``cisco_ios_ssh`` -> ``cisco_ios``."""
    key = platform.strip().lower()
    for suffix in ("_ssh", "_telnet", "_serial"):
        key = key.removesuffix(suffix)
    return ALIASES.get(key, key)


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
