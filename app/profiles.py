"""Platform profiles: what Rookery knows of a network platform, as data.

One TOML file per netmiko device type (``cisco_ios.toml``) in ``app/platform_profiles/``
says how a device of that platform is backed up and read:

- ``config_commands``: the commands whose output is the backup (the first prints the
  configuration; change sets read that one alone);
- ``extra_commands``: commands whose output heads the backup as a comment block (``show
  version``, ``show inventory``, as Oxidized keeps them), each line led by ``comment``;
- ``volatile``: regular expressions of whole lines dropped before a config is compared
  and stored (clocks, uptimes, "last changed" stamps), on top of the ones every platform
  shares (``config_store``);
- ``secrets``: regular expressions whose group ``secret`` is replaced by ``<removed>``,
  on top of the shared rules (``config_store.SECRET_RULES``);
- ``errors``: regular expressions of the answer a device gives instead of output when it
  refuses a command (``platforms.command_error``);
- quirks: ``enable`` (false: never enter enable mode), ``paging`` (a command sent after
  login when netmiko does not turn paging off itself) and ``prompt`` (a regular
  expression of the prompt, when netmiko's guess stops reading too early or too late).

``extends = "cisco_ios"`` starts a profile from another one: its rule lists
(``volatile``, ``secrets``, ``errors``) add to the other's, every other key it sets
replaces the other's. A device type without a profile uses ``generic``.

The folder of ``ROOKERY_PLATFORM_PROFILES_DIR`` adds profiles and changes built-in ones
without code: a file named like a built-in profile replaces only the keys it sets. A file
that cannot be used (not TOML, an unknown key, a regular expression that does not
compile, a device type netmiko does not know) is skipped, logged and listed with its
reason (``ProfileSet.skipped``, the job types page, ``GET /api/v1/platforms``), and the
others load; a broken file of the folder leaves the built-in profile of its name in force.

The profiles in force are process-wide (``current()``): ``init_app`` loads them when an
app is created; code running without an app gets the built-in ones.
"""

from __future__ import annotations

import difflib
import logging
import re
import threading
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app import platforms

if TYPE_CHECKING:
    from flask import Flask

logger = logging.getLogger(__name__)

__all__ = [
    "BUILTIN",
    "GENERIC",
    "Profile",
    "ProfileSet",
    "SkippedProfile",
    "builtin_dir",
    "current",
    "get",
    "init_app",
    "load",
]

#: where a profile comes from: Rookery itself, or the admins' folder (a new profile, or
#: a built-in one with keys the folder's file changed)
BUILTIN = "built-in"
ADMIN = "admin"
#: the profile of every device type that has none of its own
GENERIC = "generic"
#: what a comment line starts with when a profile does not say
DEFAULT_COMMENT = "! "

_LISTS = ("config_commands", "extra_commands", "volatile", "secrets", "errors")
#: rule lists a profile that ``extends`` another adds to the other's
_RULES = ("volatile", "secrets", "errors")
_TEXTS = ("description", "device_type", "extends", "comment", "paging", "prompt")
KEYS: tuple[str, ...] = (*_TEXTS, *_LISTS, "enable")


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: a cache key per load
class Profile:
    """One platform's profile, resolved (``extends`` applied) and its patterns compiled."""

    device_type: str
    description: str
    config_commands: tuple[str, ...]
    extra_commands: tuple[str, ...]
    comment: str
    volatile: tuple[str, ...]
    secrets: tuple[str, ...]
    errors: tuple[str, ...]
    enable: bool
    paging: str | None
    prompt: str | None
    extends: str | None
    #: ``BUILTIN`` or ``ADMIN``
    origin: str
    #: the files it was read from (a built-in one, then the folder's)
    files: tuple[str, ...]
    #: the refusals: one alternation matched at the start of a line (None: no refusal
    #: is known, every answer is output)
    error_pattern: re.Pattern[str] | None = field(repr=False)
    secret_rules: tuple[re.Pattern[str], ...] = field(repr=False)
    #: every secret rule as one alternation: a line it does not match skips them all
    secret_hint: re.Pattern[str] | None = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """What the API and the job types page show of it."""
        return {
            "device_type": self.device_type,
            "description": self.description,
            "config_commands": list(self.config_commands),
            "extra_commands": list(self.extra_commands),
            "comment": self.comment,
            "extends": self.extends,
            "volatile_rules": len(self.volatile),
            "secret_rules": len(self.secrets),
            "error_rules": len(self.errors),
            "enable": self.enable,
            "paging": self.paging,
            "prompt": self.prompt,
            "source": self.origin,
            "files": list(self.files),
        }


@dataclass(frozen=True)
class SkippedProfile:
    """A profile file (or profiles folder) that could not be used, and why."""

    source: str
    reason: str


