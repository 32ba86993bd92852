"""The compliance engine: rules written as config text, checked against backed-up configs.

A rule (``RuleSpec``) holds ``required`` lines, which the config must have, and
``forbidden`` lines, which it must not. ``compile_rule`` checks a rule once and gives a
``CompiledRule``; ``parse_config`` wraps one device's config; ``check`` compares the two
and returns a ``Finding``: what is missing, what is there but forbidden, and the
commands (hier_config's remediation for the device's platform) that would fix it.

Nothing here touches the database or Flask; compiled rules are immutable and can be
shared by threads, a ``ParsedConfig`` belongs to one thread at a time.

Speed: a config is not parsed when it is wrapped. The first check splits its text into
top-level sections (a fast pass over the lines, see ``reader``); each check then builds
hier_config trees only for the sections its rule's top-level lines name (or whose first
line matches a top-level ``re:`` line), once per config. A config whose platform's
post-load callbacks join sections (``vlan 10,20`` on IOS) is built whole instead.
"""

from __future__ import annotations

import bisect
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from hier_config import HConfig, HConfigChild, Platform, WorkflowRemediation

from app import platforms
from app.compliance import reader as reading

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_LINES",
    "MAX_LINE_LENGTH",
    "MAX_NAME",
    "REGEX_PREFIX",
    "CompiledRule",
    "Finding",
    "ParsedConfig",
    "RuleError",
    "RuleSpec",
    "check",
    "compile_rule",
    "hier_platform",
    "in_scope",
    "parse_config",
    "rule_text_for",
]

#: the most lines ``required`` or ``forbidden`` may hold
MAX_LINES = 500
#: the longest line a rule may hold
MAX_LINE_LENGTH = 1000
#: the longest rule name
MAX_NAME = 200
#: what marks a line of a rule as a regular expression
REGEX_PREFIX = "re:"
#: the fields of a rule that hold lines
FIELDS = ("required", "forbidden")

hier_platform = reading.hier_platform

# Control characters other than tab and line breaks: invisible in a form, and some of
# them (vertical tab, form feed, U+2028 ...) break lines where a person sees none.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x85\u2028\u2029]")
_BRACE_CLOSE = re.compile(r"\};?")
# the regex parts of a set line read from braces: \x00<line number>\x02<regex>\x01
_MARKED = re.compile(r"\x00(\d+)\x02(.*?)\x01")
_SPECIAL = re.compile(r"([.^$*+?{}\[\]\\|()])")
_WHITESPACE = re.compile(r"\s+")
# The platforms a rule naming none is read for when it is compiled, so that its errors
# show then: the indented syntax, and the set syntax of Junos braces.
_EAGER = (Platform.CISCO_IOS, Platform.JUNIPER_JUNOS)


class RuleError(ValueError):
    """A rule that cannot be used.

    ``field`` is the part of the rule at fault ("required", "forbidden", "name",
    "platforms" or "tags"), ``line`` the 1-based line number in it (None when the fault
    is not on one line); ``str(error)`` is a sentence for a person, e.g. ``forbidden,
    line 3: not a regular expression: missing ), unterminated subpattern at position 7.``
    """

    def __init__(self, field_name: str, line: int | None, problem: str) -> None:
        self.field = field_name
        self.line = line
        where = f"{field_name}, line {line}" if line is not None else field_name
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class RuleSpec:
    """A compliance rule as a person writes it.

    ``required`` is config text that must be present and ``forbidden`` config text that
    must be absent, each written in the syntax of the devices it is for and indented as
    they print it: a line indented under another is looked for under it (and only there).

    - A line is compared as hier_config reads config lines: whitespace runs count as one
      space, and lines the platform's reader drops (``!`` comments on IOS, EOS and
      NX-OS, ``#`` on VRP) are dropped from rules too. Secrets in backed-up configs read
      ``<removed>``. On IOS, hier_config numbers the entries of named access lists (``10
      permit …``, ``20 deny …``) and drops their remarks: match an entry with ``re:\\d+
      permit 10\\.0\\.0\\.0 0\\.0\\.0\\.255``.
    - A line whose text starts with ``re:`` (after its indentation) is a regular
      expression that must match a whole config line, e.g. ``re:interface
      GigabitEthernet\\S+``, ``re:ntp server 10\\.0\\.0\\.[12]``. Other lines are literal.
    - ``required``: a literal line must exist (if a literal parent is missing, it and
      every required line under it are missing). A ``re:`` line with lines under it is a
      scope: they are required under every config line it matches, and when it matches
      none there is nothing in scope (compliant). A ``re:`` line without lines under it
      must match at least one line at its place; when none does it is missing, and
      cannot be remediated (no command is invented for it).
    - ``forbidden``: the lines without lines under them are forbidden; the lines above
      them only say where to look. A forbidden line at the top of the text is looked for
      at the top level only: ``shutdown`` forbids a global ``shutdown`` and not the
      ``shutdown`` of an interface, which ``re:interface .*`` / `` shutdown`` forbids.
    - Junos, VyOS and SR Linux configs are read as ``set`` lines (hier_config converts
      their braces): write such a rule as ``set …`` lines or in braces, which are
      converted the same way (any indentation; ``;`` optional). In braces, ``re:`` may
      start a statement or a block's name and the text around it is literal: under
      ``system {`` / ``ntp {``, ``re:server 10\\.0\\.0\\.\\d+;`` matches ``set system ntp
      server 10.0.0.7``. A ``re:`` line outside braces matches a whole ``set`` line.

    ``platforms`` (netmiko device types) and ``tags`` limit the devices a rule is for:
    empty means every platform / every device; otherwise a device must be of one of the
    platforms and carry one of the tags.
    """

    name: str
    required: str = ""
    forbidden: str = ""
    platforms: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


