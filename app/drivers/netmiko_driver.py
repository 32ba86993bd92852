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
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from collections.abc import Iterator
from typing import Any

from netmiko import ConnectHandler
from netmiko.exceptions import (
    NetmikoAuthenticationException,
    NetmikoTimeoutException,
    ReadException,
    ReadTimeout,
)
from paramiko.ssh_exception import BadHostKeyException, SSHException

from app import ssh_keys
from app.drivers import (
    AuthenticationFailed,
    CommandTimeout,
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

#: the command that prints a platform's running configuration
CONFIG_COMMANDS: dict[str, str] = {
    "juniper": "show configuration",
    "juniper_junos": "show configuration",
    "huawei": "display current-configuration",
    "huawei_vrpv8": "display current-configuration",
    "hp_comware": "display current-configuration",
    "linux": "cat /etc/hostname",
}
DEFAULT_CONFIG_COMMAND = "show running-config"

LEGACY_ALGORITHMS = {"pubkeys": ["rsa-sha2-512", "rsa-sha2-256"]}


def config_command(platform: str) -> str:
    return CONFIG_COMMANDS.get(platform, DEFAULT_CONFIG_COMMAND)


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
        try:
            session.enable()
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

    def send_command(self, command: str, *, use_textfsm: bool = False) -> Any:
        try:
            return self._conn.send_command(
                command, read_timeout=self.options.read_timeout, use_textfsm=use_textfsm
            )
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

    def get_config(self) -> str:
        """The running configuration, as the device prints it."""
        output = self.send_command(config_command(self.target.platform))
        return str(output)

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
