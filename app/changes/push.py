"""Applying a change to one device: snapshot, pre-checks, push, post-checks, rollback.

``apply_to_device`` runs the steps on an open driver session (``app.drivers``) and
never raises for what the device does: its ``DeviceOutcome`` says how the device ended
(``applied``, ``rolled_back``, ``rollback_failed`` or ``failed_precheck``, which also
covers "not attempted": a snapshot that could not be taken) with the configs before and
after (normalised and redacted, for the caller to commit to the config store), the check
results and messages. Only programming errors raise (``ValueError``: malformed checks or
an unsafe snapshot name, no commands).

The steps, each a function of its own:

- ``snapshot``: the running config (normalised with ``normalize_config`` but not
  redacted, since a rollback must restore secrets too) and, where the platform has a
  native rollback, a native checkpoint (IOS: ``copy running-config flash:<name>``, the
  "archive"). A checkpoint the device refuses is not fatal: the rollback then goes line
  by line.
- ``run_checks``: each check's command, and whether its ``expect`` regex appears (or,
  with ``absent``, does not). A refused command fails its check.
- ``push``: the commands in configuration mode (stopping at the first refused line:
  none after it is sent), then the platform's save/commit step.
- ``rollback``: the native mechanism first where the platform has one and a checkpoint
  was taken (IOS ``configure replace flash:<name> force``, which succeeds when ``Rollback
  Done`` appears), else hier_config's remediation from the current config to the
  snapshot, sent line by line. Either way the config is fetched again and compared with
  the snapshot (equal normalised text, or nothing left for hier_config to remediate), and
  only a verified rollback is saved (on commit platforms the line-by-line commands must be
  committed before they can be verified).

A failed native rollback is followed by a line-by-line attempt (``fallback_to_lines``,
on by default), reported in the result's ``attempts`` and the outcome's messages, never
silently. Why: the device is already known bad (a refused push or failing post-checks),
the second attempt is computed from the config the device holds *now* (whatever the
failed replace left) and is verified like the first; stopping instead leaves a
half-changed device until someone logs in. A failure of both is ``rollback_failed``.

A lost session (a timeout, a dropped connection) during the push or the post-checks
leaves no session to roll back on: ``reconnect`` (optional) opens a new one; without it
the device is ``rollback_failed``.

Platforms: ``PROFILES`` maps a platform to its native rollback strategy: IOS (and
IOS-XE, whose CLI is the same) ``configure replace`` of a flash checkpoint; EOS the same
checkpoint and replace, with the push itself in a **configure session** (``sessions``:
committed whole, or aborted at a refused line so nothing of it applies);
IOS-XR (``XrCommits``) takes the newest commit id as its checkpoint and undoes the
commits made since (``rollback configuration last N``); Junos (``JunosCommitConfirmed``)
commits the push with ``commit confirmed`` (the device undoes it by itself unless the
confirming commit follows the post-checks) and restores with ``rollback K`` of the commit
before it. Every platform without a profile rolls back line by line. A new strategy
subclasses ``NativeRollback`` (``checkpoint`` and ``restore``, and where the platform
needs it ``commit``/``confirm``) and is added to ``PROFILES``. Checkpoint files stay on
the device's flash (the caller may delete them).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from hier_config import WorkflowRemediation, get_hconfig

from app import platforms
from app.changes.render import hide
from app.compliance import hier_platform
from app.config_store import normalize_config
from app.drivers import (
    COMMIT_PLATFORMS,
    CommandTimeout,
    ConfigRefused,
    ConnectionFailed,
    DriverError,
    DriverSession,
)

logger = logging.getLogger(__name__)

__all__ = [
    "PROFILES",
    "Check",
    "CheckResult",
    "DeviceOutcome",
    "EosSessions",
    "IosConfigureReplace",
    "JunosCommitConfirmed",
    "NativeRollback",
    "RollbackFailed",
    "RollbackResult",
    "Snapshot",
    "XrCommits",
    "apply_to_device",
    "command_lines",
    "configs_match",
    "masked",
    "native_strategy",
    "parse_checks",
    "push",
    "rollback",
    "rollback_commands",
    "run_checks",
    "snapshot",
]

State = Literal["applied", "rolled_back", "rollback_failed", "failed_precheck"]

#: a checkpoint's name on the device: a plain file name
SNAPSHOT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
#: the longest excerpt of a check's output kept in its result
EXCERPT = 500
#: a question a device asks before it acts (copy, delete, configure replace)
QUESTION = r"(?:\?|\[confirm\]|\[yes/no\]:?|\[no\]:)"
#: how many questions one command may ask before the dialog gives up
MAX_QUESTIONS = 3


class RollbackFailed(DriverError):
    """A native rollback the device did not complete."""


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Check:
    """A command and a regex that must appear in its output (or, ``absent``, must not)."""

    command: str
    expect: str
    absent: bool = False
    #: ``before`` the push (a pre-check), ``after`` it (a post-check), or ``both``
    when: str = "both"

    def matches(self, output: str) -> bool:
        return re.search(self.expect, output, re.MULTILINE) is not None


@dataclass
class CheckResult:
    command: str
    passed: bool
    #: why it passed or failed, in a sentence
    why: str
    #: the start of the output (normalised, secrets redacted)
    excerpt: str = ""
    #: the session was lost while running it (no later check ran)
    lost: bool = False


@dataclass
class Snapshot:
    name: str
    platform: str
    #: the running config, normalised but NOT redacted (a rollback restores secrets):
    #: never log it; ``stored`` is the text for the config store
    config: str = field(repr=False)
    #: where the native checkpoint is on the device (``flash:<name>``), None without one
    checkpoint: str | None = None
    messages: list[str] = field(default_factory=list)

    @property
    def stored(self) -> str:
        """The config as Rookery stores it (normalised, secrets redacted)."""
        return normalize_config(self.platform, self.config)


@dataclass
class RollbackResult:
    #: ``native`` (the platform's mechanism), ``line_by_line``, or ``none`` (nothing ran)
    method: str
    verified: bool
    #: the line-by-line commands sent (secrets redacted), empty for a native rollback
    commands: list[str] = field(default_factory=list)
    #: what was tried, in order, and how it went
    attempts: list[str] = field(default_factory=list)
    #: the config after the rollback (normalised, redacted), None when it was not read
    after: str | None = None


@dataclass
class DeviceOutcome:
    state: State
    #: the config before the change (normalised, redacted), None without a snapshot
    before: str | None = None
    #: the config the device ended with (after the change, or after its rollback)
    after: str | None = None
    prechecks: list[CheckResult] = field(default_factory=list)
    postchecks: list[CheckResult] = field(default_factory=list)
    #: what the device printed for the push (None: not pushed)
    push_output: str | None = None
    rollback: RollbackResult | None = None
    messages: list[str] = field(default_factory=list)


def parse_checks(raw: Iterable[Check | Mapping[str, Any]]) -> list[Check]:
    """Checks from a change's ``[{"command", "expect", "absent"}]``; ValueError names a
    malformed one (a missing command, a pattern that does not compile)."""
    checks: list[Check] = []
    for index, item in enumerate(raw, 1):
        if isinstance(item, Check):
            check = item
        else:
            command = str(item.get("command") or "").strip()
            expect = item.get("expect")
            if not command or not isinstance(expect, str):
                raise ValueError(f"check {index}: needs a command and an expect pattern")
            when = str(item.get("when") or "both")
            if when not in ("both", "before", "after"):
                raise ValueError(f"check {index}: when is before, after or both, not {when!r}")
            check = Check(
                command=command, expect=expect, absent=bool(item.get("absent")), when=when
            )
        try:
            re.compile(check.expect)
        except re.error as exc:
            raise ValueError(f"check {index}: bad pattern {check.expect!r}: {exc}") from None
        checks.append(check)
    return checks


def command_lines(commands: str | Sequence[str]) -> list[str]:
    """A change's commands as the lines to send (blank lines dropped)."""
    lines = commands.splitlines() if isinstance(commands, str) else list(commands)
    return [line.rstrip() for line in lines if line.strip()]