@dataclass
class Finding:
    """The result of checking one rule against one config.

    ``missing`` and ``unexpected`` hold one entry per line at fault, written as config
    text: the line with the config lines above it (for context) and, for a missing
    section, the required lines under it, each indented as the device indents (one space
    per level on IOS, three on EOS, two on NX-OS; Junos ``set`` lines stand alone). E.g.
    ``"interface GigabitEthernet0/1\\n spanning-tree portfast"``. A missing ``re:`` line
    keeps its ``re:`` mark. ``unexpected`` entries are the config's own lines.

    ``remediation`` is the commands that make the device compliant for this rule (IOS and
    EOS ``no …``, Junos ``set``/``delete`` …), "" when compliant or when nothing can be
    written (only ``re:`` lines are missing).
    """

    compliant: bool
    missing: list[str]
    unexpected: list[str]
    remediation: str
    #: set when the check itself could not run (a rule module that raised): then
    #: compliant is False and this says why
    error: str | None = None


# ------------------------------------------------------------------------ rules


class _Line:
    """One line of a compiled rule: literal text, or a pattern, and the lines under it."""

    __slots__ = ("children", "pattern", "prefix", "text")

    def __init__(self, text: str, pattern: re.Pattern[str] | None) -> None:
        self.text = text
        self.pattern = pattern
        #: what every line the pattern matches starts with (narrows the search)
        self.prefix = _literal_prefix(text) if pattern is not None else ""
        self.children: list[_Line] = []

    @property
    def shown(self) -> str:
        """The line as a person wrote it: literal text, or ``re:`` and the pattern."""
        return self.text if self.pattern is None else REGEX_PREFIX + self.text

    def walk(self, depth: int = 0) -> Iterator[tuple[int, _Line]]:
        yield depth, self
        for child in self.children:
            yield from child.walk(depth + 1)


@dataclass(frozen=True)
class _Form:
    """A rule as read for one hier_config platform."""

    required: tuple[_Line, ...]
    forbidden: tuple[_Line, ...]


class CompiledRule:
    """A checked rule, ready for ``check``; immutable and safe to share between threads.

    The rule is read in the syntax of each platform it is checked on (a Junos device
    reads it as ``set`` lines), once per platform: the readings for the rule's platforms
    (or, for a rule of every platform, for IOS and Junos) are made by ``compile_rule``,
    which raises their errors; others on first use.
    """

    __slots__ = ("_forms", "_lock", "name", "platforms", "spec", "tags")

    def __init__(self, spec: RuleSpec, rule_platforms: tuple[str, ...], tags: tuple[str, ...]):
        self.spec = spec
        self.name = spec.name
        self.platforms = rule_platforms
        self.tags = tags
        self._forms: dict[Platform, _Form | RuleError] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CompiledRule({self.name!r})"

    def form(self, platform: Platform) -> _Form:
        """The rule as read for ``platform``; RuleError if it cannot be read there."""
        found = self._forms.get(platform)
        if found is None:
            with self._lock:
                found = self._forms.get(platform)
                if found is None:
                    try:
                        found = _read_rule(self.spec, reading.reader(platform))
                    except RuleError as exc:
                        found = exc
                    self._forms[platform] = found
        if isinstance(found, RuleError):
            raise found
        return found