@dataclass
class ProfileSet:
    """The profiles of one load, by device type, and the files it had to skip."""

    profiles: dict[str, Profile] = field(default_factory=dict)
    skipped: list[SkippedProfile] = field(default_factory=list)

    def get(self, platform: str) -> Profile:
        """The profile of a device's platform (``cisco_ios_ssh`` reads ``cisco_ios``), or
        the generic one."""
        found = self.profiles.get(platforms.platform_key(platform))
        return found if found is not None else self.profiles[GENERIC]

    def has(self, platform: str) -> bool:
        """Whether ``platform`` has a profile of its own (not the generic one)."""
        key = platforms.platform_key(platform)
        return key != GENERIC and key in self.profiles

    def names(self) -> tuple[str, ...]:
        """The device types with a profile of their own, sorted."""
        return tuple(sorted(name for name in self.profiles if name != GENERIC))

    def sorted(self) -> list[Profile]:
        """Every profile, the generic one last."""
        return [self.profiles[name] for name in self.names()] + [self.profiles[GENERIC]]


class _Broken(Exception):
    """A profile file cannot be used; the message says why."""


# --------------------------------------------------------------------------- loading


def builtin_dir() -> Path:
    """The ``app/platform_profiles`` folder that ships with Rookery."""
    return Path(__file__).resolve().parent / "platform_profiles"


def load(folder: str | Path | None = None, *, builtin: Path | None = None) -> ProfileSet:
    """The built-in profiles, with the profiles of ``folder`` (the admins') added or
    changing them."""
    result = ProfileSet()
    builtins = dict(_read_folder(builtin or builtin_dir(), result))
    raw: dict[str, dict[str, Any]] = {name: data for name, (_, data) in builtins.items()}
    admin = dict(_read_folder(Path(folder).expanduser(), result)) if folder else {}
    for name, (_, data) in admin.items():
        raw[name] = {**raw.get(name, {}), **data}
    in_force = set(admin)
    for name, (path, _) in admin.items():
        try:
            _resolve(name, raw)
        except _Broken as exc:  # the folder's file broke it: the built-in one stays
            _skip(result, str(path), str(exc))
            in_force.discard(name)
            if name in builtins:
                raw[name] = builtins[name][1]
            else:
                del raw[name]
    for name in sorted(raw):
        files = [str(builtins[name][0])] if name in builtins else []
        if name in in_force:
            files.append(str(admin[name][0]))
        try:
            result.profiles[name] = _build(
                name, raw, tuple(files), ADMIN if name in in_force else BUILTIN
            )
        except _Broken as exc:  # a built-in profile whose parent is gone
            _skip(result, files[-1], str(exc))
    if GENERIC not in result.profiles:
        result.profiles[GENERIC] = _fallback()
    logger.info(
        "Platform profiles: %d loaded (%d from %s), %d skipped",
        len(result.profiles),
        sum(1 for p in result.profiles.values() if p.origin == ADMIN),
        folder or "no admin folder",
        len(result.skipped),
    )
    return result


def _read_folder(
    folder: Path, result: ProfileSet
) -> Iterable[tuple[str, tuple[Path, dict[str, Any]]]]:
    """Each usable profile file of ``folder`` as (device type, (path, its keys))."""
    if not folder.is_dir():
        _skip(result, str(folder), "profiles folder does not exist or is not a folder")
        return
    for path in sorted(folder.glob("*.toml")):
        if path.name.startswith((".", "_")) or not path.is_file():
            continue
        try:
            data = _parse(path)
            _check_name(path.stem, data)
        except _Broken as exc:
            _skip(result, str(path), str(exc))
            continue
        yield path.stem, (path, data)


def _skip(result: ProfileSet, source: str, reason: str) -> None:
    logger.warning("Skipped platform profile %s: %s", source, reason)
    result.skipped.append(SkippedProfile(source=source, reason=reason))


