"""The git config store: one repository, one file per device, one commit per backup run.

Configs are normalised before they are compared and stored: volatile lines (banners
with clocks, uptimes, "last changed" stamps) are dropped so an unchanged device makes
no commit, and secrets are replaced by ``<removed>`` (keyword and type digit kept, so
a changed password still shows as a changed line).

Many workers on many hosts may commit: the caller passes a PostgreSQL advisory lock
(:func:`advisory_lock`) that serialises commits across processes, and a process-local
lock serialises threads. With a remote, every commit is rebased onto the remote's
newest history and pushed while the lock is held, so the shared history stays linear.

Reads (``history``, ``read``, ``diff``) run ``git`` subprocesses and take no lock: git
updates refs atomically, so a reader sees the state before or after a commit.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import logging
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, NoReturn

from git import Repo
from git.exc import GitCommandError, GitError
from gitdb.exc import ODBError
from sqlalchemy import text

from app import deadlines, profiles
from app.errors import RookeryError

if TYPE_CHECKING:
    from flask import Flask
    from sqlalchemy.orm import Session

__all__ = [
    "GIT_LOCK_KEY",
    "PUSH_STATE_KEY",
    "CommitResult",
    "ConfigStoreError",
    "DiffRow",
    "GitConfigStore",
    "Version",
    "advisory_lock",
    "device_file_name",
    "device_name_from_file",
    "normalize_config",
    "redact_secrets",
    "store_for",
]

logger = logging.getLogger(__name__)

#: the key of the PostgreSQL advisory lock that serialises commits ("rook-git")
GIT_LOCK_KEY = 0x726F6F6B2D676974

#: the branch the store commits to and pushes
BRANCH = "main"
#: seconds a fetch or push may take before it is killed (a remote that hangs)
NETWORK_TIMEOUT = 120
#: devices named in a commit's subject line; the body lists them all
SUBJECT_NAMES = 10
#: tries to open (create) the repository when another process is creating it too
OPEN_ATTEMPTS = 5
#: an index.lock older than this was left by a process that died mid-commit
STALE_LOCK_SECONDS = 300
#: the file a commit keeps in .git while it moves the branch, the files and the index
COMMIT_MARKER = "rookery-commit"
#: ``git gc --auto`` after a commit once there are more packs than this (each commit writes
#: one; gc's default gc.autoPackLimit is 50, and git commit would have run it anyway)
GC_PACKS = 50
#: what a secret is replaced by
REMOVED = "<removed>"


class ConfigStoreError(RookeryError):
    """The config store (git) failed."""


# --------------------------------------------------------------------------- normalising

_DAYS = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_MONTHS = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"

#: volatile lines of every platform, before those of its profile (``volatile`` in
#: app/platform_profiles/*.toml): uptimes, logins, clocks and "last change" stamps print
#: alike everywhere. Each matches a whole line (trailing whitespace gone), ignoring case.
BASE_VOLATILE: tuple[str, ...] = (
    r"(?!\s*description\b).*\buptime is\b.*",
    r"\s*Last login\b.*",
    # "*10:00:00.123 UTC Mon Jan 1 2024" (show clock), "Mon Jan  1 10:00:00.123 UTC" (XR)
    rf"\s*\*?\.?\d{{1,2}}:\d{{2}}:\d{{2}}(?:\.\d+)?\s+\S+\s+{_DAYS}\s+{_MONTHS}\s+\d{{1,2}}\s+\d{{4}}",
    rf"\s*{_DAYS}\s+{_MONTHS}\s+\d{{1,2}}\s+\d{{1,2}}:\d{{2}}:\d{{2}}(?:\.\d+)?"
    r"(?:\s+[A-Z]{2,5})?(?:\s+\d{4})?",
    r"\s*Time source is\b.*",
    r"[!#\s]*Last configuration change\b.*",
)

# A secret: a quoted string or one word. A type word may come before it.
_SECRET = r'(?P<secret>"[^"]*"|\S+)'
_TYPE = (
    r"(?:\d{1,2}|sha\d{3}|md5|scrypt|encrypted|hashed|hash|clear|cleartext|simple|cipher"
    r"|irreversible-cipher)"
)


def _rule(keep: str) -> re.Pattern[str]:
    return re.compile(f"(?P<keep>{keep})" + _SECRET, re.IGNORECASE)


#: secret material anywhere in a line, on every platform (a profile's ``secrets`` add to
#: them); ``keep`` stays, ``secret`` becomes <removed>
SECRET_RULES: tuple[re.Pattern[str], ...] = (
    # username admin privilege 15 secret 9 $9$... / username bob password 7 0822...
    _rule(rf"^\s*username\s+\S+(?:\s+\S+)*?\s+(?:password|secret)\s+(?:{_TYPE}\s+)?"),
    # " password 7 ..." under line vty / XR username and neighbor blocks; Junos "secret"
    _rule(rf"^\s+(?:password|secret)\s+(?:{_TYPE}\s+)?"),
    _rule(rf"^\s*enable\s+(?:secret|password)\s+(?:level\s+\d+\s+)?(?:{_TYPE}\s+)?"),
    _rule(rf"^\s*aaa\s+root\s+secret\s+(?:{_TYPE}\s+)?"),
    _rule(r"^\s*snmp-server\s+community\s+"),
    _rule(
        r"^\s*snmp-server\s+host\s+\S+(?:\s+(?:informs|traps))?\s+(?:version\s+(?:1|2c)\s+)?"
        r"(?!(?:version|use-vrf|vrf|filter-vrf|source-interface|informs|traps)\b)"
    ),
    _rule(r"^\s*snmp-server\s+user\s+.*?\sauth\s+(?:md5|sha\S*)\s+(?:(?:\d|encrypted)\s+)?"),
    _rule(
        r"^\s*snmp-server\s+user\s+.*?\spriv\s+"
        r"(?:(?:aes-?\d*|3des|des\d*)\s+(?:\d{3}\s+)?)?(?:(?:\d|encrypted)\s+)?"
    ),
    _rule(r"^\s*set\s+snmp\s+community\s+"),
    _rule(
        rf"^\s*(?:tacacs-server|radius-server|tacacs|radius)\b.*?\s(?:key|server-key)\s+"
        rf"(?:{_TYPE}\s+)?"
    ),
    _rule(r"^\s*crypto\s+isakmp\s+key\s+(?:\d\s+)?"),
    _rule(
        r"\bpre-shared-key\s+(?:(?:local|remote)\s+)?(?:address\s+\S+(?:\s+\S+)?\s+key\s+)?"
        r"(?:(?:ascii-text|hexadecimal)\s+)?(?:\d\s+)?"
    ),
    _rule(r"\bkey-string\s+(?:(?:\d|password|clear)\s+)?"),
    _rule(r"^\s*ntp\s+authentication-key\s+\d+\s+\S+\s+(?:\d{1,2}\s+)?"),
    _rule(r"\bauthentication-key\s+\d+\s+type\s+\S+\s+value\s+"),
    _rule(r"(?<!ntp )\bauthentication-key\s+(?!\d+\s+type\b)(?:(?:\d{1,2}|md5|sha1)\s+)?"),
    _rule(r"\bmessage-digest-key\s+\d+\s+md5\s+(?:\d\s+)?"),
    _rule(r"^\s*neighbor\s+\S+\s+password\s+(?:(?:\d|encrypted|clear)\s+)?"),
    _rule(r"^\s*ppp\s+.*?\bpassword\s+(?:\d\s+)?"),
    _rule(r"\bencrypted-password\s+"),
    # Junos set format: secret "$9$...", md5 1 key "$9$..."
    re.compile(r'(?P<keep>\b(?:secret|key)\s+)(?P<secret>"[^"]*")', re.IGNORECASE),
)
#: " key 7 ..." lines inside a ``tacacs server`` / ``radius server`` / ``aaa server`` block
_BLOCK_KEY = _rule(rf"^\s+(?:.*?\s)?(?:key|server-key)\s+(?:{_TYPE}\s+)?")
_KEY_BLOCK = re.compile(r"^(?:tacacs|radius|aaa\s+server\b)", re.IGNORECASE)
#: Junos "community public {" inside "snmp {"
_JUNOS_COMMUNITY = _rule(r"^\s*community\s+")
_QUOTED = re.compile(r'"[^"]*"')


def _hidden(secret: str) -> str:
    if secret[0] in "\"'" and secret.endswith(secret[0]) and len(secret) > 1:
        return f"{secret[0]}{REMOVED}{secret[0]}"
    if secret.startswith('"'):
        return f'"{REMOVED}"'
    if secret.endswith(";") and secret != ";":
        return REMOVED + ";"
    return REMOVED


def _mask(match: re.Match[str]) -> str:
    return match.group("keep") + _hidden(match.group("secret"))


def _mask_group(match: re.Match[str]) -> str:
    """A profile rule's match with its ``secret`` group hidden and the rest kept."""
    secret = match.group("secret")
    if not secret:
        return match.group(0)
    whole, start = match.group(0), match.start()
    return (
        whole[: match.start("secret") - start]
        + _hidden(secret)
        + whole[match.end("secret") - start :]
    )