def compile_rule(spec: RuleSpec) -> CompiledRule:
    """Check ``spec`` and compile it; RuleError says what is wrong, and where.

    Refused: a name that is empty, longer than MAX_NAME or not one line; required and
    forbidden both empty; more than MAX_LINES lines or a line longer than MAX_LINE_LENGTH;
    a NUL or another control character; indentation with a tab; a line indented under
    nothing, or indented like no line above it; ``re:`` followed by no pattern or by one
    that does not compile; unbalanced braces (for Junos-style platforms).
    """
    name = spec.name if isinstance(spec.name, str) else ""
    if not name.strip():
        raise RuleError("name", None, "a rule needs a name.")
    if len(name) > MAX_NAME:
        raise RuleError("name", None, f"at most {MAX_NAME} characters.")
    if _CONTROL.search(name) or "\n" in name or "\r" in name:
        raise RuleError("name", None, "one line of text, without control characters.")
    rule_platforms = _names(spec.platforms, "platforms", platforms.platform_key)
    tags = _names(spec.tags, "tags", str.strip)
    for field_name in FIELDS:
        text = getattr(spec, field_name)
        if not isinstance(text, str):
            raise RuleError(field_name, None, "must be text.")
        _check_text(field_name, text)
    if not spec.required.strip() and not spec.forbidden.strip():
        raise RuleError(
            "required", None, "required and forbidden are both empty: give at least one line."
        )
    rule = CompiledRule(spec, rule_platforms, tags)
    readers = {reading.hier_platform(p) for p in rule_platforms} or set(_EAGER)
    for platform in sorted(readers, key=lambda p: p.name):
        rule.form(platform)
    return rule


def in_scope(rule: CompiledRule | object, platform: str, tags: Iterable[str]) -> bool:
    """``rule`` is for a device of ``platform`` carrying ``tags`` (any object with
    ``platforms`` and ``tags`` will do, e.g. a ModuleRule)."""
    rule_platforms = getattr(rule, "platforms", ())
    if rule_platforms and platforms.platform_key(platform or "") not in rule_platforms:
        return False
    rule_tags = getattr(rule, "tags", ())
    return not rule_tags or any(tag in rule_tags for tag in tags)


def rule_text_for(rule: CompiledRule, platform: str, field_name: str = "required") -> str:
    """``required`` (or ``forbidden``) as the engine reads it for a device of ``platform``:
    e.g. a Junos rule in braces as the ``set`` lines it checks. RuleError if the rule
    cannot be read for that platform."""
    hier = reading.hier_platform(platform)
    lines = getattr(rule.form(hier), field_name)
    width = reading.reader(hier).indent_width
    return "\n".join(
        " " * width * depth + line.shown for top in lines for depth, line in top.walk()
    )


def _names(values: object, field_name: str, clean: Callable[[str], str]) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise RuleError(field_name, None, "must be a list of names.")
    out = []
    for value in values:
        if not isinstance(value, str) or not value.strip() or _CONTROL.search(value):
            raise RuleError(field_name, None, f"{value!r} is not a name.")
        out.append(clean(value))
    return tuple(dict.fromkeys(out))


def _check_text(field_name: str, text: str) -> None:
    """What is wrong with a rule's text whatever platform reads it."""
    control = _CONTROL.search(text)
    if control is not None:
        char = control.group()
        what = "a NUL character" if char == "\x00" else f"a control character (U+{ord(char):04X})"
        raise RuleError(field_name, text.count("\n", 0, control.start()) + 1, f"contains {what}.")
    lines = text.splitlines()
    if len(lines) > MAX_LINES:
        raise RuleError(field_name, None, f"{len(lines)} lines; a rule holds at most {MAX_LINES}.")
    for number, line in enumerate(lines, 1):
        if len(line) > MAX_LINE_LENGTH:
            raise RuleError(
                field_name,
                number,
                f"{len(line)} characters long; a line holds at most {MAX_LINE_LENGTH}.",
            )
        content = line.lstrip()
        if "\t" in line[: len(line) - len(content)]:
            raise RuleError(
                field_name, number, "indented with a tab: indent with spaces, as the device does."
            )
        if content.startswith(REGEX_PREFIX):
            _compile(field_name, number, _regex_body(content))


