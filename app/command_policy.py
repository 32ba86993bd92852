"""Which commands ``run_commands`` may send without an admin: read-only ones, by platform.

A command is read-only when its first word is an allowed verb of the device's platform
(``show``, ``display``, ``ping``...; an abbreviation counts from a minimum length, so
``sh`` is ``show`` but ``s`` is nothing) and each ``|`` filter after it is a display
filter (``include``, ``section``, Junos ``match``...). Writing filters (``| redirect``,
``| tee``, ``| append``, Junos ``| save``), a ``>`` file redirection and ``;`` (several
commands on one line on NX-OS) are never read-only. Anything else needs an admin.

A control character (CR, LF, Ctrl-U, backspace...) is refused in every command, for every
role: the device would read ``show version\\nconfigure terminal`` as two commands, and
``show\\x15configure terminal`` as the second one alone.

Admins edit the list with ``Rule``s (stored by ``app.services.command_rules``): an
*allow* rule lets operators send commands that start with its words (spelled out, on
one platform or all), a *deny* rule refuses commands that start with its words (or any
abbreviation of them) even when they are read-only. Deny wins; filters, ``;``, ``>``
and control characters are checked whatever the rules say.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from app import platforms

logger = logging.getLogger(__name__)

#: job types whose parameter holds commands sent to devices, and that parameter's name
COMMAND_PARAMS: dict[str, str] = {"run_commands": "commands"}

#: the parameter the service writes (never a user) when an admin saved commands that are
#: not read-only: the admin's name. A job without it runs read-only commands only.
APPROVED_BY = "_approved_by"

#: (verb, shortest abbreviation accepted)
_CISCO_VERBS = (("show", 2), ("ping", 4), ("traceroute", 5), ("dir", 3), ("more", 4))
_VRP_VERBS = (("display", 3), ("ping", 4), ("tracert", 5), ("dir", 3), ("more", 4))
_JUNOS_VERBS = (("show", 2), ("ping", 4), ("traceroute", 5))
#: (filter word after ``|``, shortest abbreviation accepted)
_CISCO_FILTERS = (
    ("include", 1),
    ("exclude", 2),
    ("begin", 1),
    ("section", 3),
    ("count", 3),
    ("no-more", 4),
)
_NXOS_FILTERS = (*_CISCO_FILTERS, ("grep", 4), ("egrep", 5), ("last", 4), ("json", 4), ("xml", 3))
_JUNOS_FILTERS = (
    ("match", 1),
    ("except", 1),
    ("count", 3),
    ("display", 1),
    ("find", 1),
    ("last", 1),
    ("no-more", 1),
    ("trim", 2),
    ("resolve", 3),
    ("hold", 1),
)

#: read-only verbs and filters by canonical platform (see ``platforms.platform_key``)
READ_ONLY: dict[str, tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]]] = {
    "cisco_ios": (_CISCO_VERBS, _CISCO_FILTERS),
    "cisco_xe": (_CISCO_VERBS, _CISCO_FILTERS),
    "cisco_xr": (_CISCO_VERBS, _CISCO_FILTERS),
    "cisco_asa": (_CISCO_VERBS, _CISCO_FILTERS),
    "cisco_nxos": (_CISCO_VERBS, _NXOS_FILTERS),
    "arista_eos": (_CISCO_VERBS, _NXOS_FILTERS),
    "juniper_junos": (_JUNOS_VERBS, _JUNOS_FILTERS),
    "huawei": (_VRP_VERBS, _CISCO_FILTERS),
    "huawei_vrpv8": (_VRP_VERBS, _CISCO_FILTERS),
    "hp_comware": (_VRP_VERBS, _CISCO_FILTERS),
    "linux": ((), ()),  # a shell: no command of it is known to be harmless
}


def _strictest(*tables: tuple[tuple[str, int], ...]) -> tuple[tuple[str, int], ...]:
    """Every word of ``tables`` with the longest abbreviation any of them asks for."""
    shortest: dict[str, int] = {}
    for word, length in (item for table in tables for item in table):
        shortest[word] = max(length, shortest.get(word, 0))
    return tuple(shortest.items())


#: any other platform, and a job saved before its devices are known: the verbs of every
#: platform, each filter abbreviated no shorter than on any platform (Junos ``| s`` is
#: ``save``, so ``section`` needs ``sec``)
GENERIC = (
    _strictest(_CISCO_VERBS, _VRP_VERBS, _JUNOS_VERBS, (("display", 4),)),
    _strictest(_NXOS_FILTERS, _JUNOS_FILTERS, (("section", 3),)),
)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def control_problem(command: str) -> str | None:
    """Why ``command`` can never be sent as one line (a CR, LF or other control character)."""
    found = _CONTROL.search(command)
    if found is None:
        return None
    if found.group() in "\r\n":
        return "A command may not hold a line break (CR or LF): give each command as its own item."
    return f"A command may not hold a control character (U+{ord(found.group()):04X})."


def _matches(word: str, table: Iterable[tuple[str, int]]) -> bool:
    return any(len(word) >= length and full.startswith(word) for full, length in table)


ALLOW = "allow"
DENY = "deny"


@dataclass(frozen=True)
class Rule:
    """An admin's change to the read-only list: commands starting with ``words``."""

    kind: str  # ALLOW or DENY
    words: tuple[str, ...]  # lower case
    platform: str | None = None  # a canonical platform key; None: every platform

    @property
    def text(self) -> str:
        return " ".join(self.words)

    def applies(self, key: str | None, *, any_platform: bool) -> bool:
        """Whether the rule counts for platform ``key``; with ``key`` None (a job saved
        before its devices are known) rules of one platform count only if
        ``any_platform``."""
        return self.platform is None or self.platform == key or (key is None and any_platform)

    def allows(self, words: list[str]) -> bool:
        return self.kind == ALLOW and tuple(words[: len(self.words)]) == self.words

    def denies(self, words: list[str]) -> bool:
        """Each of the rule's words typed in full or abbreviated (``sh run`` is
        ``show running-config``): an operator cannot spell around a deny."""
        return (
            self.kind == DENY
            and len(words) >= len(self.words)
            and all(full.startswith(word) for full, word in zip(self.words, words, strict=False))
        )


