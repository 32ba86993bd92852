"""The netmiko backend: SSH sessions to network devices, with clear error classes.

Legacy SSH: old devices (IOS 12.x, early NX-OS) only sign with ``ssh-rsa`` (SHA-1);
``ROOKERY_SSH_LEGACY_ALGORITHMS=true`` makes paramiko offer it by disabling the
rsa-sha2 signature variants for those sessions.

Host keys: paramiko checks the server's host key right after the key exchange, before
any authentication. A device with a trusted key (its pinned key; in strict mode only an
approved one) connects with ``ssh_strict=True`` and a private ``known_hosts`` file
holding that key alone (``alt_key_file``, deleted once connected), so paramiko refuses
another key (``BadHostKeyException``) before a password is sent; paramiko also asks the
server for a key of the pinned type first. Without a trusted key, TOFU mode connects
with ``ssh_strict=False`` (paramiko's AutoAddPolicy) and reports the key the server
presented (``host_key_unpinned``) for the caller to pin; strict mode pins a key nobody
holds (``ssh_keys.unmatchable_key``), so the connection is refused and the refusal
carries the key the server offered.

Configuration pushes (change sets): ``send_config`` enters configuration mode once and
sends one line at a time (a multi-line ``banner`` as one batch), reading each line's
answer with ``app.platforms.command_error``; at the first refusal it leaves configuration
mode (discarding a Junos candidate first) and raises ``ConfigRefused`` naming the line, so
no later line is sent. On platforms that commit (Junos, IOS-XR: ``COMMIT_PLATFORMS``) the
session stays in configuration mode after the lines, and ``save_config`` commits and
leaves it; elsewhere ``save_config`` is netmiko's save step (``write mem`` on IOS). On
platforms with configure sessions (EOS: ``SESSION_PLATFORMS``) ``send_config(lines,
session=NAME)`` types the lines into ``configure session NAME`` and commits them together
after the last: a refused line aborts the session, so none of them was applied. The IOS
and EOS paths are exercised against devices (the stateful lab); the commit path follows
netmiko's ``commit()`` and is untested here.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from netmiko import ConnectHandler
from netmiko.exceptions import (
    NetmikoAuthenticationException,
    NetmikoTimeoutException,
    ReadException,
    ReadTimeout,
)
from paramiko.ssh_exception import BadHostKeyException, SSHException

from app import platforms, profiles, ssh_keys
from app.drivers import (
    COMMIT_PLATFORMS,
    SESSION_PLATFORMS,
    AuthenticationFailed,
    CommandTimeout,
    ConfigRefused,
    ConnectionFailed,
    DriverError,
    HostKeyMismatch,
    HostKeyNotApproved,
    HostKeyRefused,
    SessionOptions,
    UnsupportedPlatform,
)
from app.job_api import DeviceTarget, ResolvedCredential
from app.ssh_keys import HostKey

logger = logging.getLogger(__name__)

LEGACY_ALGORITHMS = {"pubkeys": ["rsa-sha2-512", "rsa-sha2-256"]}

#: what discards an uncommitted candidate before leaving configuration mode (IOS-XR's
#: netmiko ``exit_config_mode`` answers "no" to "Uncommitted changes found" itself)
DISCARD_COMMANDS: dict[str, str] = {"juniper_junos": "rollback 0"}

#: a prompt line: the base prompt between what prompts put around it ("<r1>", "r1#",
#: "[admin@r1] >", "admin@r1:~$")
_PROMPT_LINE = re.compile(r"([<\[(]?)(?P<base>.+?)([\s>#$%\])(:~*]{0,6})")
_BANNER = re.compile(r"^\s*banner\s+\S+\s+(\S.*)$", re.IGNORECASE)


def config_command(platform: str) -> str:
    """The command that prints a platform's running configuration (its profile's first
    ``config_commands``)."""
    return profiles.get(platform).config_commands[0]


def comment_block(profile: profiles.Profile, command: str, output: str) -> str:
    """An extra command's output as comment lines of the platform (Oxidized's way of
    keeping ``show version`` beside the configuration)."""
    mark = profile.comment
    lines = [f"{mark}{command}"]
    lines += [f"{mark}{line}".rstrip() for line in output.strip("\n").splitlines()]
    return "\n".join(lines)


def _without_echo(output: str, command: str) -> str:
    """``output`` without a first line that is the start or the end of ``command``: netmiko
    strips the echo of the command it sent, but from a device that echoes slowly it can
    read part of it ("disp", "play current-configuration") as if it were the answer."""
    first, newline, rest = output.lstrip("\r\n").partition("\n")
    echo, sent = first.strip(), command.strip()
    if len(echo) >= 4 and (sent.startswith(echo) or sent.endswith(echo)):
        return rest if newline else ""
    return output


def _without_trailing_prompt(output: str, base_prompt: str) -> str:
    """``output`` without a prompt as its last line: netmiko strips the prompt it stopped
    at, but a device that answered with a blank line first (RouterOS) leaves its prompt
    behind, and a read that met a prompt left from the login is that prompt alone. A
    prompt is never configuration."""
    head, _, last = output.rstrip().rpartition("\n")
    base = base_prompt.strip().lstrip("<[(").rstrip(">])")
    found = _PROMPT_LINE.fullmatch(last.strip()) if base else None
    if found and found.group("base") == base and (found.group(1) or found.group(3)):
        return head
    return output


def config_batches(lines: Sequence[str]) -> list[list[str]]:
    """``lines`` in the batches ``send_config`` sends: one line each, but a multi-line
    ``banner`` (``banner motd ^C`` ... ``^C``) whole, since its text lines get no prompt."""
    batches: list[list[str]] = []
    banner: list[str] | None = None
    delimiter = ""
    for line in lines:
        if banner is not None:
            banner.append(line)
            if delimiter in line:
                batches.append(banner)
                banner = None
            continue
        match = _BANNER.match(line)
        if match is None:
            batches.append([line])
            continue
        token = match.group(1)
        delimiter = "^C" if token.startswith("^C") else token[0]
        if delimiter in token[len(delimiter) :]:  # the banner ends on its own line
            batches.append([line])
        else:
            banner = [line]
    if banner is not None:
        batches.append(banner)  # an unterminated banner: the device says what it thinks
    return batches


def _answer_of(batch: Sequence[str], output: str) -> str:
    """A batch's output without the echo of its first line (the echo is not an answer)."""
    lines = output.splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    if lines and lines[0].strip().endswith(batch[0].strip()):
        lines.pop(0)
    return "\n".join(lines)