def _may_hold_secret(line: str) -> bool:
    """Whether a shared rule may match ``line``: each needs "key", "password", "secret",
    "snmp" or "community", which most lines of a config (of a 60 KB one, all but a few
    dozen) lack. Substring tests on the lower-cased line: over ten times quicker than a
    case-blind regex search."""
    low = line.lower()
    return (
        "key" in low or "password" in low or "secret" in low or "snmp" in low
    ) or "community" in low


def _redact(lines: Sequence[str], profile: profiles.Profile | None = None) -> list[str]:
    hint = profile.secret_hint if profile is not None else None
    out: list[str] = []
    parent = ""
    blocks: list[str] = []
    for line in lines:
        if line and not line[0].isspace():
            parent = line
        if _may_hold_secret(line):
            if "## SECRET-DATA" in line:  # Junos marks every secret it prints
                line = _QUOTED.sub(f'"{REMOVED}"', line)
            for rule in SECRET_RULES:
                line = rule.sub(_mask, line)
            if line[:1].isspace() and _KEY_BLOCK.match(parent):
                line = _BLOCK_KEY.sub(_mask, line)
            if blocks and blocks[-1] == "snmp":
                line = _JUNOS_COMMUNITY.sub(_mask, line)
        if hint is not None and hint.search(line) is not None:
            for rule in profile.secret_rules:  # type: ignore[union-attr]
                line = rule.sub(_mask_group, line)
        if "{" in line or "}" in line:  # Junos blocks: "snmp {" ... "}"
            stripped = line.strip()
            if stripped.endswith("{"):
                blocks.append(stripped.split()[0].lower() if stripped != "{" else "")
            elif stripped.startswith("}") and blocks:
                blocks.pop()
        out.append(line)
    return out


def redact_secrets(text: str, platform: str | None = None) -> str:
    """``text`` (a config, or any command's output) with every secret a config backup
    removes replaced by ``<removed>``: the shared rules, and those of ``platform``'s
    profile when it is given. Nothing else changes, line endings included."""
    profile = profiles.get(platform) if platform else None
    return "\n".join(_redact(text.split("\n"), profile))


@functools.lru_cache(maxsize=256)
def _volatile_pattern(profile: profiles.Profile) -> re.Pattern[str]:
    """A profile's volatile lines and the shared ones as one alternation: one match call
    per line. Cached per loaded profile (a reload makes new ones)."""
    patterns = (*BASE_VOLATILE, *profile.volatile)
    return re.compile("|".join(f"(?:{p})\\Z" for p in patterns), re.IGNORECASE)