def _regex_body(content: str) -> str:
    """The pattern of a ``re:`` line (its content from ``re:`` on)."""
    return content[len(REGEX_PREFIX) :].strip()


def _compile(field_name: str, number: int | None, pattern: str) -> re.Pattern[str]:
    if not pattern:
        raise RuleError(field_name, number, "re: is not followed by a regular expression.")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise RuleError(field_name, number, f"not a regular expression: {exc}.") from None
    except (OverflowError, RecursionError, ValueError) as exc:
        raise RuleError(field_name, number, f"not a usable regular expression: {exc}.") from None


def _read_rule(spec: RuleSpec, reader: reading.Reader) -> _Form:
    return _Form(
        required=_read_field("required", spec.required, reader),
        forbidden=_read_field("forbidden", spec.forbidden, reader),
    )


def _read_field(field_name: str, text: str, reader: reading.Reader) -> tuple[_Line, ...]:
    if not text.strip():
        return ()
    if reader.set_syntax:
        records = _set_records(field_name, text, reader)
    else:
        raw = reader.preprocess(text).splitlines()
        records = reader.records(raw, rules=True)
        _check_indentation(field_name, records, raw)
    parents = reading.nest([r[0] for r in records])
    tops: list[_Line] = []
    made: list[_Line] = []
    index: dict[tuple[int, bool, str], _Line] = {}
    for i, (_indent, text_, number, regex) in enumerate(records):
        parent = parents[i]
        key = (parent if parent < 0 else id(made[parent]), regex, text_)
        line = index.get(key)
        if line is None:  # a line repeated under the same parent is the same line
            pattern = _compile(field_name, number, text_) if regex else None
            line = index[key] = _Line(text_, pattern)
            (tops if parent < 0 else made[parent].children).append(line)
        made.append(line)
    return tuple(tops)


def _check_indentation(
    field_name: str, records: Sequence[reading.Record], raw: Sequence[str]
) -> None:
    """Each line is indented more than its parent, and as much as its siblings."""
    levels: list[int] = []
    for _indent, _text, number, _regex in records:
        line = raw[number - 1]
        indent = len(line) - len(line.lstrip())
        if not levels:
            if indent:
                raise RuleError(field_name, number, "indented, but no line above it is its parent.")
            levels.append(indent)
            continue
        if indent > levels[-1]:
            levels.append(indent)
            continue
        while levels and levels[-1] > indent:
            levels.pop()
        if not levels or levels[-1] != indent:
            raise RuleError(
                field_name,
                number,
                f"indented by {indent} spaces, like no line above it: indent a line more "
                "than its parent, and as much as its siblings.",
            )


def _set_records(field_name: str, text: str, reader: reading.Reader) -> list[reading.Record]:
    """The records of a rule for a ``set``-syntax platform: ``set`` lines as written, and
    blocks in braces converted to ``set`` lines by the driver (hier_config), with the
    ``re:`` parts kept apart (marked) through the conversion."""
    out: list[reading.Record] = []
    block: list[str] = []
    opened: list[int] = []

    def convert(lines: list[str], number: int) -> None:
        for line in reader.preprocess("\n".join(lines)).splitlines():
            if "\x00" not in line:
                out.extend((0, r[1], number, False) for r in reader.records([line], rules=False))
                continue
            parts = _MARKED.split(line)
            pattern = "".join(
                _escape(_WHITESPACE.sub(" ", part)) if i % 3 == 0 else part
                for i, part in enumerate(parts)
                if i % 3 != 1
            )
            first = int(parts[1])
            _compile(field_name, first, pattern)
            out.append((0, pattern.strip(), first, True))

    for number, line in enumerate(text.splitlines(), 1):
        content = line.strip()
        if not content:
            continue
        regex = content.startswith(REGEX_PREFIX)
        body = _regex_body(content) if regex else content
        if not regex and _BRACE_CLOSE.fullmatch(body):
            if not opened:
                raise RuleError(field_name, number, "} closes a block that no { opened.")
            opened.pop()
            block.append("    " * len(opened) + "}")
            if not opened:
                convert(block, number)
                block = []
            continue
        if body.endswith("{"):
            name = body[:-1].strip()
            if regex:
                name = f"\x00{number}\x02{name}\x01"
            block.append("    " * len(opened) + name + " {")
            opened.append(number)
            continue
        if not opened:
            if regex:  # a whole set line
                _compile(field_name, number, body)
                out.append((0, body, number, True))
            else:
                convert([body], number)
            continue
        if regex:
            body = f"\x00{number}\x02{body.removesuffix(';').strip()}\x01"
        block.append("    " * len(opened) + body)
    if opened:
        raise RuleError(field_name, opened[0], "{ opens a block that no } closes.")
    return out


