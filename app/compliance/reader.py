"""How the compliance engine reads text the way hier_config does, one platform at a time.

hier_config's ``get_hconfig`` reads a whole config into a tree in one go: about 5 ms for
300 lines of IOS, most of it spent applying each of the driver's per-line substitutions
to each line. A compliance check needs a few top-level sections of a config, so this
module reads the same way but in two steps:

1. ``Reader.read`` turns the text into *records*, one per line hier_config keeps:
   ``(indent, text, line number, is_regex)``. It follows ``get_hconfig`` line for line
   (full-text substitutions, the driver's preprocessor, banners, whitespace
   normalising, per-line substitutions, indent adjustments), but tries the per-line
   substitutions only on a line that one of their patterns can match at all.
2. ``nest`` gives each record its parent the way hier_config's indentation walk does,
   and ``build`` makes an ``HConfig`` tree from the records of chosen top-level sections
   (then removes sectional exits and runs the driver's post-load callbacks, as
   ``get_hconfig`` does).

Two deliberate differences from ``get_hconfig``, both so that any config can be read:
a line repeated under the same parent (two ``interface Gi1`` sections, ``#`` separators
on Comware) is merged into the first one instead of raising ``DuplicateChildError``, and
a banner that never ends runs to the end of the text instead of raising ``ValueError``.

Two drivers are extended (hier_config's way: a driver subclass): Huawei VRP and HP
Comware print ``#`` between sections and indent the first commands of a section by one
space (`` sysname R1``); each ``#`` returns to the top level, so the lines after it are
shifted left by the first one's indentation, and Comware's ``#`` lines are dropped like
VRP's. Without that, every global command printed after an interface would be read as
one of the interface's lines.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence

from hier_config import HConfig, Platform, get_hconfig_driver
from hier_config.models import PerLineSubRule
from hier_config.platforms.driver_base import HConfigDriverBase, HConfigDriverRules
from hier_config.platforms.hp_comware5.driver import HConfigDriverHPComware5
from hier_config.platforms.huawei_vrp.driver import HConfigDriverHuaweiVrp

from app import platforms

logger = logging.getLogger(__name__)

#: Rookery platforms (netmiko device types, canonical) -> the hier_config platform that
#: reads their configs; any other platform is read with ``Platform.GENERIC``
HIER_PLATFORMS: dict[str, Platform] = {
    "cisco_ios": Platform.CISCO_IOS,
    "cisco_xe": Platform.CISCO_IOS,
    "cisco_nxos": Platform.CISCO_NXOS,
    "cisco_xr": Platform.CISCO_XR,
    "arista_eos": Platform.ARISTA_EOS,
    "juniper_junos": Platform.JUNIPER_JUNOS,
    "huawei": Platform.HUAWEI_VRP,
    "huawei_vrp": Platform.HUAWEI_VRP,
    "huawei_vrpv8": Platform.HUAWEI_VRP,
    "hp_comware": Platform.HP_COMWARE5,
    "hp_procurve": Platform.HP_PROCURVE,
    "aruba_procurve": Platform.HP_PROCURVE,
    "aruba_osswitch": Platform.HP_PROCURVE,
    "aruba_aoscx": Platform.ARUBA_AOSCX,
    "fortinet": Platform.FORTINET_FORTIOS,
    "vyos": Platform.VYOS,
    "vyatta_vyos": Platform.VYOS,
    "ruckus_fastiron": Platform.RUCKUS_FASTIRON,
    "brocade_fastiron": Platform.RUCKUS_FASTIRON,
    "nokia_srl": Platform.NOKIA_SRL,
}

#: spaces per level when the engine writes config text (remediation, findings): what
#: the device prints, so that a block reads as the engineer knows it
INDENT_WIDTH: dict[Platform, int] = {
    Platform.ARISTA_EOS: 3,
    Platform.CISCO_NXOS: 2,
    Platform.HP_PROCURVE: 3,
    Platform.ARUBA_AOSCX: 4,
    Platform.FORTINET_FORTIOS: 4,
}

#: post-load callbacks that change only the inside of the top-level section they look
#: at, so reading one section alone gives the same section as reading the whole config
#: (IOS-XR's moves a "! comment" line into the next line's comments, which the engine
#: never shows or compares)
_LOCAL_CALLBACKS = frozenset(
    {
        "hier_config.platforms.cisco_ios.driver._rm_ipv6_acl_sequence_numbers",
        "hier_config.platforms.cisco_ios.driver._remove_ipv4_acl_remarks",
        "hier_config.platforms.cisco_ios.driver._add_acl_sequence_numbers",
        "hier_config.platforms.cisco_xr.driver._fixup_xr_comments",
    }
)
#: callbacks that join sections, and the top-level lines that make them do it: a config
#: holding such a line is read whole (``vlan 10,20`` becomes ``vlan 10`` and ``vlan 20``,
#: merged with the ``vlan 10`` section if there is one)
_VLAN_LIST = re.compile(r"vlan \d[\d,\-]*")
_JOINING_CALLBACKS: dict[str, Callable[[str], bool]] = {
    "hier_config.platforms.utils.split_vlan_id_lists": lambda head: (
        _VLAN_LIST.fullmatch(head) is not None and ("," in head or "-" in head)
    ),
}

#: a record: (indent, text, 1-based line number, is_regex)
Record = tuple[int, str, int, bool]


def hier_platform(platform: str) -> Platform:
    """The hier_config platform that reads ``platform``'s configs (GENERIC if none)."""
    return HIER_PLATFORMS.get(platforms.platform_key(platform or ""), Platform.GENERIC)