# --------------------------------------------------------------------------- native rollback


class NativeRollback:
    """A platform's own checkpoint-and-restore mechanism (a subclass per mechanism, one
    instance per platform in ``PROFILES``). Besides ``checkpoint`` and ``restore`` it
    may change how the push ends: ``sessions`` (the lines go to a configure session of
    the snapshot's name), ``commit`` (the save/commit step) and ``confirm`` (after the
    post-checks passed: Junos's confirming commit)."""

    name = "native"
    #: the push goes to a configure session named like the snapshot (EOS)
    sessions = False
    #: the device undoes the change by itself this many minutes after the push unless
    #: ``confirm`` ran (Junos ``commit confirmed``); None: it never does
    confirm_minutes: int | None = None

    def checkpoint(self, session: DriverSession, name: str, platform: str) -> str:
        """Take a checkpoint called ``name``; its location (DriverError if refused)."""
        raise NotImplementedError

    def restore(self, session: DriverSession, location: str, platform: str) -> str:
        """Restore the checkpoint at ``location``; RollbackFailed if the device did not."""
        raise NotImplementedError

    def commit(self, session: DriverSession, name: str) -> str:
        """The push's last step, after its lines: the platform's save or commit."""
        return session.save_config()

    def confirm(self, session: DriverSession) -> str:
        """Make the pushed change stay (the post-checks passed); DriverError if not."""
        return ""