def _parse(path: Path) -> dict[str, Any]:
    """A profile file's keys, each checked (types, patterns that compile), not yet merged."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise _Broken(f"cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise _Broken(f"invalid TOML: {exc}") from None
    unknown = sorted(key for key in data if key not in KEYS)
    if unknown:
        hints = [difflib.get_close_matches(key, KEYS, n=1) for key in unknown]
        said = ", ".join(
            f"{key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            for key, hint in zip(unknown, hints, strict=True)
        )
        raise _Broken(f"unknown key {said}; a profile has {', '.join(KEYS)}")
    for key in _TEXTS:
        if key in data and not isinstance(data[key], str):
            raise _Broken(f"{key} must be a string, not {_type(data[key])}")
    for key in _LISTS:
        if key in data and (
            not isinstance(data[key], list)
            or not all(isinstance(item, str) and item.strip() for item in data[key])
        ):
            raise _Broken(f"{key} must be a list of non-empty strings")
    if "enable" in data and not isinstance(data["enable"], bool):
        raise _Broken(f"enable must be true or false, not {_type(data['enable'])}")
    for key in ("volatile", "errors"):
        for index, pattern in enumerate(data.get(key, ())):
            _compile(f"{key}[{index}]", pattern)
    for index, pattern in enumerate(data.get("secrets", ())):
        if "secret" not in _compile(f"secrets[{index}]", pattern).groupindex:
            raise _Broken(
                f"secrets[{index}] {pattern!r} has no group named secret: write the part to "
                "remove as (?P<secret>...)"
            )
    if "prompt" in data:
        _compile("prompt", data["prompt"])
    return data


def _type(value: Any) -> str:
    return {list: "a list", dict: "a table", bool: "true/false"}.get(
        type(value), type(value).__name__
    )


def _check_name(stem: str, data: Mapping[str, Any]) -> None:
    """A file is named by its canonical netmiko device type (``generic`` included)."""
    declared = data.get("device_type")
    if declared is not None and declared != stem:
        raise _Broken(f"device_type {declared!r} differs from the file name {stem!r}")
    key = platforms.platform_key(stem)
    if key != stem:
        raise _Broken(f"name the file by the device type's canonical name: {key}.toml")
    if stem != GENERIC and stem not in platforms.known_platforms():
        hint = platforms.suggest(stem)
        raise _Broken(
            f"netmiko has no device type {stem!r}"
            + (f"; did you mean {hint!r}?" if hint else "")
            + " (the file name is the device type)"
        )


def _resolve(name: str, raw: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A profile's keys with its ``extends`` chain applied."""
    chain = [name]
    data = raw[name]
    while "extends" in data:
        parent = platforms.platform_key(data["extends"])
        if parent in chain:
            raise _Broken(f"extends itself: {' -> '.join([*chain, parent])}")
        if parent not in raw:
            hint = difflib.get_close_matches(parent, list(raw), n=1)
            raise _Broken(
                f"extends {parent!r}, which has no profile"
                + (f"; did you mean {hint[0]!r}?" if hint else "")
            )
        chain.append(parent)
        data = raw[parent]
    merged: dict[str, Any] = {}
    for link in reversed(chain):  # the farthest ancestor first
        for key, value in raw[link].items():
            if key in _RULES:
                merged[key] = [*merged.get(key, []), *value]
            else:
                merged[key] = value
    merged["extends"] = raw[name].get("extends")
    if not merged.get("config_commands"):
        raise _Broken("config_commands is missing: the command that prints the configuration")
    return merged


def _build(
    name: str, raw: Mapping[str, Mapping[str, Any]], files: tuple[str, ...], origin: str
) -> Profile:
    data = _resolve(name, raw)
    config_commands = tuple(data["config_commands"])
    # each pattern compiled already when its file was read (``_parse``)
    volatile = tuple(dict.fromkeys(data.get("volatile", ())))
    secrets = tuple(dict.fromkeys(data.get("secrets", ())))
    errors = tuple(dict.fromkeys(data.get("errors", ())))
    rules = [re.compile(pattern, re.IGNORECASE) for pattern in secrets]
    prompt = data.get("prompt")
    return Profile(
        device_type=name,
        description=data.get("description", name),
        config_commands=config_commands,
        extra_commands=tuple(data.get("extra_commands", ())),
        comment=data.get("comment", DEFAULT_COMMENT),
        volatile=volatile,
        secrets=secrets,
        errors=errors,
        enable=data.get("enable", True),
        paging=data.get("paging") or None,
        prompt=prompt,
        extends=data.get("extends"),
        origin=origin,
        files=files,
        error_pattern=(
            re.compile(r"\s*(?:" + "|".join(f"(?:{p})" for p in errors) + ")", re.IGNORECASE)
            if errors
            else None
        ),
        secret_rules=tuple(rules),
        secret_hint=_hint(secrets),
    )


def _hint(secrets: tuple[str, ...]) -> re.Pattern[str] | None:
    """The secret rules as one alternation (their group names dropped: they repeat), or
    ``.`` (every line) when that cannot be compiled (a rule with a back-reference)."""
    if not secrets:
        return None
    joined = "|".join(f"(?:{re.sub(r'[(][?]P<[^>]*>', '(?:', p)})" for p in secrets)
    try:
        return re.compile(joined, re.IGNORECASE)
    except re.error:
        return re.compile(".")


def _compile(where: str, pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise _Broken(f"{where} {pattern!r} is not a valid regular expression: {exc}") from None


def _fallback() -> Profile:
    """A generic profile when even the built-in one is gone: the config command only."""
    return _build(GENERIC, {GENERIC: {"config_commands": ["show running-config"]}}, (), BUILTIN)


# --------------------------------------------------------------------------- in force

_lock = threading.Lock()
_current: ProfileSet | None = None
EXTENSION_KEY = "rookery_profiles"


def current() -> ProfileSet:
    """The profiles in force in this process (the built-in ones until an app loads its
    own)."""
    global _current
    found = _current
    if found is None:
        with _lock:
            if _current is None:
                _current = load()
            found = _current
    return found


def get(platform: str) -> Profile:
    """The profile in force for a device's platform (the generic one if it has none)."""
    return current().get(platform)


def init_app(app: Flask) -> None:
    """Load the built-in profiles and those of ``ROOKERY_PLATFORM_PROFILES_DIR``; they are
    this process's profiles from now on (one app per process in production)."""
    global _current
    loaded = load(app.config.get("ROOKERY_PLATFORM_PROFILES_DIR") or None)
    with _lock:
        _current = loaded
    app.extensions[EXTENSION_KEY] = loaded