def normalize_config(platform: str, text: str, *, redact_secrets: bool = True) -> str:
    """``text`` without volatile lines (and secrets), ready to compare and to store.

    Line endings become ``\\n``, trailing whitespace and leading/trailing blank lines
    go, and the result ends with exactly one newline ("" for a config with no lines).
    Idempotent: normalising a normalised config changes nothing. The volatile lines and
    extra secret rules are those of the platform's profile (``app.profiles``).
    """
    profile = profiles.get(platform)
    volatile = _volatile_pattern(profile)
    raw = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = [line for line in map(str.rstrip, raw) if volatile.match(line) is None]
    if redact_secrets:
        lines = [line.rstrip() for line in _redact(lines, profile)]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return "\n".join(lines) + "\n" if lines else ""


# --------------------------------------------------------------------------- file names

_SAFE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
SUFFIX = ".cfg"
#: longest encoded stem before a hash replaces the tail (file names stop at 255 bytes)
MAX_STEM = 200


def device_file_name(name: str) -> str:
    """The file a device's config lives in: one flat, reversible, safe name.

    Every byte outside ``[A-Za-z0-9._-]`` and a leading dot or dash are %-encoded, so "/",
    "..", ":" or a leading "-" can never leave the repository, hide a file or read as
    a git option. A name too long for a file system keeps a readable prefix and a
    hash of the whole name (such a file cannot be mapped back by name alone).
    """
    if not name:
        raise ConfigStoreError("A device name may not be empty.")
    encoded = "".join(
        chr(byte) if chr(byte) in _SAFE_CHARS else f"%{byte:02X}" for byte in name.encode()
    )
    if encoded[0] in ".-":  # no hidden files, nothing that reads as an option
        encoded = f"%{ord(encoded[0]):02X}" + encoded[1:]
    if len(encoded) > MAX_STEM:
        cut = encoded[: MAX_STEM - 20]
        cut = re.sub(r"%[0-9A-F]?$", "", cut)  # don't split an escape
        encoded = f"{cut}~{hashlib.sha256(name.encode()).hexdigest()[:16]}"
    return encoded + SUFFIX


def device_name_from_file(file_name: str) -> str | None:
    """The device name of a store file; None for other files and hashed long names."""
    if not file_name.endswith(SUFFIX) or "/" in file_name or "~" in file_name:
        return None
    stem = file_name[: -len(SUFFIX)]
    try:
        data = bytearray()
        i = 0
        while i < len(stem):
            if stem[i] == "%":
                data.append(int(stem[i + 1 : i + 3], 16))
                i += 3
            else:
                data.append(ord(stem[i]))
                i += 1
        return data.decode()
    except (ValueError, UnicodeDecodeError):
        return None


# --------------------------------------------------------------------------- the store


@dataclass(frozen=True)
class CommitResult:
    """What one backup run changed in the store."""

    sha: str | None
    changed: list[str]
    unchanged: list[str]
    #: why the push to the remote failed (the commit is kept locally and pushed later)
    push_error: str | None = None


@dataclass(frozen=True)
class Version:
    """One commit in a device's history."""

    sha: str
    committed_at: datetime
    message: str
    author: str


DiffKind = Literal["equal", "changed", "added", "removed"]


@dataclass(frozen=True)
class DiffRow:
    """One row of a side-by-side diff; a side with no line has ``*_no`` None."""

    kind: DiffKind
    left_no: int | None
    left: str
    right_no: int | None
    right: str


_SHA = re.compile(r"[0-9a-fA-F]{4,64}")
_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")
_PATH_LOCKS: dict[str, threading.Lock] = {}
_PATH_LOCKS_GUARD = threading.Lock()


def _path_lock(path: Path) -> threading.Lock:
    with _PATH_LOCKS_GUARD:
        return _PATH_LOCKS.setdefault(str(path), threading.Lock())


def _without_credentials(value: str) -> str:
    return _CREDENTIALS.sub("", value)


def _reason(exc: GitError | ODBError) -> str:
    """The one line of git's complaint a person needs ("fatal: ..." without the prefix)."""
    if not isinstance(exc, GitCommandError):
        return str(exc) or type(exc).__name__
    raw = str(exc.stderr or "").strip()
    raw = re.sub(r"^stderr:\s*'", "", raw).removesuffix("'")
    lines = [line.strip() for line in raw.splitlines() if line.strip()]
    chosen = next(
        (line for line in lines if line.lower().startswith(("fatal:", "error:"))),
        lines[-1] if lines else f"exit status {exc.status}",
    )
    chosen = re.sub(r"^(?:fatal|error):\s*", "", chosen, flags=re.IGNORECASE)
    return _without_credentials(chosen)