def _prompt(session: DriverSession) -> str:
    """The session's prompt (``host#``), read with a bare return."""
    output = session.send_command_expect("\n", r"[>#]\s*$")
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if not lines:
        raise DriverError("the device showed no prompt")
    return lines[-1]


def _dialog(session: DriverSession, command: str, prompt: str) -> str:
    """Send ``command`` and take the default answer (a bare return) of each question it
    asks (a file name we gave, ``[confirm]``); the whole transcript."""
    ending = rf"(?:{QUESTION}|{re.escape(prompt)})\s*$"
    transcript = [session.send_command_expect(command, ending)]
    for _ in range(MAX_QUESTIONS):
        last = transcript[-1].rstrip()
        if last.endswith(prompt) or re.search(rf"{QUESTION}\s*$", last) is None:
            break
        transcript.append(session.send_command_expect("\n", ending))
    return "\n".join(transcript)


class IosConfigureReplace(NativeRollback):
    """IOS's archive: ``copy running-config flash:<name>``, ``configure replace ... force``."""

    name = "configure replace"

    def checkpoint(self, session: DriverSession, name: str, platform: str) -> str:
        location = f"flash:{name}"
        output = _dialog(session, f"copy running-config {location}", _prompt(session))
        error = platforms.command_error(platform, _without_echo(output))
        if error is not None or "copied" not in output:
            raise DriverError(f"copy running-config {location} failed: {error or output.strip()}")
        return location

    def restore(self, session: DriverSession, location: str, platform: str) -> str:
        output = _dialog(session, f"configure replace {location} force", _prompt(session))
        if "Rollback Done" not in output:
            tail = [line.strip() for line in output.splitlines() if line.strip()]
            why = platforms.command_error(platform, _without_echo(output)) or (
                tail[-2] if len(tail) > 1 else "no 'Rollback Done'"
            )
            raise RollbackFailed(f"configure replace {location} failed: {why}")
        return output


class EosSessions(NativeRollback):
    """EOS: the push goes through a configure session (committed whole, or aborted at
    the first refused line: nothing applied), the checkpoint is a copy of the running
    config on flash and the restore ``configure replace`` of it (what NAPALM's EOS
    driver does); EOS asks nothing and prints nothing on a replace that worked (the
    output is only what it answered: netmiko strips the echo, and there are no questions
    to skip)."""

    name = "configure replace"
    sessions = True

    def checkpoint(self, session: DriverSession, name: str, platform: str) -> str:
        location = f"flash:{name}"
        output = _dialog(session, f"copy running-config {location}", _prompt(session))
        error = platforms.command_error(platform, output)
        if error is not None or "Copy completed successfully" not in output:
            raise DriverError(f"copy running-config {location} failed: {error or output.strip()}")
        return location

    def restore(self, session: DriverSession, location: str, platform: str) -> str:
        output = _dialog(session, f"configure replace {location}", _prompt(session))
        # silence is success: any "% ..." line says why it was not
        said = re.search(r"^\s*(%.*)$", output, re.MULTILINE)
        if said is not None:
            raise RollbackFailed(f"configure replace {location} failed: {said.group(1)}")
        return output