def _escape(text: str) -> str:
    """``text`` as a pattern: regex characters escaped, spaces left readable."""
    return _SPECIAL.sub(r"\\\1", text)


def _literal_prefix(pattern: str) -> str:
    """Text every string that ``pattern`` fully matches starts with ("" if unsure)."""
    if "|" in pattern:
        return ""
    out: list[str] = []
    i = 1 if pattern.startswith("^") else 0
    while i < len(pattern):
        char = pattern[i]
        if char in ".^$*+?{}[]()|":
            break
        if char == "\\":
            escaped = pattern[i + 1 : i + 2]
            if not escaped or escaped.isalnum() or escaped == "_":
                break
            out.append(escaped)
            i += 2
            continue
        out.append(char)
        i += 1
    if out and i < len(pattern) and pattern[i] in "*?{+":
        out.pop()  # the last character may be repeated zero times
    return "".join(out)


# --------------------------------------------------------------------- configs


class ParsedConfig:
    """One device's config, read lazily for the rules checked against it.

    ``parse_config`` only keeps the text: the first check reads its lines (``reader``)
    and each top-level section is built into a hier_config tree when a rule first needs
    it. With ``lazy=False`` the whole config is built at once (the reference the lazy
    reading is tested against; also used where the platform's post-load callbacks join
    sections).
    """

    __slots__ = (
        "_heads",
        "_lazy",
        "_matches",
        "_nodes",
        "_order",
        "_parents",
        "_reader",
        "_records",
        "_sorted",
        "_whole",
        "platform",
        "text",
    )

    def __init__(self, text: str, platform: str, *, lazy: bool = True) -> None:
        self.text = text if isinstance(text, str) else ""
        self.platform = platforms.platform_key(platform or "") if isinstance(platform, str) else ""
        self._reader = reading.reader(reading.hier_platform(self.platform))
        self._lazy = lazy
        self._records: list[reading.Record] | None = None
        self._parents: list[int] = []
        #: top-level line -> the first record of each of its sections
        self._heads: dict[str, list[int]] = {}
        self._whole: HConfig | None = None
        self._nodes: dict[str, HConfigChild | None] = {}
        self._matches: dict[str, list[str]] = {}
        self._order: dict[str, int] = {}
        self._sorted: list[str] = []

    def __repr__(self) -> str:
        return f"ParsedConfig({self.platform!r}, {len(self.text)} characters)"

    @property
    def hier_platform(self) -> Platform:
        """The hier_config platform that reads this config."""
        return self._reader.platform

    @property
    def reader(self) -> reading.Reader:
        return self._reader

    def _index(self) -> None:
        if self._records is not None:
            return
        records = self._reader.read(self.text)
        parents = reading.nest([r[0] for r in records])
        heads: dict[str, list[int]] = {}
        for i, parent in enumerate(parents):
            if parent < 0:
                heads.setdefault(records[i][1], []).append(i)
        self._records, self._parents, self._heads = records, parents, heads
        if (
            not self._lazy
            or not self._reader.sectionable
            or any(self._reader.joins(head) for head in heads)
        ):
            self._whole = self._reader.build(records, parents, [range(len(records))])
            self._heads = {child.text: [] for child in self._whole.children}

    def _blocks(self, starts: Sequence[int]) -> Iterator[range]:
        records, parents = self._records, self._parents
        assert records is not None
        for start in starts:
            end = start + 1
            while end < len(records) and parents[end] >= 0:
                end += 1
            yield range(start, end)

    def top(self, text: str) -> HConfigChild | None:
        """The top-level line ``text`` (with its section), or None."""
        self._index()
        if self._whole is not None:
            return self._whole.children.get(text)
        if text not in self._nodes:
            self.prepare([text])
        return self._nodes[text]

    def prepare(self, texts: Iterable[str]) -> None:
        """Build the sections of the top-level lines ``texts`` not built yet, into one tree
        (sections do not touch each other, see ``reader``): one build for the literal
        top-level lines of a rule, one for the lines a pattern matches."""
        self._index()
        if self._whole is not None:
            return
        texts = [text for text in dict.fromkeys(texts) if text not in self._nodes]
        starts = sorted(i for text in texts for i in self._heads.get(text, ()))
        root = (
            self._reader.build(self._records or [], self._parents, self._blocks(starts))
            if starts
            else None
        )
        for text in texts:
            self._nodes[text] = root.children.get(text) if root is not None else None

    def top_matching(self, line: _Line) -> list[HConfigChild]:
        """The top-level lines ``line``'s pattern matches, in config order."""
        self._index()
        assert line.pattern is not None
        keys = self._matches.get(line.text)
        if keys is None:
            if not self._order:
                self._order = {key: n for n, key in enumerate(self._heads)}
                self._sorted = sorted(self._heads)
            if line.prefix:
                start = bisect.bisect_left(self._sorted, line.prefix)
                candidates = []
                for key in self._sorted[start:]:
                    if not key.startswith(line.prefix):
                        break
                    candidates.append(key)
                candidates.sort(key=self._order.__getitem__)
            else:
                candidates = list(self._heads)
            keys = [key for key in candidates if line.pattern.fullmatch(key)]
            self._matches[line.text] = keys
        self.prepare(keys)
        nodes = (self.top(key) for key in keys)
        return [node for node in nodes if node is not None]