class GitConfigStore:
    """Device configs in one git repository, one ``<device>.cfg`` file per device."""

    def __init__(self, path: Path, *, remote: str | None = None) -> None:
        self.path = Path(path).expanduser().resolve()
        self.remote = remote or None
        self._lock = _path_lock(self.path)
        with self._lock:
            self._repo = self._open_with_retries()
        with self._errors("rev-parse"):
            object_format = self._git("rev-parse", "--show-object-format").strip()
        self._hash = hashlib.sha256 if object_format == "sha256" else hashlib.sha1
        #: (commit sha, file name -> blob id): the tree the next commit builds on
        self._tree_cache: tuple[str, dict[str, str]] | None = None
        #: a full clean-up (reset, clean) is due: at the first commit of this object,
        #: then only when an interrupted operation left evidence (see _recover)
        self._clean_due = True

    def __repr__(self) -> str:
        remote = f", remote={self.remote_display!r}" if self.remote else ""
        return f"GitConfigStore({str(self.path)!r}{remote})"

    @property
    def remote_display(self) -> str:
        """The remote's URL without credentials (for messages and logs)."""
        return _without_credentials(self.remote or "")

    # ------------------------------------------------------------------ setup

    def _open_with_retries(self) -> Repo:
        # Workers starting together on one host may create the repository at once:
        # the loser of a race over .git/config.lock tries again.
        for attempt in range(OPEN_ATTEMPTS):
            try:
                return self._open()
            except ConfigStoreError:
                if attempt == OPEN_ATTEMPTS - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    def _open(self) -> Repo:
        if self.path.exists() and not self.path.is_dir():
            raise ConfigStoreError(f"The config store {self.path} is a file, not a folder.")
        try:
            if (self.path / ".git").exists():
                repo = Repo(self.path)
            else:
                self.path.mkdir(parents=True, exist_ok=True)
                repo = Repo.init(self.path, initial_branch=BRANCH)
                logger.info("Created the config store %s", self.path)
            env: dict[str, str] = {"GIT_TERMINAL_PROMPT": "0", "GIT_EDITOR": "true"}
            if "GIT_SSH_COMMAND" not in os.environ:
                env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes -o ConnectTimeout=15"
            repo.git.update_environment(**env)
            # Commits must work without a global git config, the same on every host.
            self._set_config(
                repo,
                {
                    "user.name": "Rookery",
                    "user.email": "rookery@localhost",
                    "commit.gpgsign": "false",
                    "core.autocrlf": "false",
                    "core.quotepath": "false",
                },
            )
            if self.remote:
                remotes = repo.git.remote().split()
                if "origin" not in remotes:
                    repo.git.remote("add", "origin", self.remote)
                elif repo.git.remote("get-url", "origin") != self.remote:
                    repo.git.remote("set-url", "origin", self.remote)
        except GitError as exc:
            raise ConfigStoreError(
                f"Cannot open the config store {self.path}: {_reason(exc)}"
            ) from None
        except OSError as exc:
            raise ConfigStoreError(
                f"Cannot create the config store {self.path}: {exc.strerror or exc}"
            ) from None
        return repo

    @staticmethod
    def _set_config(repo: Repo, values: Mapping[str, str]) -> None:
        for key, value in values.items():
            try:
                current = repo.git.config("--local", "--get", key)
            except GitCommandError:
                current = None
            if current != value:
                repo.git.config("--local", key, value)

    # ------------------------------------------------------------------ helpers

    def _git(self, *args: str, **kwargs: Any) -> str:
        command = [self._repo.git.GIT_PYTHON_GIT_EXECUTABLE or "git", *args]
        return self._repo.git.execute(command, **kwargs)  # type: ignore[call-overload]

    def _bytes(self, *args: str) -> bytes:
        command = [self._repo.git.GIT_PYTHON_GIT_EXECUTABLE or "git", *args]
        return self._repo.git.execute(  # type: ignore[call-overload,no-any-return]
            command, stdout_as_string=False, strip_newline_in_stdout=False
        )

    def _try(self, *args: str) -> str | None:
        try:
            return self._git(*args)
        except GitCommandError:
            return None

    def _head(self) -> str | None:
        return self._try("rev-parse", "--verify", "-q", "HEAD^{commit}")

    def head(self) -> str | None:
        """The store's newest commit, or None while it is empty."""
        with self._errors("rev-parse"):
            return self._head()

    def _has(self, rev: str, file_name: str) -> bool:
        return self._try("cat-file", "-e", f"{rev}:{file_name}") is not None

    def _commit_sha(self, sha: str | None) -> str | None:
        """The full sha of ``sha`` (HEAD when None); None when the store is empty."""
        if sha is None or sha == "HEAD":
            return self._head()
        if not _SHA.fullmatch(sha):
            raise ConfigStoreError(f"{sha!r} is not a config version.")
        found = self._try("rev-parse", "--verify", "-q", f"{sha}^{{commit}}")
        if found is None:
            raise ConfigStoreError(f"Config version {sha} does not exist.")
        return found

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except ConfigStoreError:
            raise
        except (GitError, ODBError) as exc:
            raise ConfigStoreError(f"git {action} in {self.path} failed: {_reason(exc)}") from None
        except OSError as exc:
            raise ConfigStoreError(
                f"git {action} in {self.path} failed: {exc.strerror or exc}"
            ) from None

    @contextmanager
    def _locked(self, lock: AbstractContextManager[Any] | None) -> Iterator[None]:
        # Threads first, then the cross-process lock: a thread never holds a database
        # connection while it waits for another thread of its own process.
        with self._lock, lock if lock is not None else nullcontext():
            yield

    def _recover(self) -> None:
        """Clean up (``_clean``) only when something says an operation was interrupted.

        A commit (``_commit``) leaves the working tree and index alone until
        its objects are written, and marks the window in which it changes the branch,
        the files and the index with ``.git/rookery-commit``; a process that died inside
        it leaves that file behind. The first commit of each store object cleans up
        unconditionally (what an older version or a person left), so do a stale
        index.lock and an unfinished rebase. Otherwise no ``git`` process runs here.
        """
        git_dir = self.path / ".git"
        if (
            self._clean_due
            or (git_dir / COMMIT_MARKER).exists()
            or (git_dir / "index.lock").exists()
            or (git_dir / "rebase-merge").exists()
            or (git_dir / "rebase-apply").exists()
        ):
            if not self._clean_due:
                logger.warning("Config store %s: cleaning up an interrupted operation", self.path)
            self._clean()
            (git_dir / COMMIT_MARKER).unlink(missing_ok=True)
            self._clean_due = False

    def _clean(self) -> None:
        """Undo what an interrupted operation left behind (files, index, a rebase)."""
        git_dir = self.path / ".git"
        index_lock = git_dir / "index.lock"
        try:
            age = time.time() - index_lock.stat().st_mtime
        except FileNotFoundError:
            age = 0.0
        if age > STALE_LOCK_SECONDS:
            logger.warning("Config store %s: removing a stale index.lock", self.path)
            index_lock.unlink(missing_ok=True)
        if (git_dir / "rebase-merge").exists() or (git_dir / "rebase-apply").exists():
            self._try("rebase", "--abort")
        if self._head():
            self._git("reset", "-q", "--hard", "HEAD")
        else:
            self._try("rm", "-q", "-r", "--cached", "--", ".")
        self._git("clean", "-q", "-f", "--", f"*{SUFFIX}")

    # ------------------------------------------------------------------ remote

    def sync(self) -> None:
        """Bring the local history up to the remote's (rebasing local commits onto it).

        Raises ConfigStoreError when the remote cannot be reached or the histories
        cannot be combined.
        """
        if not self.remote:
            return
        with self._lock, self._errors("pull"):
            self._pull()

    def _pull(self) -> None:
        try:
            self._git(
                "fetch", "-q", "--prune", "origin",
                kill_after_timeout=deadlines.seconds_left(NETWORK_TIMEOUT),
            )  # fmt: skip
        except GitCommandError as exc:
            raise ConfigStoreError(
                f"git fetch from {self.remote_display} failed: {_reason(exc)}"
            ) from None
        remote_head = self._try("rev-parse", "--verify", "-q", f"refs/remotes/origin/{BRANCH}")
        if remote_head is None:  # an empty remote
            return
        head = self._head()
        if head is None:
            self._git("reset", "-q", "--hard", remote_head)
            return
        if self._try("merge-base", "--is-ancestor", remote_head, head) is not None:
            return  # nothing new there
        if self._try("merge-base", "--is-ancestor", head, remote_head) is not None:
            self._git("reset", "-q", "--hard", remote_head)
            return
        try:
            self._git("rebase", "-q", remote_head)
        except GitCommandError:
            # Both sides changed one device (a commit that could not be pushed earlier):
            # the local, unpushed backup is replayed on top; the next backup corrects it.
            self._try("rebase", "--abort")
            logger.warning("Config store %s: rebase conflict, keeping local versions", self.path)
            try:
                self._git("rebase", "-q", "-X", "theirs", remote_head)
            except GitCommandError as exc:
                self._try("rebase", "--abort")
                raise ConfigStoreError(
                    f"git pull --rebase from {self.remote_display} failed: {_reason(exc)}"
                ) from None

    def _pull_quietly(self) -> None:
        """Catch up before comparing; an unreachable remote only warns (the push fails)."""
        try:
            self._pull()
        except ConfigStoreError as exc:
            logger.warning("Config store %s: %s", self.path, exc)

    def _ahead(self) -> bool:
        head = self._head()
        if head is None:
            return False
        remote_head = self._try("rev-parse", "--verify", "-q", f"refs/remotes/origin/{BRANCH}")
        if remote_head is None:
            return True
        return self._git("rev-list", "--count", f"{remote_head}..{head}").strip() != "0"

    def _push(self) -> None:
        for attempt in range(3):
            try:
                self._git(
                    "push", "-q", "origin", f"HEAD:refs/heads/{BRANCH}",
                    kill_after_timeout=deadlines.seconds_left(NETWORK_TIMEOUT),
                )  # fmt: skip
                return
            except GitCommandError as exc:
                reason = _reason(exc)
                rejected = "rejected" in str(exc.stderr) or "fetch first" in str(exc.stderr)
                if not rejected or attempt == 2:
                    raise ConfigStoreError(
                        f"git push to {self.remote_display} failed: {reason}"
                    ) from None
                logger.info("Config store %s: push rejected, rebasing and retrying", self.path)
                self._pull()

    def _publish(self) -> str | None:
        """Push local commits; the reason when that failed (a warning, not an error)."""
        if not self.remote or not self._ahead():
            return None
        try:
            self._push()
        except ConfigStoreError as exc:
            logger.warning("Config store %s: %s (kept locally; retried later)", self.path, exc)
            return str(exc)
        return None

    def push_pending(self, lock: AbstractContextManager[Any] | None = None) -> str | None:
        """Push commits a failed push left behind; the reason when it fails again."""
        if not self.remote:
            return None
        with self._locked(lock), self._errors("push"):
            self._pull_quietly()
            return self._publish()

    # ------------------------------------------------------------------ writing

    def _blob_id(self, data: bytes) -> str:
        return self._hash(b"blob %d\0" % len(data) + data).hexdigest()

    def _tree(self, commit_sha: str | None = None) -> dict[str, str]:
        """file name -> blob id in a commit's tree (HEAD's by default); the tree the last
        commit of this object wrote is remembered, so the next one reads nothing."""
        if commit_sha is None:
            commit_sha = self._head()
            if commit_sha is None:
                return {}
        if self._tree_cache is not None and self._tree_cache[0] == commit_sha:
            return self._tree_cache[1]
        listing = self._git("ls-tree", "-z", commit_sha)
        tree: dict[str, str] = {}
        for entry in listing.split("\0"):
            if entry:
                meta, _, name = entry.partition("\t")
                tree[name] = meta.split()[2]
        self._tree_cache = (commit_sha, tree)
        return tree

    def commit_run(
        self,
        *,
        run_id: int,
        job_name: str,
        configs: Mapping[str, str] | Iterable[tuple[str, str]],
        lock: AbstractContextManager[Any] | None = None,
    ) -> CommitResult:
        """Store the (normalised) ``configs`` of one run as one commit of the changed ones.

        ``configs`` maps device names to texts, or yields (name, text) pairs: a run's
        configs stream from the database through here into git, never all in memory at
        once. Makes no commit (``sha`` None) when nothing changed. With a remote the
        commit is pushed; when that fails the result's ``push_error`` says why, and the
        commit stays local for the next push (``push_pending`` or the next run).
        """
        pairs = configs.items() if isinstance(configs, Mapping) else configs
        with self._locked(lock), self._errors("commit"):
            self._recover()
            if self.remote:
                self._pull_quietly()
            sha, changed, unchanged = self._commit(run_id, job_name, pairs)
            if sha is not None:
                logger.info(
                    "Config store %s: run %s committed %s (%d changed, %d unchanged)",
                    self.path, run_id, sha, len(changed), len(unchanged),
                )  # fmt: skip
            return CommitResult(
                sha=sha, changed=changed, unchanged=unchanged, push_error=self._publish()
            )

    def _commit(
        self, run_id: int, job_name: str, pairs: Iterable[tuple[str, str]]
    ) -> tuple[str | None, list[str], list[str]]:
        """Commit the configs that differ from HEAD's through ``git fast-import``.

        Each changed config goes to fast-import's stdin as it comes (one pack per run,
        written by git); an unchanged one is recognised by its blob id and costs a hash.
        fast-import moves the branch only as a fast-forward of the commit the configs
        were compared with; ``git read-tree -m -u`` then brings the index and the working
        tree along (only the changed files are written). ``.git/rookery-commit`` marks
        the window between the two: a process dying inside it leaves the marker, and the
        next commit cleans up (``_recover``).
        """
        parent = self._head()
        tree = self._tree(parent) if parent else {}
        owners: dict[str, str] = {}
        changed: list[str] = []
        unchanged: list[str] = []
        blobs: list[tuple[str, str]] = []  # (file name, blob id)
        with _FastImport(self.path, self._git_executable()) as importer:
            for name, content in pairs:
                file_name = device_file_name(name)
                if file_name in owners:
                    raise ConfigStoreError(
                        f"Devices {owners[file_name]!r} and {name!r} map to one file {file_name}."
                    )
                owners[file_name] = name
                data = content.encode("utf-8", errors="replace")
                blob_id = self._blob_id(data)
                if tree.get(file_name) == blob_id:
                    unchanged.append(name)
                    continue
                importer.blob(data)
                changed.append(name)
                blobs.append((file_name, blob_id))
            if not changed:
                return None, changed, unchanged
            marker = self.path / ".git" / COMMIT_MARKER
            marker.write_bytes(b"")
            sha = importer.commit(
                self._branch(), parent, _cleaned_message(_run_message(run_id, job_name, changed)),
                [file_name for file_name, _ in blobs],
            )  # fmt: skip
        if parent:
            self._git("read-tree", "-m", "-u", parent, sha)
        else:
            self._git("read-tree", "-m", "-u", sha)
        marker.unlink()
        self._tree_cache = (sha, {**tree, **dict(blobs)})
        pack_dir = self.path / ".git" / "objects" / "pack"
        if sum(name.endswith(".idx") for name in os.listdir(pack_dir)) > GC_PACKS:
            self._try("gc", "--auto", "--quiet")  # merges the packs (in the background)
        return sha, changed, unchanged

    def _git_executable(self) -> str:
        return self._repo.git.GIT_PYTHON_GIT_EXECUTABLE or "git"

    def _branch(self) -> str:
        """The branch HEAD points at (refs/heads/main)."""
        head = (self.path / ".git" / "HEAD").read_text().strip()
        return head.removeprefix("ref: ") if head.startswith("ref: ") else f"refs/heads/{BRANCH}"

    def rename(
        self, old_name: str, new_name: str, *, lock: AbstractContextManager[Any] | None = None
    ) -> str | None:
        """Move a device's file to its new name in one commit; its history follows.

        None when the old name has no stored config (nothing to move). Refuses when the
        new name already has one (a deleted device's history is never overwritten).
        """
        old_file, new_file = device_file_name(old_name), device_file_name(new_name)
        if old_file == new_file:
            return None
        with self._locked(lock), self._errors("rename"):
            self._clean()
            if self.remote:
                self._pull_quietly()
            if self._head() is None or not self._has("HEAD", old_file):
                return None
            if self._has("HEAD", new_file):
                raise ConfigStoreError(
                    f"Cannot move the configs of {old_name!r} to {new_name!r}: "
                    f"{new_name!r} already has stored configs."
                )
            self._git("mv", "--", old_file, new_file)
            message = f"Rename device {_shown(old_name)} -> {_shown(new_name)}"
            self._git("commit", "-q", "--no-verify", "-m", message)
            sha = self._head()
            logger.info("Config store %s: %s (%s)", self.path, message, sha)
            self._publish()  # a failure only warns: the next push takes it along
            return sha

    # ------------------------------------------------------------------ reading

    def devices(self) -> list[str]:
        """Every device with a stored config, deleted devices included, sorted."""
        with self._errors("ls-tree"):
            return sorted(
                name for name in map(device_name_from_file, self._tree()) if name is not None
            )

    def history(self, device_name: str, limit: int = 50) -> list[Version]:
        """The commits that changed a device's config, newest first, across renames."""
        with self._errors("log"):
            if self._head() is None:
                return []
            out = self._git(
                "log", "--follow", f"-n{max(int(limit), 1)}",
                "--format=%H%x1f%ct%x1f%an%x1f%s%x1e", "HEAD", "--",
                device_file_name(device_name),
            )  # fmt: skip
        versions = []
        for record in out.split("\x1e"):
            record = record.strip()
            if record:
                sha, stamp, author, subject = record.split("\x1f", 3)
                versions.append(
                    Version(
                        sha=sha,
                        committed_at=datetime.fromtimestamp(int(stamp), tz=UTC),
                        message=subject,
                        author=author,
                    )
                )
        return versions

    def _former_files(self, device_name: str) -> list[str]:
        """The files a device's config lived in, newest first (renames followed)."""
        out = self._git(
            "log", "--follow", "--name-only", "--format=%x1e", "HEAD", "--",
            device_file_name(device_name),
        )  # fmt: skip
        files = [line.strip() for line in out.splitlines() if line.strip("\x1e \n")]
        return list(dict.fromkeys(f.strip("\x1e") for f in files))

    def read(self, device_name: str, sha: str | None = None) -> str | None:
        """The device's config at ``sha`` (HEAD by default); None if it had none then.

        An old version of a renamed device is read under the name it had then.
        """
        with self._errors("show"):
            commit = self._commit_sha(sha)
            if commit is None:
                return None
            file_name = device_file_name(device_name)
            if not self._has(commit, file_name):
                former = [f for f in self._former_files(device_name) if f != file_name]
                file_name = next((f for f in former if self._has(commit, f)), "")
                if not file_name:
                    return None
            data = self._bytes("cat-file", "blob", f"{commit}:{file_name}")
        return data.decode("utf-8", errors="replace")

    def diff(self, device_name: str, old_sha: str, new_sha: str) -> list[DiffRow]:
        """Side-by-side rows of the device's config between two versions."""
        old = (self.read(device_name, old_sha) or "").splitlines()
        new = (self.read(device_name, new_sha) or "").splitlines()
        return side_by_side(old, new)

    def unified_diff(self, device_name: str, old_sha: str, new_sha: str, context: int = 3) -> str:
        """A unified diff of the device's config between two versions ("" if equal)."""
        old = (self.read(device_name, old_sha) or "").splitlines(keepends=True)
        new = (self.read(device_name, new_sha) or "").splitlines(keepends=True)
        return "".join(
            difflib.unified_diff(
                old,
                new,
                fromfile=f"{device_name}@{old_sha[:12]}",
                tofile=f"{device_name}@{new_sha[:12]}",
                n=context,
            )
        )