class XrCommits(NativeRollback):
    """IOS-XR: every commit is kept in its commit database. The checkpoint is the newest
    commit id before the push; the restore undoes the commits made since with
    ``rollback configuration last N`` (itself a commit, so nothing is left to save).
    Commits someone else made meanwhile are undone too, as they would be by a replace
    of the snapshot."""

    name = "rollback configuration"

    def checkpoint(self, session: DriverSession, name: str, platform: str) -> str:
        ids = self._commit_ids(session, platform)
        if not ids:
            raise DriverError("'show configuration commit list' shows no commit")
        return ids[0]

    def restore(self, session: DriverSession, location: str, platform: str) -> str:
        ids = self._commit_ids(session, platform)
        if location not in ids:
            raise RollbackFailed(f"commit {location} is no longer in the commit database")
        since = ids.index(location)
        if since == 0:
            return f"no commit since {location}"
        command = f"rollback configuration last {since}"
        output = _dialog(session, command, _prompt(session))
        if "successfully rolled back" not in output:
            said = re.search(r"^\s*(%.*)$", output, re.MULTILINE)
            why = said.group(1) if said else "no 'successfully rolled back'"
            raise RollbackFailed(f"{command} failed: {why}")
        return output

    @staticmethod
    def _commit_ids(session: DriverSession, platform: str) -> list[str]:
        """The commit ids, newest first."""
        output = str(session.send_command("show configuration commit list"))
        error = platforms.command_error(platform, output)
        if error is not None:
            raise DriverError(f"show configuration commit list failed: {error}")
        return re.findall(r"^\s*\d+\s+(\d{10})\b", output, re.MULTILINE)


class JunosCommitConfirmed(NativeRollback):
    """Junos: the push is committed with ``commit confirmed N comment "rookery <snapshot>"``,
    so a device Rookery loses (a dead worker, a change that cuts its path) undoes the
    change by itself after N minutes; once the post-checks (and the reachability check)
    passed, a plain ``commit`` confirms it. The restore finds that commit by its comment
    in ``show system commit`` and loads the one before it (``rollback K``), committed at
    once; no commit of the change (a refused line): nothing to undo."""

    name = "rollback (commit confirmed)"

    def __init__(self, minutes: int = 5) -> None:
        self.confirm_minutes = minutes

    def checkpoint(self, session: DriverSession, name: str, platform: str) -> str:
        output = str(session.send_command("show system commit"))
        error = platforms.command_error(platform, output)
        if error is not None:
            raise DriverError(f"show system commit failed: {error}")
        return f"rookery {name}"

    def commit(self, session: DriverSession, name: str) -> str:
        command = f'commit confirmed {self.confirm_minutes} comment "rookery {name}"'
        output = self._committed(session, command)
        return output + self._leave(session)

    def confirm(self, session: DriverSession) -> str:
        session.send_command_expect("configure", _JUNOS_EDIT)
        output = self._committed(session, 'commit comment "rookery: confirmed"')
        return output + self._leave(session)

    def restore(self, session: DriverSession, location: str, platform: str) -> str:
        listing = str(session.send_command("show system commit"))
        index = _junos_commit_index(listing, location)
        if index is None:
            return f"no commit {location!r} on the device: nothing to undo"
        session.send_command_expect("configure", _JUNOS_EDIT)
        loaded = session.send_command_expect(f"rollback {index + 1}", _JUNOS_EDIT)
        try:
            if "load complete" not in loaded:
                raise RollbackFailed(f"rollback {index + 1} failed: {_said(loaded)}")
            output = self._committed(session, f'commit comment "rookery: undo {location}"')
        except ConfigRefused as exc:
            raise RollbackFailed(f"the rollback's commit was refused: {exc.error}") from None
        except RollbackFailed:
            session.send_command_expect("rollback 0", _JUNOS_EDIT)
            self._leave(session)
            raise
        return loaded + output + self._leave(session)

    def _committed(self, session: DriverSession, command: str) -> str:
        """``command`` (a commit) in configuration mode; ConfigRefused, with the candidate
        discarded and configuration mode left, when it does not say ``commit complete``."""
        output = session.send_command_expect(command, _JUNOS_EDIT)
        if "commit complete" not in output:
            session.send_command_expect("rollback 0", _JUNOS_EDIT)
            self._leave(session)
            error = _said(output)
            raise ConfigRefused(
                f"the commit was refused: {error}",
                line=command,
                error=error,
                output=output,
                discarded=True,
            )
        return output

    @staticmethod
    def _leave(session: DriverSession) -> str:
        output = session.send_command_expect("exit configuration-mode", r"(?:>|\(yes\))\s*$")
        if "(yes)" in output:  # uncommitted changes (none should be left): keep them out
            output += session.send_command_expect("no", _JUNOS_EDIT)
            output += session.send_command_expect("rollback 0", _JUNOS_EDIT)
            output += session.send_command_expect("exit configuration-mode", r">\s*$")
        return output


