"""Emulated network devices for tests: pytest fixtures over ``app.demo_lab``.

FakeNOS SSH servers on 127.0.0.1 that netmiko drives with ordinary device types. Load the
fixtures with ``pytest_plugins = ["tests.devices"]`` in a test module (or the root
conftest, which makes them available everywhere).

- ``device_lab``: one device per platform of ``DEFAULT_PLATFORMS`` (cisco_ios, arista_eos,
  cisco_nxos, cisco_xr, juniper_junos), started once per session; after each test every
  device is back to its starting config, not hanging, and running.
- ``device_lab_factory``: ``factory(devices) -> DeviceLab`` for a lab of your own, stopped
  at the end of the test (a few ms a device to start and to stop, once FakeNOS's bundled
  platforms were parsed: about 0.7 s, once per process).
- ``silent_server``: accepts TCP connections and never answers (SSH banner timeout).
- ``closed_port``: a port of 127.0.0.1 that refuses connections.
- ``ssh_trap``: an attacker's SSH server on 127.0.0.1 that records the passwords it is
  offered and refuses them (``tests.ssh_trap.SshTrap``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import pytest

from app.demo_lab import (
    DEFAULT_PLATFORMS,
    PLATFORMS,
    DeviceLab,
    LabDevice,
    SilentServer,
    default_fleet,
    sample_config,
    unreachable_port,
)
from tests.ssh_trap import SshTrap

__all__ = [
    "DEFAULT_PLATFORMS",
    "PLATFORMS",
    "DeviceLab",
    "LabDevice",
    "SilentServer",
    "closed_port",
    "default_fleet",
    "device_lab",
    "device_lab_factory",
    "sample_config",
    "silent_server",
    "ssh_trap",
    "unreachable_port",
]


@pytest.fixture(scope="session")
def _device_lab_session() -> Iterator[DeviceLab]:
    lab = DeviceLab(default_fleet(len(DEFAULT_PLATFORMS)))
    lab.start()
    yield lab
    lab.stop()


@pytest.fixture
def device_lab(_device_lab_session: DeviceLab) -> Iterator[DeviceLab]:
    """The session's lab; each device's ``platform`` is distinct (see ``lab.devices``)."""
    yield _device_lab_session
    _device_lab_session.reset()


@pytest.fixture
def device_lab_factory() -> Iterator[Callable[[Iterable[LabDevice]], DeviceLab]]:
    labs: list[DeviceLab] = []

    def factory(devices: Iterable[LabDevice]) -> DeviceLab:
        lab = DeviceLab(devices)
        labs.append(lab)
        return lab.start()

    yield factory
    for lab in labs:
        lab.stop()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    with SilentServer() as server:
        yield server


@pytest.fixture
def closed_port() -> int:
    return unreachable_port()


@pytest.fixture
def ssh_trap() -> Iterator[SshTrap]:
    """An attacker's SSH server on 127.0.0.1 recording the passwords it is offered."""
    with SshTrap() as trap:
        yield trap