def side_by_side(old: Sequence[str], new: Sequence[str]) -> list[DiffRow]:
    """Pair two texts' lines for a two-column view (difflib opcodes)."""
    rows: list[DiffRow] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            rows.extend(
                DiffRow("equal", i + 1, old[i], j + 1, new[j])
                for i, j in zip(range(i1, i2), range(j1, j2), strict=True)
            )
            continue
        left, right = list(range(i1, i2)), list(range(j1, j2))
        for k in range(max(len(left), len(right))):
            i = left[k] if k < len(left) else None
            j = right[k] if k < len(right) else None
            if i is not None and j is not None:
                rows.append(DiffRow("changed", i + 1, old[i], j + 1, new[j]))
            elif i is not None:
                rows.append(DiffRow("removed", i + 1, old[i], None, ""))
            elif j is not None:
                rows.append(DiffRow("added", None, "", j + 1, new[j]))
    return rows


@dataclass(frozen=True)
class DiffGap:
    """Unchanged lines left out of a diff shown with context: how many, from which line."""

    count: int
    left_no: int
    right_no: int


def with_context(rows: Sequence[DiffRow], context: int | None) -> list[DiffRow | DiffGap]:
    """The rows within ``context`` lines of a change, the others folded into gaps
    (``None``: every row)."""
    if context is None:
        return list(rows)
    changed = [i for i, row in enumerate(rows) if row.kind != "equal"]
    keep = [False] * len(rows)
    for i in changed:
        for k in range(max(0, i - context), min(len(rows), i + context + 1)):
            keep[k] = True
    shown: list[DiffRow | DiffGap] = []
    skipped: list[DiffRow] = []
    for row, kept in zip(rows, keep, strict=True):
        if kept:
            if skipped:
                shown.append(
                    DiffGap(len(skipped), skipped[0].left_no or 0, skipped[0].right_no or 0)
                )
                skipped = []
            shown.append(row)
        else:
            skipped.append(row)
    if skipped:
        shown.append(DiffGap(len(skipped), skipped[0].left_no or 0, skipped[0].right_no or 0))
    return shown