def parse_config(text: str, platform: str, *, lazy: bool = True) -> ParsedConfig:
    """``text`` (a device's backed-up config) to check against rules; never raises.

    ``platform`` is the device's netmiko device type; it picks the hier_config platform
    that reads the text (``hier_platform``: cisco_ios and cisco_xe -> CISCO_IOS, …, any
    other -> GENERIC). Nothing is parsed until a rule needs it; ``lazy=False`` builds the
    whole config on first use.
    """
    return ParsedConfig(text, platform, lazy=lazy)


# ------------------------------------------------------------------------ check


def check(rule: CompiledRule, config: ParsedConfig) -> Finding:
    """Check ``config`` against ``rule`` (scope is the caller's: see ``in_scope``).

    Never raises: a rule that cannot be read for the config's platform, or a failure
    inside hier_config, gives a Finding with ``error`` set and ``compliant`` False.
    """
    try:
        form = rule.form(config.hier_platform)
        return _Check(config).run(form)
    except RuleError as exc:
        return Finding(False, [], [], "", error=f"The rule cannot be read here: {exc}")
    except Exception as exc:
        logger.exception("Compliance rule %s failed on a %s config", rule.name, config.platform)
        return Finding(False, [], [], "", error=f"The check failed: {type(exc).__name__}: {exc}")


_ROOT = 0  # the key of the config's top level in _Check.adds (ids are never 0)