def trusted_key(target: DeviceTarget, options: SessionOptions) -> HostKey | None:
    """The key the device's server must present: its pinned key (in strict mode only an
    approved one), or None (TOFU: the first key is trusted and pinned)."""
    if target.host_key is None:
        return None
    if options.host_keys == "strict" and not target.host_key_approved:
        return None
    return target.host_key


def write_known_hosts(target: DeviceTarget, key: HostKey) -> str:
    """A private known_hosts file (mode 0600) holding ``key`` alone for the device's
    host and port; the caller deletes it."""
    line = ssh_keys.known_hosts_line(target.host, target.port, key)
    fd, path = tempfile.mkstemp(prefix="rookery-known-hosts-")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(line)
    except BaseException:
        os.unlink(path)
        raise
    return path


class NetmikoSession:
    """A netmiko connection wrapped in Rookery's driver interface."""

    def __init__(
        self,
        connection: Any,
        target: DeviceTarget,
        credential: ResolvedCredential,
        options: SessionOptions,
    ) -> None:
        self._conn = connection
        self.target = target
        self.credential_name = credential.name
        self._has_secret = bool(credential.enable_secret)
        self.options = options
        self.closed = False
        #: the host key the server presented, and whether no pinned key was checked
        self.host_key: HostKey | None = None
        self.host_key_unpinned = False

    @classmethod
    def open(
        cls, target: DeviceTarget, credential: ResolvedCredential, options: SessionOptions
    ) -> NetmikoSession:
        params: dict[str, Any] = {
            "device_type": target.platform,
            "host": target.host,
            "port": target.port,
            "username": credential.username,
            "password": credential.password,
            "secret": credential.enable_secret or "",
            "conn_timeout": options.connect_timeout,
            "auth_timeout": options.connect_timeout,
            "banner_timeout": options.connect_timeout,
            "read_timeout_override": options.read_timeout,
            "fast_cli": options.fast_cli,
            "allow_agent": False,
            "use_keys": False,
            "ssh_config_file": None,
            "system_host_keys": False,  # never ~/.ssh/known_hosts: only the key given here
        }
        if options.legacy_algorithms:
            params["disabled_algorithms"] = LEGACY_ALGORITHMS
        where = f"{target.name} ({target.host}:{target.port})"
        pinned = trusted_key(target, options)
        checked = pinned
        if checked is None and options.host_keys == "strict":
            checked = ssh_keys.unmatchable_key()
        known_hosts = None
        try:
            if checked is not None:
                known_hosts = write_known_hosts(target, checked)
                params.update(ssh_strict=True, alt_host_keys=True, alt_key_file=known_hosts)
            else:
                params.update(ssh_strict=False, alt_host_keys=False)
            connection = ConnectHandler(**params)
        except NetmikoAuthenticationException:
            raise AuthenticationFailed(
                f"{where} refused credential {credential.name!r} (user {credential.username})"
            ) from None
        except NetmikoTimeoutException as exc:
            refusal = host_key_refusal(exc, where, pinned)
            if refusal is not None:
                raise refusal from None
            raise ConnectionFailed(f"{where} did not answer: {_first_line(exc)}") from None
        except ReadTimeout:
            raise CommandTimeout(f"{where} stopped answering while logging in") from None
        except ValueError as exc:
            if "device_type" in str(exc).lower() or "unsupported" in str(exc).lower():
                raise UnsupportedPlatform(
                    f"{where}: netmiko does not support platform {target.platform!r}"
                ) from None
            raise DriverError(f"{where}: {_first_line(exc)}") from None
        except (SSHException, OSError, EOFError) as exc:
            refusal = host_key_refusal(exc, where, pinned)
            if refusal is not None:
                raise refusal from None
            raise ConnectionFailed(f"{where}: {_describe_os_error(exc)}") from None
        finally:
            if known_hosts is not None:
                os.unlink(known_hosts)
        session = cls(connection, target, credential, options)
        session.host_key = _server_key(connection)
        session.host_key_unpinned = checked is None
        profile = profiles.get(target.platform)
        try:
            if profile.enable:
                session.enable()
            if profile.paging:
                session.send_command(profile.paging)
        except DriverError:
            session.close()
            raise
        return session

    def enable(self) -> None:
        """Enter enable (privileged) mode where the platform has one.

        With an enable secret, a refusal is an authentication failure; without one, the
        device may still let the user in (or the user is privileged already) — if it
        refuses, the session stays in user mode.
        """
        try:
            self._conn.enable()  # netmiko checks the mode first: one round trip, not two
        except (ValueError, ReadException) as exc:
            if self._has_secret:
                raise AuthenticationFailed(
                    f"{self.target.name}: enable mode refused with credential "
                    f"{self.credential_name!r} ({_first_line(exc)})"
                ) from None
            logger.info(
                "%s: no enable mode without a secret; staying in user mode", self.target.name
            )
        except (AttributeError, NotImplementedError):
            return  # platforms without an enable mode

    @contextmanager
    def _guard(self, command: str) -> Iterator[None]:
        """Netmiko's timeouts and transport errors as Rookery's driver errors."""
        try:
            yield
        except ReadTimeout:
            # netmiko's polite disconnect would wait 10 s more for a prompt that never
            # comes: drop the transport instead.
            self.abort()
            raise CommandTimeout(
                f"{self.target.name} did not finish {command!r} within "
                f"{self.options.read_timeout:g}s"
            ) from None
        except (OSError, EOFError, SSHException) as exc:
            if self.closed:
                raise ConnectionFailed(f"{self.target.name}: session closed (cancelled)") from None
            raise ConnectionFailed(f"{self.target.name}: {_describe_os_error(exc)}") from None

    def send_command(self, command: str, *, use_textfsm: bool = False) -> Any:
        with self._guard(command):
            return self._conn.send_command(
                command, read_timeout=self.options.read_timeout, use_textfsm=use_textfsm
            )

    def send_command_expect(self, command: str, expect: str) -> str:
        """Send ``command`` (``"\\n"``: a bare return, e.g. to take a question's default)
        and read until the regex ``expect``; the output keeps the prompt or question."""
        with self._guard(command):
            output = self._conn.send_command(
                command,
                expect_string=expect,
                read_timeout=self.options.read_timeout,
                strip_prompt=False,
            )
        return str(output)

    def send_config(self, lines: Sequence[str], *, session: str | None = None) -> str:
        """Send ``lines`` (blank ones skipped) in configuration mode, one at a time.

        A line the device refuses raises ``ConfigRefused`` naming it, once the session
        has left configuration mode; no later line is sent. On ``COMMIT_PLATFORMS`` the
        session stays in configuration mode for ``save_config`` to commit. ``session``:
        the lines go to that configure session (``SESSION_PLATFORMS``), committed together
        after the last; a refusal aborts it (``ConfigRefused.discarded``).
        """
        lines = [line for line in lines if line.strip()]
        if not lines:
            return ""
        key = platforms.platform_key(self.target.platform)
        if session is not None and key not in SESSION_PLATFORMS:
            raise UnsupportedPlatform(
                f"{self.target.name}: {self.target.platform!r} has no configure sessions"
            )
        enter = "configure terminal" if session is None else f"configure session {session}"
        outputs: list[str] = []
        with self._guard(enter):
            outputs.append(self._conn.config_mode(config_command=enter))
        for batch in config_batches(lines):
            with self._guard(batch[0].strip()):
                output = self._conn.send_config_set(
                    batch,
                    enter_config_mode=False,
                    exit_config_mode=False,
                    read_timeout=self.options.read_timeout,
                )
            outputs.append(output)
            error = platforms.command_error(key, _answer_of(batch, output))
            if error is not None:
                self._leave_config("abort" if session is not None else DISCARD_COMMANDS.get(key))
                aborted = "; the configure session was aborted" if session is not None else ""
                raise ConfigRefused(
                    f"{self.target.name} refused {batch[0].strip()!r}: {error}{aborted}",
                    line=batch[0],
                    error=error,
                    output="\n".join(outputs),
                    discarded=session is not None,
                )
        if session is not None:
            with self._guard("commit"):
                output = self._conn.send_command(
                    "commit", expect_string=r"[>#]\s*$", read_timeout=self.options.read_timeout
                )
                outputs.append(str(output))
                self._conn.set_base_prompt()
            error = platforms.command_error(key, _answer_of(["commit"], str(output)))
            if error is not None:
                self._leave_config("abort")
                raise ConfigRefused(
                    f"{self.target.name} refused the commit: {error}; the session was aborted",
                    line="commit",
                    error=error,
                    output="\n".join(outputs),
                    discarded=True,
                )
        elif key not in COMMIT_PLATFORMS:
            with self._guard("end"):
                outputs.append(self._conn.exit_config_mode())
                self._conn.set_base_prompt()  # the change may have renamed the host
        return "\n".join(outputs)

    def _leave_config(self, discard: str | None) -> None:
        """Leave configuration mode after a refusal, discarding a candidate or a session
        first (``discard``: the command that does it)."""
        with self._guard("end"):
            if discard is not None and self._conn.check_config_mode():
                self._conn.send_config_set(
                    [discard], enter_config_mode=False, exit_config_mode=False
                )
            self._conn.exit_config_mode()
            self._conn.set_base_prompt()

    def save_config(self) -> str:
        """The platform's save step (``write mem`` on IOS), or its commit on
        ``COMMIT_PLATFORMS`` (leaving configuration mode); ``ConfigRefused`` when the
        device refuses it, ``UnsupportedPlatform`` when netmiko knows no save step."""
        key = platforms.platform_key(self.target.platform)
        step = "commit" if key in COMMIT_PLATFORMS else "save"
        with self._guard(step):
            try:
                if key in COMMIT_PLATFORMS:
                    output = self._conn.commit(read_timeout=self.options.read_timeout)
                    output += self._conn.exit_config_mode()
                    self._conn.set_base_prompt()
                else:
                    output = self._conn.save_config()
            except NotImplementedError:
                raise UnsupportedPlatform(
                    f"{self.target.name}: netmiko has no save step for {self.target.platform!r}"
                ) from None
            except ValueError as exc:  # netmiko's "Commit failed ..."
                raise ConfigRefused(
                    f"{self.target.name} refused the {step}: {_first_line(exc)}",
                    line=step,
                    error=_first_line(exc),
                    output=str(exc),
                ) from None
        output = str(output)
        error = platforms.command_error(key, _answer_of([step], output))
        if error is not None:
            raise ConfigRefused(
                f"{self.target.name} refused the {step}: {error}",
                line=step,
                error=error,
                output=output,
            )
        return output

    def _read_config(self, command: str, profile: profiles.Profile) -> str:
        """A configuration command's output; asked twice when the first answer is empty
        (netmiko can meet a prompt its login left behind and read nothing: a device never
        answers a configuration command with nothing at all)."""
        output = self._read(command, profile)
        if not output.strip():
            output = self._read(command, profile)
        return output

    def _read(self, command: str, profile: profiles.Profile) -> str:
        """A command's output, read up to the profile's prompt when it has one."""
        with self._guard(command):
            if profile.prompt:
                output = self._conn.send_command(
                    command, expect_string=profile.prompt, read_timeout=self.options.read_timeout
                )
            else:
                output = self._conn.send_command(command, read_timeout=self.options.read_timeout)
        output = _without_echo(str(output), command)
        return _without_trailing_prompt(output, getattr(self._conn, "base_prompt", ""))

    def get_config(self) -> str:
        """The running configuration, as the device prints it (the first of its profile's
        ``config_commands``)."""
        profile = profiles.get(self.target.platform)
        return self._read_config(profile.config_commands[0], profile)

    def backup_config(self) -> str:
        """What a config backup stores, before it is normalised: the profile's
        ``extra_commands`` as a comment block, then the output of each of its
        ``config_commands``.

        An extra command the device refuses is left out (logged). A refused config command
        makes the answer that refusal alone, so the caller's ``platforms.command_error``
        sees it at the top and no error message is ever stored as a configuration.
        """
        profile = profiles.get(self.target.platform)
        configs = []
        for command in profile.config_commands:
            output = self._read_config(command, profile)
            if platforms.command_error(self.target.platform, output) is not None:
                return output
            configs.append(output)
        extras = []
        for command in profile.extra_commands:
            output = self._read(command, profile)
            refusal = platforms.command_error(self.target.platform, output)
            if refusal is not None:
                logger.info(
                    "%s refused %r, left out of the backup: %s", self.target.name, command, refusal
                )
                continue
            extras.append(comment_block(profile, command, output))
        return "\n".join([*extras, *configs])

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._conn.disconnect()
        except Exception:  # a dead session may fail to say goodbye; it is closed anyway
            logger.debug("disconnect from %s failed", self.target.name, exc_info=True)

    def abort(self) -> None:
        """Close the transport under a blocked read (from another thread)."""
        self.closed = True
        for attr in ("remote_conn", "remote_conn_pre"):
            channel = getattr(self._conn, attr, None)
            try:
                if channel is not None:
                    channel.close()
            except Exception:
                logger.debug("closing %s of %s failed", attr, self.target.name, exc_info=True)

    def __enter__(self) -> NetmikoSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def host_key_refusal(
    exc: BaseException, where: str, pinned: HostKey | None
) -> HostKeyRefused | None:
    """The host-key refusal behind a connection error (netmiko wraps paramiko's), or None.

    paramiko raises ``BadHostKeyException`` (with the key the server presented) when the
    key is not the one in the known_hosts file, and its RejectPolicy an ``SSHException``
    "not found in known_hosts" when no key is known for that host name.
    """
    for cause in _chain(exc):
        if isinstance(cause, BadHostKeyException):
            return _refusal(where, pinned, HostKey.from_pkey(cause.key))
        if isinstance(cause, SSHException) and "not found in known_hosts" in str(cause):
            return _refusal(where, pinned, None)
    return None


def _refusal(where: str, pinned: HostKey | None, offered: HostKey | None) -> HostKeyRefused:
    got = offered.fingerprint if offered is not None else "a key that could not be read"
    if pinned is not None:
        return HostKeyMismatch(
            f"{where}: host key changed: expected {pinned.fingerprint}, got {got}; "
            "an admin must accept the new key. Nothing was sent to the server.",
            offered=offered,
        )
    return HostKeyNotApproved(
        f"{where}: no approved host key (ROOKERY_SSH_HOST_KEYS=strict); the server "
        f"offered {got}; an admin must accept it. Nothing was sent to the server.",
        offered=offered,
    )


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling (netmiko raises its
    own while handling paramiko's)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 10:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _server_key(connection: Any) -> HostKey | None:
    """The host key the server of an open netmiko connection presented."""
    try:
        transport = connection.remote_conn_pre.get_transport()
        return HostKey.from_pkey(transport.get_remote_server_key())
    except Exception:  # not an SSH connection (telnet, serial): nothing to pin
        logger.debug("no SSH host key on this connection", exc_info=True)
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _describe_os_error(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens on that port)"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return "host name does not resolve"
    return _first_line(exc)