#: what an intra-line highlight compares: words, runs of blanks, single other characters
_TOKENS = re.compile(r"\w+|\s+|[^\w\s]")


def inline_changes(old: str, new: str) -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
    """Two changed lines as runs of (text, differs), word by word: what a page highlights
    inside them (``port`` -> ``uplink``, not a letter here and there)."""
    a, b = _TOKENS.findall(old), _TOKENS.findall(new)
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    left: list[tuple[str, bool]] = []
    right: list[tuple[str, bool]] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if i2 > i1:
            left.append(("".join(a[i1:i2]), tag != "equal"))
        if j2 > j1:
            right.append(("".join(b[j1:j2]), tag != "equal"))
    return left, right


def _shown(name: str) -> str:
    """A device name safe for a one-line commit message."""
    return "".join(c if c.isprintable() else "?" for c in name)


#: How a run's pack is written. Always a pack, never loose objects for small runs
#: (GC_PACKS counts packs). No deltas and light compression: fast-import deltas each
#: blob against the one before and compresses at zlib's default, three times the CPU
#: (3.2 against 1.2 s for 1,000 configs of 94 KB) for a pack a third smaller; the
#: ``git gc --auto`` that merges the packs (GC_PACKS) deltas and compresses them anyway.
_IMPORT = (
    *("-c", "fastimport.unpackLimit=0", "-c", "pack.compression=1", "fast-import"),
    *("--quiet", "--done", "--date-format=now", "--depth=0"),
)