def _rebase_hash_sections(text: str) -> str:
    """Shift each ``#``-separated section left by the indentation of its first line."""
    out = []
    shift: int | None = None
    for line in text.splitlines():
        content = line.lstrip()
        if not content:
            out.append(line)
            continue
        indent = len(line) - len(content)
        if content.startswith("#"):
            shift = None
            out.append(line)
            continue
        if shift is None:
            shift = indent
        out.append(line[min(shift, indent) :])
    return "\n".join(out)


class _HuaweiVrp(HConfigDriverHuaweiVrp):
    """hier_config's VRP driver, reading ``#``-separated sections as VRP means them."""

    @staticmethod
    def config_preprocessor(config_text: str) -> str:
        return _rebase_hash_sections(config_text)


class _Comware(HConfigDriverHPComware5):
    """hier_config's Comware driver, with VRP's reading of ``#`` separators."""

    @staticmethod
    def config_preprocessor(config_text: str) -> str:
        return _rebase_hash_sections(config_text)

    @staticmethod
    def _instantiate_rules() -> HConfigDriverRules:
        rules = HConfigDriverHPComware5._instantiate_rules()
        rules.per_line_sub.append(PerLineSubRule(search=r"^\s*[#!].*", replace=""))
        return rules


_DRIVERS: dict[Platform, type[HConfigDriverBase]] = {
    Platform.HUAWEI_VRP: _HuaweiVrp,
    Platform.HP_COMWARE5: _Comware,
}


def _name(function: Callable[..., object]) -> str:
    return f"{getattr(function, '__module__', '')}.{getattr(function, '__qualname__', '')}"