#: Junos's configuration-mode prompt ends ``user@host# ``
_JUNOS_EDIT = r"#\s*$"


def _said(output: str) -> str:
    """The device's complaint in ``output``: its first error-looking line, else its last."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if re.match(r"(?:error|syntax error|%|warning)", line, re.IGNORECASE):
            return line
    return lines[-2] if len(lines) > 1 else "no answer"


def _junos_commit_index(listing: str, comment: str) -> int | None:
    """The index (0: newest) in ``show system commit`` of the commit carrying ``comment``."""
    index: int | None = None
    for line in listing.splitlines():
        entry = re.match(r"^(\d+)\s+\d{4}-\d\d-\d\d", line)
        if entry is not None:
            index = int(entry.group(1))
        elif index is not None and line.strip() == comment:
            return index
    return None


#: platform -> its native rollback; platforms not here roll back line by line
PROFILES: dict[str, NativeRollback] = {
    "cisco_ios": IosConfigureReplace(),
    "cisco_xe": IosConfigureReplace(),
    "arista_eos": EosSessions(),
    "cisco_xr": XrCommits(),
    "juniper_junos": JunosCommitConfirmed(),
}


def native_strategy(platform: str) -> NativeRollback | None:
    return PROFILES.get(platforms.platform_key(platform))


def _without_echo(output: str) -> str:
    lines = output.splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines[1:])


# --------------------------------------------------------------------------- the steps


def snapshot(session: DriverSession, platform: str, name: str, *, native: bool = True) -> Snapshot:
    """The running config now, and a native checkpoint ``name`` where the platform has
    one (``native=False``: none). DriverError when the config cannot be read."""
    if SNAPSHOT_NAME.fullmatch(name) is None:
        raise ValueError(f"unsafe snapshot name {name!r}: letters, digits, '.', '_', '-'")
    raw = session.get_config()
    error = platforms.command_error(platform, raw)
    config = normalize_config(platform, raw, redact_secrets=False)
    if error is not None or not config.strip():
        raise DriverError(f"could not read the running config: {error or 'it is empty'}")
    taken = Snapshot(name=name, platform=platform, config=config)
    strategy = native_strategy(platform) if native else None
    if strategy is not None:
        try:
            taken.checkpoint = strategy.checkpoint(session, name, platform)
        except (CommandTimeout, ConnectionFailed):
            raise
        except DriverError as exc:
            taken.messages.append(f"No native checkpoint ({exc}); a rollback goes line by line.")
    return taken


def run_checks(
    session: DriverSession, checks: Sequence[Check], *, platform: str
) -> list[CheckResult]:
    """Each check's command and its verdict; a lost session ends the list there."""
    results: list[CheckResult] = []
    for index, check in enumerate(checks):
        try:
            output = str(session.send_command(check.command))
        except (CommandTimeout, ConnectionFailed) as exc:
            results.append(CheckResult(check.command, False, f"session lost: {exc}", lost=True))
            results += [
                CheckResult(rest.command, False, "not run: the session was lost", lost=True)
                for rest in checks[index + 1 :]
            ]
            break
        except DriverError as exc:
            results.append(CheckResult(check.command, False, f"failed: {exc}"))
            continue
        excerpt = normalize_config(platform, output)[:EXCERPT]
        refused = platforms.command_error(platform, output)
        if refused is not None:
            results.append(CheckResult(check.command, False, f"refused: {refused}", excerpt))
            continue
        found = check.matches(output)
        passed = found != check.absent
        if check.absent:
            why = f"{check.expect!r} {'appears' if found else 'does not appear'} (must not)"
        else:
            why = f"{check.expect!r} {'appears' if found else 'does not appear'} (must)"
        results.append(CheckResult(check.command, passed, why, excerpt))
    return results