def rule_words(text: str) -> tuple[str, ...]:
    """A rule's words as stored: lower case, single spaces."""
    return tuple(text.lower().split())


def policy_problem(
    command: str, platform: str | None = None, rules: Iterable[Rule] = ()
) -> str | None:
    """Why ``command`` is not read-only on ``platform`` (None: on any platform), or None.

    ``rules`` are the admins' allow and deny rules (``services.command_rules.current()``);
    without them only the built-in list counts.
    """
    key = platforms.platform_key(platform) if platform else None
    verbs, filters = READ_ONLY.get(key, GENERIC) if key else GENERIC
    where = f" on {key}" if key else ""
    problem = control_problem(command)
    if problem is not None:
        return problem
    if ";" in command:
        return "';' (several commands on one line) needs an admin."
    head, *piped = command.split("|")
    words = head.split()
    lowered = [word.lower() for word in words]
    if any(word.startswith(">") for word in command.split()):
        return "Writing output to a file ('>') needs an admin."
    rules = tuple(rules)
    denied = next(
        (r for r in rules if r.applies(key, any_platform=False) and r.denies(lowered)), None
    )
    if denied is not None:
        return f"{head.strip()!r} is denied by the admins' rule {denied.text!r}{where}."
    allowed_by_rule = any(r.applies(key, any_platform=True) and r.allows(lowered) for r in rules)
    if not allowed_by_rule and (not words or not _matches(lowered[0], verbs)):
        allowed = ", ".join(verb for verb, _ in verbs) or "none"
        verb = words[0] if words else ""
        return (
            f"{verb!r} is not a read-only command{where} (allowed: {allowed}); it needs an admin."
        )
    for segment in piped:
        word = (segment.split() or [""])[0]
        if not _matches(word.lower(), filters):
            return f"'| {word}' is not a display filter{where}; it needs an admin."
    return None


def job_commands(job_type: str, params: Mapping[str, Any]) -> list[str]:
    """The commands a job of ``job_type`` sends to devices ([] for other job types)."""
    name = COMMAND_PARAMS.get(job_type)
    value = params.get(name) if name else None
    return [c for c in value if isinstance(c, str)] if isinstance(value, list) else []


def first_refused(
    commands: Iterable[str], platform: str | None = None, rules: Iterable[Rule] = ()
) -> tuple[str, str] | None:
    """The first command that is not read-only and why, or None when all are."""
    rules = tuple(rules)
    for command in commands:
        problem = policy_problem(command, platform, rules)
        if problem is not None:
            return command, problem
    return None