class Reader:
    """One hier_config platform's way of reading text, compiled once and shared by threads
    (nothing here changes after ``__init__``)."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        driver_class = _DRIVERS.get(platform)
        self.driver: HConfigDriverBase = (
            driver_class() if driver_class else get_hconfig_driver(platform)
        )
        rules = self.driver.rules
        self.indent_width = INDENT_WIDTH.get(platform, 1)
        #: the driver writes commands as ``set …`` / ``delete …`` lines (Junos, VyOS, SR Linux)
        self.set_syntax = self.driver.declaration_prefix == "set "
        own = type(self.driver).config_preprocessor is not HConfigDriverBase.config_preprocessor
        self._preprocess = self.driver.config_preprocessor if own else None
        self._full_text_sub = [(re.compile(r.search), r.replace) for r in rules.full_text_sub]
        self._per_line = [(re.compile(r.search), r.replace) for r in rules.per_line_sub]
        self._any_per_line = _alternation([r.search for r in rules.per_line_sub])
        self._indent_adjust = [
            (re.compile(r.start_expression), re.compile(r.end_expression))
            for r in rules.indent_adjust
        ]
        self.callbacks = tuple(rules.post_load_callbacks)
        names = [_name(callback) for callback in self.callbacks]
        #: sections can be read one at a time (unless ``joins`` says otherwise)
        self.sectionable = all(n in _LOCAL_CALLBACKS or n in _JOINING_CALLBACKS for n in names)
        self._joins = [_JOINING_CALLBACKS[n] for n in names if n in _JOINING_CALLBACKS]

    def joins(self, head: str) -> bool:
        """A post-load callback would join the section starting ``head`` with others."""
        return any(test(head) for test in self._joins)

    # ------------------------------------------------------------------ reading

    def read(self, text: str) -> list[Record]:
        """The records of a device config, as ``get_hconfig`` would see its lines."""
        for pattern, replace in self._full_text_sub:
            text = pattern.sub(replace, text)
        if self._preprocess is not None:
            text = self._preprocess(text)
        return self.records(text.splitlines(), rules=False)

    def preprocess(self, text: str) -> str:
        """``text`` through the driver's preprocessor (Junos braces to ``set`` lines …)."""
        return self._preprocess(text) if self._preprocess is not None else text

    def records(self, lines: Sequence[str], *, rules: bool) -> list[Record]:
        """Records of ``lines`` (numbered from 1). With ``rules``, a line whose text starts
        with ``re:`` is a regular expression: kept as written (no substitution), its
        indentation taken as is."""
        out: list[Record] = []
        in_banner = False
        banner: list[str] = []
        banner_line = 0
        end_lines = {"EOF", "%", "!"}
        end_contains: list[str] = []
        adjust = 0
        adjust_ends: list[re.Pattern[str]] = []
        per_line = self._per_line
        any_per_line = self._any_per_line
        indent_adjust = self._indent_adjust
        for number, line in enumerate(lines, 1):
            if in_banner:
                if line != "!":
                    banner.append(line)
                if (
                    line.startswith("^")
                    or line in end_lines
                    or any(end in line for end in end_contains)
                ):
                    in_banner = False
                    out.append((0, "\n".join(banner).strip(), banner_line, False))
                    banner = []
                continue
            content = line.lstrip()
            indent = len(line) - len(content)
            if rules and content.startswith("re:"):
                out.append((indent + adjust, content[3:].strip(), number, True))
                continue
            if line.startswith("banner ") and line != "banner motd ##":
                in_banner = True
                banner.append(line)
                banner_line = number
                words = line.split()
                if len(words) > 2:
                    end_contains.append(words[2])
                    if words[2].startswith('"'):
                        end_contains.append('"')
                    end_lines.add(words[2][:1])
                    end_lines.add(words[2][:2])
                continue
            line = " " * indent + " ".join(content.split())
            if per_line and (any_per_line is None or any_per_line.search(line)):
                for pattern, replace in per_line:
                    line = pattern.sub(replace, line)
            line = line.rstrip()
            if not line:
                continue
            content = line.lstrip()
            out.append((len(line) - len(content) + adjust, content, number, False))
            if indent_adjust:
                for start, end in indent_adjust:
                    if start.search(content):
                        adjust += 1
                        adjust_ends.append(end)
                        break
                if adjust_ends and adjust_ends[0].search(content):
                    adjust -= 1
                    adjust_ends.pop(0)
        if in_banner:  # hier_config raises; the banner runs to the end instead
            out.append((0, "\n".join(banner).strip(), banner_line, False))
        return out

    # ----------------------------------------------------------------- building

    def build(
        self, records: Sequence[Record], parents: Sequence[int], blocks: Iterable[range]
    ) -> HConfig:
        """The tree of the records in ``blocks`` (each a top-level line and its lines), then
        sectional exits removed and post-load callbacks run, as ``get_hconfig`` does."""
        root = HConfig(self.driver)
        nodes = {}
        for block in blocks:
            for i in block:
                parent = parents[i]
                node = root if parent < 0 else nodes[parent]
                nodes[i] = node.add_child(records[i][1], return_if_present=True)
        for child in tuple(root.all_children()):
            child.delete_sectional_exit()
        for callback in self.callbacks:
            callback(root)
        return root


def nest(indents: Sequence[int]) -> list[int]:
    """Each line's parent (an index, -1 for the top level), as hier_config finds it.

    hier_config walks up from the current section while a line is indented no deeper
    than it, then makes the line a child of the line before when indented deeper than
    that one. A line at the top level is the start of a new section: the lines up to
    the next one are its own, so a section can be read apart from the others.
    """
    parents: list[int] = []
    stack: list[int] = []  # the current section and its parents, innermost last
    recent = -1
    for i, indent in enumerate(indents):
        while stack and indent <= indents[stack[-1]]:
            stack.pop()
        if recent >= 0 and indent > indents[recent]:
            stack.append(recent)
        parents.append(stack[-1] if stack else -1)
        recent = i
    return parents


_CORE = re.compile(r"(?:\.\*)?(.*?)(?:(?<!\\)\.\*)?", re.DOTALL)


def _alternation(patterns: Sequence[str]) -> re.Pattern[str] | None:
    """One pattern that finds a match in a line iff one of ``patterns`` does (None when
    they cannot be joined: back-references, global flags)."""
    if not patterns or any(re.search(r"\\\d|\(\?P=|^\(\?[a-zA-Z]+\)", p) for p in patterns):
        return None
    # ".*speed.*" finds a match in a line iff "speed" does (a line has no newline), and
    # without the ".*" a long line that holds no "speed" is not scanned once per character
    cores = [_CORE.fullmatch(p).group(1) for p in patterns]  # type: ignore[union-attr]
    if not all(cores):
        return None
    try:
        return re.compile("|".join(f"(?:{p})" for p in cores))
    except re.error:
        return None


_readers: dict[Platform, Reader] = {}
_readers_lock = threading.Lock()


def reader(platform: Platform) -> Reader:
    """The shared Reader of a hier_config platform."""
    found = _readers.get(platform)
    if found is None:
        with _readers_lock:
            found = _readers.get(platform)
            if found is None:
                found = _readers[platform] = Reader(platform)
    return found