def push(
    session: DriverSession,
    commands: str | Sequence[str],
    *,
    strategy: NativeRollback | None = None,
    name: str = "",
) -> str:
    """The commands in configuration mode, then the save/commit step (``strategy``'s:
    a configure session called ``name`` on EOS, ``commit confirmed`` on Junos);
    ConfigRefused at the first refused line (none after it sent, nothing saved; in a
    session or a candidate none applied)."""
    lines = command_lines(commands)
    in_session = name if strategy is not None and strategy.sessions else None
    output = session.send_config(lines, session=in_session)
    end = strategy.commit(session, name) if strategy is not None else session.save_config()
    return output + "\n" + end


def rollback_commands(current: str, target: str, platform: str) -> list[str]:
    """The lines that take a device from ``current`` to ``target`` (hier_config's
    remediation), indented under their sections, with ``exit`` when a section ends."""
    driver = hier_platform(platform)
    remediation = WorkflowRemediation(
        get_hconfig(driver, normalize_config(platform, current, redact_secrets=False)),
        get_hconfig(driver, normalize_config(platform, target, redact_secrets=False)),
    ).remediation_config
    lines: list[str] = []
    depth = 1
    for child in remediation.all_children_sorted():
        level = child.depth()
        lines += ["exit"] * (depth - level)
        lines.append(" " * (level - 1) + child.text)
        depth = level
    return lines


def configs_match(current: str, target: str, platform: str) -> bool:
    """Equal as normalised text, or nothing left for hier_config to remediate."""
    a = normalize_config(platform, current, redact_secrets=False)
    b = normalize_config(platform, target, redact_secrets=False)
    return a == b or not rollback_commands(a, b, platform)


def _redacted(platform: str, lines: Sequence[str]) -> list[str]:
    return normalize_config(platform, "\n".join(lines)).splitlines()


def rollback(
    session: DriverSession,
    taken: Snapshot,
    platform: str,
    *,
    native: bool = True,
    fallback_to_lines: bool = True,
) -> RollbackResult:
    """Restore ``taken``: natively where possible, else (or, with ``fallback_to_lines``,
    after a failed native attempt) line by line; verified against the snapshot, and
    saved once verified. Never raises for the device: the result says what happened."""
    result = RollbackResult(method="none", verified=False)
    commits = platforms.platform_key(platform) in COMMIT_PLATFORMS
    strategy = native_strategy(platform) if native else None
    if strategy is not None and taken.checkpoint is not None:
        result.method = "native"
        try:
            strategy.restore(session, taken.checkpoint, platform)
            current = session.get_config()
            result.after = normalize_config(platform, current)
            result.verified = configs_match(current, taken.config, platform)
            if result.verified:
                result.attempts.append(f"{strategy.name}: done, config equals the snapshot")
                if not commits:  # a commit platform's rollback is a commit
                    _save(session, result)
                return result
            result.attempts.append(
                f"{strategy.name}: reported success but the config differs from the snapshot"
            )
        except (CommandTimeout, ConnectionFailed) as exc:
            result.attempts.append(f"{strategy.name}: session lost: {exc}")
            return result
        except DriverError as exc:
            result.attempts.append(f"{strategy.name} failed: {exc}")
        if not fallback_to_lines:
            return result
        result.attempts.append("trying line by line (hier_config) instead")
    result.method = "line_by_line"
    try:
        current = session.get_config()
        lines = rollback_commands(current, taken.config, platform)
        result.commands = _redacted(platform, lines)
        if lines:
            session.send_config(lines)
            if commits:
                session.save_config()
        current = session.get_config()
        result.after = normalize_config(platform, current)
        result.verified = configs_match(current, taken.config, platform)
    except DriverError as exc:
        result.attempts.append(f"line by line failed: {exc}")
        return result
    if not result.verified:
        result.attempts.append("line by line: the config still differs from the snapshot")
        return result
    result.attempts.append(f"line by line: {len(lines)} line(s) sent, config equals the snapshot")
    if not commits:
        _save(session, result)
    return result