class _FastImport:
    """One ``git fast-import`` process: blobs go in as they come, then one commit.

    Leaving the block without a commit (nothing changed, or an error) ends the process
    without touching any ref; the blobs it was given are left unreferenced (``git gc``
    drops them).
    """

    def __init__(self, path: Path, git: str) -> None:
        self._path = path
        self._git = git
        self._process: subprocess.Popen[bytes] | None = None
        self._marks = 0

    def __enter__(self) -> _FastImport:
        return self

    def __exit__(self, *exc: object) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                with suppress(OSError):  # stdin's buffer cannot go to a killed process
                    stream.close()

    def _stdin(self) -> IO[bytes]:
        if self._process is None:
            self._process = subprocess.Popen(
                [self._git, *_IMPORT],
                cwd=self._path,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        assert self._process.stdin is not None
        return self._process.stdin

    def _send(self, *chunks: bytes) -> None:
        stdin = self._stdin()
        try:
            for chunk in chunks:
                stdin.write(chunk)
        except BrokenPipeError:
            self._failed()

    def _failed(self) -> NoReturn:
        assert self._process is not None
        self._process.kill()
        _out, err = self._process.communicate()
        reason = err.decode(errors="replace").strip() or f"exit {self._process.returncode}"
        raise ConfigStoreError(f"git fast-import failed: {reason}")

    def blob(self, data: bytes) -> None:
        """Send one blob (mark :1, :2, ... in the order given)."""
        self._marks += 1
        self._send(b"blob\nmark :%d\ndata %d\n" % (self._marks, len(data)), data, b"\n")

    def commit(self, ref: str, parent: str | None, message: str, files: Sequence[str]) -> str:
        """One commit on ``ref`` of ``parent``'s tree with ``files`` (the blobs, in their
        order) changed; its sha. fast-import refuses to move ``ref`` unless the commit
        descends from where ``ref`` points (someone committed meanwhile: an error)."""
        body = message.encode()
        who = b"Rookery <rookery@localhost> now"
        mark = self._marks + 1
        head = b"commit %s\nmark :%d\n" % (ref.encode(), mark)
        head += b"author %s\ncommitter %s\ndata %d\n%s\n" % (who, who, len(body), body)
        changes = b"".join(
            b"M 100644 :%d %s\n" % (number, name.encode())
            for number, name in enumerate(files, start=1)
        )
        start = b"from %s\n" % parent.encode() if parent else b""
        self._send(head, start, changes, b"\nget-mark :%d\ndone\n" % mark)
        assert self._process is not None
        out, err = self._process.communicate()
        if self._process.returncode != 0:
            reason = err.decode(errors="replace").strip() or f"exit {self._process.returncode}"
            raise ConfigStoreError(f"git fast-import failed: {reason}")
        return out.decode().strip()


def _cleaned_message(message: str) -> str:
    """The message as ``git commit -m`` stores it: no trailing blanks, one final newline."""
    lines = [line.rstrip() for line in message.split("\n")]
    kept: list[str] = []
    for line in lines:
        if line or (kept and kept[-1]):
            kept.append(line)
    while kept and not kept[-1]:
        kept.pop()
    return "\n".join(kept) + "\n"


def _run_message(run_id: int, job_name: str, changed: Sequence[str]) -> str:
    names = [_shown(n) for n in changed]
    listed = ", ".join(names[:SUBJECT_NAMES])
    if len(names) > SUBJECT_NAMES:
        listed += f" and {len(names) - SUBJECT_NAMES} more"
    subject = f"Backup run #{run_id} ({_shown(job_name)}): {len(names)} changed: {listed}"
    if len(names) <= SUBJECT_NAMES:
        return subject
    return subject + "\n\n" + "\n".join(names) + "\n"


# --------------------------------------------------------------------------- wiring


@contextmanager
def advisory_lock(session: Session, key: int = GIT_LOCK_KEY) -> Iterator[None]:
    """Hold a PostgreSQL advisory lock on the session's connection for the block.

    A session-level lock: it survives the transaction it was taken in, so it works
    inside or outside one. The block must not commit, roll back or close the session
    (that would hand the connection, lock and all, back to the pool).
    """
    conn = session.connection()
    conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
    try:
        yield
    finally:
        if conn.closed or conn.invalidated:
            logger.error(
                "Advisory lock %#x: the session's connection ended inside the block; "
                "the lock is released when that connection closes",
                key,
            )
        else:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})