class _Check:
    """One rule's form against one config: what is missing, what is forbidden, and the
    trees hier_config's remediation is computed from."""

    def __init__(self, config: ParsedConfig) -> None:
        self.config = config
        self.width = config.reader.indent_width
        self.missing: dict[str, None] = {}
        self.unexpected: dict[str, None] = {}
        #: top-level sections the remediation touches, by id, in the order met
        self.touched: dict[int, HConfigChild] = {}
        #: literal rule lines to add under a config line (by id; _ROOT: the top level)
        self.adds: dict[int, list[_Line]] = {}
        #: ids of the config lines to remove
        self.drops: set[int] = set()

    def run(self, form: _Form) -> Finding:
        self.config.prepare(
            line.text for line in (*form.required, *form.forbidden) if line.pattern is None
        )
        self.required(form.required, None, ())
        self.forbidden(form.forbidden, None, ())
        compliant = not self.missing and not self.unexpected
        return Finding(
            compliant=compliant,
            missing=list(self.missing),
            unexpected=list(self.unexpected),
            remediation="" if compliant else self.remediation(),
        )

    def find(self, node: HConfigChild | None, line: _Line) -> list[HConfigChild]:
        if node is None:
            if line.pattern is None:
                found = self.config.top(line.text)
                return [found] if found is not None else []
            return self.config.top_matching(line)
        if line.pattern is None:
            return list(node.get_children(equals=line.text))
        return [child for child in node.children if line.pattern.fullmatch(child.text)]

    def required(
        self,
        lines: Sequence[_Line],
        node: HConfigChild | None,
        above: tuple[HConfigChild, ...],
    ) -> None:
        for line in lines:
            found = self.find(node, line)
            if found and (line.pattern is None or line.children):
                for child in found:
                    self.required(line.children, child, (*above, child))
            elif not found and (line.pattern is None or not line.children):
                self.missing[self.block(above, line)] = None
                if line.pattern is None:
                    self.adds.setdefault(id(node) if node is not None else _ROOT, []).append(line)
                    if above:
                        self.touch(above[0])

    def forbidden(
        self,
        lines: Sequence[_Line],
        node: HConfigChild | None,
        above: tuple[HConfigChild, ...],
    ) -> None:
        for line in lines:
            for child in self.find(node, line):
                if line.children:
                    self.forbidden(line.children, child, (*above, child))
                elif id(child) not in self.drops:
                    self.drops.add(id(child))
                    rows = [(n.text, depth) for depth, n in enumerate((*above, child))]
                    self.unexpected[self.text(rows)] = None
                    self.touch(above[0] if above else child)

    def touch(self, top: HConfigChild) -> None:
        self.touched.setdefault(id(top), top)

    def block(self, above: tuple[HConfigChild, ...], line: _Line) -> str:
        """A missing line as text: the config lines above it, it, and the lines under it
        that are missing with it (literal lines and ``re:`` leaves; a ``re:`` scope with
        nothing to match requires nothing)."""
        rows = [(node.text, depth) for depth, node in enumerate(above)]
        rows.extend((sub.shown, len(above) + depth) for depth, sub in _missing_with(line))
        return self.text(rows)

    def text(self, rows: Iterable[tuple[str, int]]) -> str:
        return "\n".join(" " * self.width * depth + text for text, depth in rows)

    def remediation(self) -> str:
        """hier_config's remediation from the touched sections to the same sections with
        the missing lines added and the forbidden ones removed."""
        if not self.adds and not self.drops:
            return ""  # only re: lines are missing: no command to write
        driver = self.config.reader.driver
        running = HConfig(driver)
        generated = HConfig(driver)
        try:
            for top in self.touched.values():
                self.copy(top, running, edit=False)
                if id(top) not in self.drops:
                    self.copy(top, generated, edit=True)
            for line in self.adds.get(_ROOT, ()):
                _add(generated, line)
            remediation = WorkflowRemediation(running, generated).remediation_config
        except ValueError as exc:  # e.g. a Junos line that is no "set" line: no "delete"
            logger.warning("No remediation for a %s config: %s", self.config.platform, exc)
            return ""
        except Exception:  # what is missing and unexpected is still worth keeping
            logger.exception("No remediation for a %s config", self.config.platform)
            return ""
        return "\n".join(
            " " * self.width * (child.depth() - 1) + child.text
            for child in remediation.all_children_sorted()
        )

    def copy(self, source: HConfigChild, parent: HConfig | HConfigChild, *, edit: bool) -> None:
        """Copy ``source`` under ``parent``; with ``edit``, without the forbidden lines and
        with the missing ones. (A line repeated under a parent that does not allow it,
        which a post-load callback may make, is merged as when reading.)"""
        new = parent.add_child(source.text, return_if_present=True)
        for child in source.children:
            if not edit or id(child) not in self.drops:
                self.copy(child, new, edit=edit)
        for line in self.adds.get(id(source), ()) if edit else ():
            _add(new, line)


def _missing_with(line: _Line, depth: int = 0) -> Iterator[tuple[int, _Line]]:
    """``line`` and the lines under it a missing ``line`` leaves missing."""
    yield depth, line
    for child in line.children:
        if child.pattern is None or not child.children:
            yield from _missing_with(child, depth + 1)


def _add(parent: HConfig | HConfigChild, line: _Line) -> None:
    """Add a missing literal line and the literal lines under it (never a pattern)."""
    node = parent.add_child(line.text, return_if_present=True)
    for child in line.children:
        if child.pattern is None:
            _add(node, child)