def _save(session: DriverSession, result: RollbackResult) -> None:
    try:
        session.save_config()
    except DriverError as exc:
        result.attempts.append(f"the restored config is running but was not saved: {exc}")


def _login_check(login_check: Callable[[], None]) -> CheckResult:
    """A new login after the change: the change must not lock us out."""
    try:
        login_check()
    except Exception as exc:  # a refused login, a timeout, no route: all a failed check
        return CheckResult("new login", False, f"a new login failed: {exc}")
    return CheckResult("new login", True, "a new login works")


def _confirm(session: DriverSession, strategy: NativeRollback) -> list[CheckResult]:
    """The strategy's confirming step, as a check when it has one (Junos)."""
    if strategy.confirm_minutes is None:
        return []
    try:
        strategy.confirm(session)
    except DriverError as exc:
        lost = isinstance(exc, (CommandTimeout, ConnectionFailed))
        return [CheckResult("confirm", False, f"confirming the commit failed: {exc}", lost=lost)]
    return [CheckResult("confirm", True, "the commit is confirmed")]


def masked(outcome: DeviceOutcome, secrets: Sequence[str]) -> DeviceOutcome:
    """The outcome with ``secrets`` (values of a change's secret variables) shown as
    ``***`` in everything it says: messages, push output, checks, rollback attempts."""
    secrets = list(secrets)
    if not secrets:
        return outcome
    outcome.messages = [hide(m, secrets) for m in outcome.messages]
    if outcome.push_output is not None:
        outcome.push_output = hide(outcome.push_output, secrets)
    for check in (*outcome.prechecks, *outcome.postchecks):
        check.why, check.excerpt = hide(check.why, secrets), hide(check.excerpt, secrets)
    if outcome.rollback is not None:
        outcome.rollback.attempts = [hide(a, secrets) for a in outcome.rollback.attempts]
        outcome.rollback.commands = [hide(c, secrets) for c in outcome.rollback.commands]
    return outcome


