"""The netmiko backend: SSH sessions to network devices, with clear error classes.

Legacy SSH: old devices (IOS 12.x, early NX-OS) only sign with ``ssh-rsa`` (SHA-1);
``ROOKERY_SSH_LEGACY_ALGORITHMS=true`` makes paramiko offer it by disabling the
rsa-sha2 signature variants for those sessions.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from netmiko import ConnectHandler
from netmiko.exceptions import (
    NetmikoAuthenticationException,
    NetmikoTimeoutException,
    ReadException,
    ReadTimeout,
)
from paramiko.ssh_exception import SSHException

from app.drivers import (
    AuthenticationFailed,
    CommandTimeout,
    ConnectionFailed,
    DriverError,
    SessionOptions,
    UnsupportedPlatform,
)
from app.job_api import DeviceTarget, ResolvedCredential

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
        }
        if options.legacy_algorithms:
            params["disabled_algorithms"] = LEGACY_ALGORITHMS
        where = f"{target.name} ({target.host}:{target.port})"
        try:
            connection = ConnectHandler(**params)
        except NetmikoAuthenticationException:
            raise AuthenticationFailed(
                f"{where} refused credential {credential.name!r} (user {credential.username})"
            ) from None
        except NetmikoTimeoutException as exc:
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
            raise ConnectionFailed(f"{where}: {_describe_os_error(exc)}") from None
        session = cls(connection, target, credential, options)
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
