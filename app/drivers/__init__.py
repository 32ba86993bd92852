"""Drivers: how Rookery talks to a device, behind one small interface.

A backend opens a ``DriverSession`` (connect, enable, send commands, get the running
config, close) for one device and one credential. ``Device.driver`` names the
backend (``netmiko`` by default); another one (scrapli, paramiko) slots in by adding
an entry to ``BACKENDS``. Errors are classified so the dispatcher knows what to do:
``AuthenticationFailed`` moves to the next credential, ``ConnectionFailed`` is
retried with backoff and counts towards the device's circuit breaker,
``CommandTimeout`` means the device hung mid-command. ``HostKeyRefused`` (a changed
host key, or none approved in strict mode) ends the device at once: no retry, no other
credential, since no password may go to a server that is not the device.

Pushing configuration (change sets): ``send_config`` sends lines in configuration mode
and stops at the first line the device refuses (``ConfigRefused``, naming the line, after
leaving configuration mode), ``save_config`` is the platform's save or commit step, and
``send_command_expect`` reads up to a given answer (a question such as ``Destination
filename [x]?``) instead of the prompt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from app.errors import RookeryError
from app.job_api import DeviceTarget, ResolvedCredential
from app.ssh_keys import HostKey

logger = logging.getLogger(__name__)

__all__ = [
    "BACKENDS",
    "COMMIT_PLATFORMS",
    "SESSION_PLATFORMS",
    "AuthenticationFailed",
    "CommandTimeout",
    "ConfigRefused",
    "ConnectionFailed",
    "DriverError",
    "DriverSession",
    "HostKeyMismatch",
    "HostKeyNotApproved",
    "HostKeyRefused",
    "SessionOptions",
    "UnsupportedPlatform",
    "open_session",
]


#: platforms whose configuration is a candidate applied by a commit: ``send_config`` stays
#: in configuration mode there, and ``save_config`` commits
COMMIT_PLATFORMS = frozenset({"juniper_junos", "cisco_xr"})
#: platforms with named configuration sessions (``configure session NAME``: the lines
#: wait in the session and ``commit`` applies them all at once): ``send_config(session=)``
SESSION_PLATFORMS = frozenset({"arista_eos"})


class DriverError(RookeryError):
    """The device session failed."""


class AuthenticationFailed(DriverError):
    """The device refused the credentials."""


class ConnectionFailed(DriverError):
    """The device could not be reached."""


class CommandTimeout(DriverError):
    """The device stopped answering in the middle of a command."""


class ConfigRefused(DriverError):
    """The device refused a command (a configuration line, or its save/commit step).

    ``line`` is the refused command, ``error`` the device's refusal (e.g. ``% Invalid input
    detected at '^' marker.``) and ``output`` what the device printed up to it. The
    lines before ``line`` were applied (``discarded``: they were not, a configure session
    was aborted); none after it was sent.
    """

    def __init__(
        self, message: str, *, line: str, error: str, output: str = "", discarded: bool = False
    ) -> None:
        super().__init__(message)
        self.line = line
        self.error = error
        self.output = output
        self.discarded = discarded


class UnsupportedPlatform(DriverError):
    """No driver supports this device's platform."""


class HostKeyRefused(DriverError):
    """The server's SSH host key is not one Rookery trusts for this device.

    Raised before authentication: no password was sent. ``offered`` is the key the
    server presented (None when the driver could not tell), kept as the device's
    pending key for an admin to accept.
    """

    def __init__(self, message: str, *, offered: HostKey | None = None) -> None:
        super().__init__(message)
        self.offered = offered


class HostKeyMismatch(HostKeyRefused):
    """The server presented another key than the device's pinned one: "host key changed"."""


class HostKeyNotApproved(HostKeyRefused):
    """Strict host keys (``ROOKERY_SSH_HOST_KEYS=strict``) and no approved key for the device."""


@dataclass(frozen=True, kw_only=True)
class SessionOptions:
    """Timeouts and switches every session of a run shares."""

    connect_timeout: float = 10
    read_timeout: float = 60
    legacy_algorithms: bool = False
    fast_cli: bool = True
    #: ``tofu``: a device without a pinned key is trusted on first use and its key pinned;
    #: ``strict``: only a key an admin approved (accepted, set or imported) is trusted
    host_keys: str = "tofu"


class DriverSession(Protocol):
    """An open session on one device."""

    credential_name: str
    #: the host key the server presented (None when the backend cannot tell)
    host_key: HostKey | None
    #: True when no pinned key was checked (trust on first use): the caller pins host_key
    host_key_unpinned: bool

    def enable(self) -> None: ...

    def send_command(self, command: str, *, use_textfsm: bool = False) -> Any: ...

    def get_config(self) -> str: ...

    def backup_config(self) -> str:
        """What a config backup stores (the platform profile's extra commands as a
        comment block, then its config commands), before it is normalised."""
        ...

    def send_config(self, lines: Sequence[str], *, session: str | None = None) -> str:
        """Send ``lines`` in configuration mode, one at a time; raise ``ConfigRefused``
        (after leaving configuration mode) at the first line the device refuses. On
        ``COMMIT_PLATFORMS`` the session stays in configuration mode for the commit.
        ``session`` (``SESSION_PLATFORMS`` only): the lines go to that configure session,
        committed together after the last; a refusal aborts the session (nothing
        applied, ``ConfigRefused.discarded``)."""
        ...

    def save_config(self) -> str:
        """The platform's save step (``write memory``) or commit; ``ConfigRefused`` when
        the device refuses it."""
        ...

    def send_command_expect(self, command: str, expect: str) -> str:
        """Send ``command`` and read until the regex ``expect`` (a question, or a prompt):
        what the device printed, prompt or question included."""
        ...

    def close(self) -> None: ...

    def abort(self) -> None:
        """Close at once from another thread (a cancel or a timeout)."""
        ...

    def __enter__(self) -> DriverSession: ...

    def __exit__(self, *exc: object) -> None: ...


Opener = Callable[[DeviceTarget, ResolvedCredential, SessionOptions], DriverSession]


def _netmiko(
    target: DeviceTarget, credential: ResolvedCredential, options: SessionOptions
) -> DriverSession:
    from app.drivers import netmiko_driver

    return netmiko_driver.NetmikoSession.open(target, credential, options)


BACKENDS: dict[str, Opener] = {"netmiko": _netmiko}


def open_session(
    target: DeviceTarget, credential: ResolvedCredential, options: SessionOptions
) -> DriverSession:
    """Open a session on ``target`` with ``credential`` through the device's backend."""
    opener = BACKENDS.get(target.driver)
    if opener is None:
        raise UnsupportedPlatform(
            f"Unknown driver {target.driver!r} for {target.name}; known: "
            + ", ".join(sorted(BACKENDS))
        )
    return opener(target, credential, options)