def apply_to_device(
    session: DriverSession,
    *,
    platform: str,
    commands: str | Sequence[str],
    checks: Iterable[Check | Mapping[str, Any]],
    snapshot_name: str,
    native: bool = True,
    fallback_to_lines: bool = True,
    reconnect: Callable[[], DriverSession] | None = None,
    before_push: Callable[[Snapshot], None] | None = None,
    login_check: Callable[[], None] | None = None,
) -> DeviceOutcome:
    """Snapshot, pre-checks, push, post-checks, then (on a refused push or a failed
    post-check) an immediate rollback. ``checks`` run before and after the push (each
    as its ``when`` says: before, after or both).

    ``native=False`` skips the platform's native checkpoint and rollback (line by line
    only); ``reconnect`` opens a new session when the first is lost mid-change;
    ``before_push`` is handed the snapshot once the pre-checks passed, before the first
    command is sent (the caller records it); if it raises, nothing is sent;
    ``login_check`` (the reachability check) opens and closes a new session after the
    post-checks: a DriverError fails it like a post-check (and the device is rolled
    back on the session still open). The outcome may name the commands sent: a caller
    with secret values passes it through ``masked``.
    """
    parsed = parse_checks(checks)
    lines = command_lines(commands)
    if not lines:
        raise ValueError("a change with no commands")
    outcome = DeviceOutcome(state="failed_precheck")
    try:
        taken = snapshot(session, platform, snapshot_name, native=native)
    except DriverError as exc:
        outcome.messages.append(f"Not attempted: no snapshot ({exc}).")
        return outcome
    outcome.before = taken.stored
    outcome.messages += taken.messages
    before = [check for check in parsed if check.when != "after"]
    after = [check for check in parsed if check.when != "before"]
    outcome.prechecks = run_checks(session, before, platform=platform)
    failed = [check for check in outcome.prechecks if not check.passed]
    if failed:
        outcome.messages.append(
            "Not attempted: pre-check failed: "
            + "; ".join(f"{check.command}: {check.why}" for check in failed)
        )
        return outcome
    if before_push is not None:
        try:
            before_push(taken)
        except Exception as exc:  # the caller's bookkeeping: no record, no push
            logger.exception("change snapshot %s: recording it failed", taken.name)
            outcome.messages.append(f"Not attempted: the snapshot was not recorded ({exc}).")
            return outcome

    lost = False
    strategy = native_strategy(platform) if native else None
    try:
        outcome.push_output = push(session, lines, strategy=strategy, name=taken.name)
    except DriverError as exc:
        lost = isinstance(exc, (CommandTimeout, ConnectionFailed))
        problem = f"Push failed: {exc}"
        if getattr(exc, "discarded", False):
            problem += " (nothing of it was applied)"
    else:
        outcome.postchecks = run_checks(session, after, platform=platform)
        if login_check is not None and all(check.passed for check in outcome.postchecks):
            outcome.postchecks.append(_login_check(login_check))
        failed = [check for check in outcome.postchecks if not check.passed]
        if not failed and strategy is not None:
            outcome.postchecks += _confirm(session, strategy)
            failed = [check for check in outcome.postchecks if not check.passed]
        if not failed:
            outcome.state = "applied"
            outcome.messages.append(f"Applied {len(lines)} line(s); post-checks passed.")
            try:
                outcome.after = normalize_config(platform, session.get_config())
            except DriverError as exc:
                outcome.messages.append(f"Applied, but the config after it was not read: {exc}")
            return outcome
        lost = any(check.lost for check in failed)
        problem = "Post-check failed: " + "; ".join(
            f"{check.command}: {check.why}" for check in failed
        )
    outcome.messages.append(f"{problem}; rolling back.")
    _roll_back(outcome, session, taken, platform, lost, reconnect, native, fallback_to_lines)
    return outcome


def _roll_back(
    outcome: DeviceOutcome,
    session: DriverSession,
    taken: Snapshot,
    platform: str,
    lost: bool,
    reconnect: Callable[[], DriverSession] | None,
    native: bool,
    fallback_to_lines: bool,
) -> None:
    own: DriverSession | None = None
    if lost:
        if reconnect is None:
            outcome.state = "rollback_failed"
            outcome.messages.append(
                "ROLLBACK FAILED: the session was lost and no new one can be opened; "
                "the device may hold part of the change." + _self_rollback(platform, native)
            )
            logger.error("change snapshot %s: session lost, no rollback", taken.name)
            return
        try:
            own = reconnect()
        except DriverError as exc:
            outcome.state = "rollback_failed"
            outcome.messages.append(
                f"ROLLBACK FAILED: the session was lost and reconnecting failed ({exc}); "
                "the device may hold part of the change." + _self_rollback(platform, native)
            )
            logger.error("change snapshot %s: reconnect for rollback failed", taken.name)
            return
        session = own
        outcome.messages.append("The session was lost; rolling back on a new session.")
    try:
        result = rollback(
            session, taken, platform, native=native, fallback_to_lines=fallback_to_lines
        )
    finally:
        if own is not None:
            own.close()
    outcome.rollback = result
    outcome.after = result.after
    outcome.messages += result.attempts
    if result.verified:
        outcome.state = "rolled_back"
        outcome.messages.append(f"Rolled back ({result.method}); config equals the snapshot.")
    else:
        outcome.state = "rollback_failed"
        outcome.messages.append(
            f"ROLLBACK FAILED ({result.method}): the device's config differs from the "
            "snapshot; it needs a person now."
        )
        # what was tried is in the outcome (secrets hidden), not in this process's log
        logger.error("change snapshot %s: rollback failed (%s)", taken.name, result.method)


def _self_rollback(platform: str, native: bool) -> str:
    """What a platform that undoes an unconfirmed commit by itself will do (Junos)."""
    strategy = native_strategy(platform) if native else None
    if strategy is None or strategy.confirm_minutes is None:
        return ""
    return (
        f" Unless someone confirms it, the device undoes the commit by itself within "
        f"{strategy.confirm_minutes} minute(s) (commit confirmed)."
    )