#: maintenance_state key of the last push's outcome (shown by /health)
PUSH_STATE_KEY = "config_push"


def record_push(session: Session, store: GitConfigStore, error: str | None) -> None:
    """Remember how the last push went, in the session's transaction (no commit).

    ``since`` is when pushes started failing (kept while they go on failing).
    """
    session.execute(
        text(
            """
        INSERT INTO maintenance_state (key, last_run_at, data)
        VALUES (:key, now(), jsonb_build_object('remote', CAST(:remote AS text),
            'error', CAST(:error AS text), 'since',
            CASE WHEN CAST(:error AS text) IS NULL THEN NULL ELSE now() END))
        ON CONFLICT (key) DO UPDATE SET last_run_at = now(), data = jsonb_build_object(
            'remote', CAST(:remote AS text), 'error', CAST(:error AS text), 'since',
            CASE WHEN CAST(:error AS text) IS NULL THEN NULL
                 ELSE coalesce(NULLIF(maintenance_state.data->'since', 'null'::jsonb),
                    to_jsonb(now())) END)
        """
        ),
        {"key": PUSH_STATE_KEY, "remote": store.remote_display, "error": error},
    )


def push_state(session: Session, app: Flask) -> dict[str, Any]:
    """The config store's remote and how its pushes go: "ok", "failing" or "none"."""
    remote = app.config.get("ROOKERY_CONFIG_REMOTE") or None
    if not remote:
        return {"remote": None, "push": "none", "error": None, "since": None}
    row = session.execute(
        text("SELECT data FROM maintenance_state WHERE key = :key"), {"key": PUSH_STATE_KEY}
    ).first()
    data = (row.data if row else None) or {}
    failing = bool(data.get("error"))
    return {
        "remote": store_for(app).remote_display,
        "push": "failing" if failing else "ok",
        "error": data.get("error"),
        "since": data.get("since"),
    }


def retry_failed_push(app: Flask, session: Session) -> str | None:
    """When the last push failed, push again (under the store's advisory lock)."""
    if not app.config.get("ROOKERY_CONFIG_REMOTE"):
        return None
    if push_state(session, app)["push"] != "failing":
        session.rollback()
        return None
    store = store_for(app)
    try:
        error = store.push_pending(lock=advisory_lock(session))
    except ConfigStoreError as exc:
        error = str(exc)
    record_push(session, store, error)
    session.commit()
    if error is None:
        logger.info("Config store %s: the pending commits are pushed", store.path)
    return error


_STORES_GUARD = threading.Lock()


def store_for(app: Flask) -> GitConfigStore:
    """The app's config store (ROOKERY_CONFIG_REPO or <instance>/configs), made once."""
    path = Path(
        app.config.get("ROOKERY_CONFIG_REPO") or Path(app.config["ROOKERY_INSTANCE"]) / "configs"
    )
    remote = app.config.get("ROOKERY_CONFIG_REMOTE") or None
    with _STORES_GUARD:
        stores: dict[tuple[str, str | None], GitConfigStore] = app.extensions.setdefault(
            "rookery_config_stores", {}
        )
        key = (str(path), remote)
        if key not in stores:
            stores[key] = GitConfigStore(path, remote=remote)
        return stores[key]
