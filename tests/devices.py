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

import functools
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

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


# ---------------------------------------------------------------- every FakeNOS platform


@dataclass(frozen=True)
class FakeNosPlatform:
    """How one FakeNOS platform is served so netmiko's driver for ``device_type`` logs in.

    The device starts at its privileged prompt and answers every command at any prompt
    (no enable step to emulate); ``replies`` answer what netmiko's session preparation
    sends that FakeNOS has no (or a wrong) canned answer for.
    """

    device_type: str  # netmiko's name
    fakenos: str  # the bundled FakeNOS plugin whose commands are reused
    prompt: str = "{base_prompt}#"
    base_prompt: str = "{name}"  # may use {name} and {username}
    #: what netmiko adds to the user name it logs in with (RouterOS terminal options)
    username_suffix: str = ""
    replies: Mapping[str, str] = field(default_factory=dict)
    #: what the device prints before its first prompt
    intro: str = ""
    #: the prompt ``enable`` switches to (None: the device starts privileged)
    enabled_prompt: str | None = None


_CISCO_LIKE = (
    "allied_telesis_awplus",
    "arista_eos",
    "avaya_ers",
    "avaya_vsp",
    "broadcom_icos",
    "brocade_fastiron",
    "brocade_netiron",
    "cisco_asa",
    "cisco_ftd",
    "cisco_ios",
    "cisco_nxos",
    "cisco_s300",
    "dell_force10",
    "dlink_ds",
    "eltex",
    "ericsson_ipos",
    "extreme_exos",
    "ipinfusion_ocnos",
    "ruckus_fastiron",
    "ubiquiti_edgeswitch",
    "zyxel_os",
)

#: the FakeNOS platforms netmiko logs in to (by netmiko device type); FakeNOS 1.2 ships
#: three more (aruba_os, dell_powerconnect, paloalto_panos) whose netmiko drivers need
#: keyboard-interactive or "none" SSH authentication, or a carriage-return line ending,
#: that FakeNOS's server does not offer
FAKENOS_PLATFORMS: dict[str, FakeNosPlatform] = {
    platform.device_type: platform
    for platform in (
        *(FakeNosPlatform(name, name) for name in _CISCO_LIKE),
        FakeNosPlatform("alcatel_aos", "alcatel_aos", prompt="{base_prompt}-> "),
        FakeNosPlatform(
            "alcatel_sros", "alcatel_sros", prompt="A:{base_prompt}# ", replies={"enable-admin": ""}
        ),
        FakeNosPlatform("checkpoint_gaia", "checkpoint_gaia", prompt="{base_prompt}> "),
        FakeNosPlatform("ciena_saos", "ciena_saos", prompt="{base_prompt}> "),
        FakeNosPlatform("cisco_xr", "cisco_xr", base_prompt="RP/0/RP0/CPU0:{name}"),
        FakeNosPlatform(
            "fortinet",
            "fortinet",
            prompt="{base_prompt} # ",
            replies={
                "get system status | grep Virtual": "Virtual domain configuration: disable",
                "get system status | grep Version": (
                    "Version: FortiGate-60F v7.2.8,build1639,240313 (GA.F)"
                ),
                "get system console": "output              : standard",
            },
        ),
        FakeNosPlatform("hp_comware", "hp_comware", prompt="{base_prompt}>", base_prompt="<{name}"),
        FakeNosPlatform(
            "hp_procurve",
            "hp_procurve",
            prompt="{base_prompt}# ",
            intro="HP J9729A 2920-48G-POE+ Switch\nCopyright (C) 1991-2014 Hewlett-Packard Co.",
            replies={"logout": "Do you want to log out [y/n]? "},
        ),
        FakeNosPlatform("huawei", "huawei_vrp", prompt="{base_prompt}>", base_prompt="<{name}"),
        FakeNosPlatform(
            "huawei_smartax",
            "huawei_smartax",
            prompt="{base_prompt}>",
            enabled_prompt="{base_prompt}#",
            replies={"quit": "Configuration console exit, please retry to log on"},
        ),
        FakeNosPlatform(
            "juniper_junos",
            "juniper_junos",
            # netmiko's Junos driver looks for "> " (with the space)
            prompt="{base_prompt}> ",
            base_prompt="{username}@{name}",
            replies={
                "set cli screen-width 511": "Screen width set to 511",
                "set cli complete-on-space off": "Disabling complete-on-space",
                "set cli screen-length 0": "Screen length set to 0",
            },
        ),
        FakeNosPlatform("juniper_screenos", "juniper_screenos", prompt="{base_prompt}->"),
        FakeNosPlatform(
            "linux", "linux", prompt="{base_prompt}$ ", base_prompt="{username}@{name}"
        ),
        FakeNosPlatform(
            "mikrotik_routeros",
            "mikrotik_routeros",
            prompt="[{base_prompt}] > ",
            base_prompt="{username}@{name}",
            username_suffix="+ct511w4098h",
        ),
        FakeNosPlatform(
            "ubiquiti_edgerouter",
            "ubiquiti_edgerouter",
            prompt="{base_prompt}:~$ ",
            base_prompt="{username}@{name}",
        ),
        FakeNosPlatform(
            "vyatta_vyos",
            "vyatta_vyos",
            prompt="{base_prompt}:~$ ",
            base_prompt="{username}@{name}",
        ),
        FakeNosPlatform(
            "yamaha", "yamaha", prompt="{base_prompt}# ", replies={"console lines infinity": ""}
        ),
    )
}


@dataclass
class PlatformDevice:
    """One device of a ``PlatformLab``: ``outputs`` maps a command to what it prints."""

    name: str
    platform: str  # a key of FAKENOS_PLATFORMS
    username: str
    password: str
    outputs: dict[str, str] = field(default_factory=dict)
    port: int | None = None


class PlatformLab:
    """FakeNOS devices of any platform of ``FAKENOS_PLATFORMS`` on 127.0.0.1, started together.

    Each platform's bundled commands answer (``show version`` ...), beside the device's
    own ``outputs``; any other command gets FakeNOS's ``Unknown command``.
    """

    def __init__(self, devices: Iterable[PlatformDevice]) -> None:
        self.devices = list(devices)
        self._net: Any = None

    def start(self) -> PlatformLab:
        from fakenos import FakeNOS

        from app import demo_lab

        logging.getLogger("fakenos").setLevel(logging.CRITICAL)  # every disconnect is an "error"
        _serve_group_exchange()
        used = sorted({device.platform for device in self.devices})
        plugins = [_platform_nos(FAKENOS_PLATFORMS[name]) for name in used]
        ports = demo_lab.free_ports(len(self.devices))
        hosts = {
            device.name: _platform_host(device, port)
            for device, port in zip(self.devices, ports, strict=True)
        }
        net = FakeNOS(inventory={"hosts": hosts}, plugins=plugins)
        net.servers_plugins["ParamikoSshServer"] = demo_lab._server_class()
        demo_lab.DeviceLab._start_hosts(net)
        for device, port in zip(self.devices, ports, strict=True):
            device.port = port
        self._net = net
        return self

    def stop(self) -> None:
        from app import demo_lab

        if self._net is not None:
            demo_lab.DeviceLab._stop_hosts(self._net)
            self._net = None
        for device in self.devices:
            device.port = None

    def __enter__(self) -> PlatformLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@functools.cache
def _bundled_commands(fakenos_platform: str) -> dict[str, Any]:
    """The canned commands of a FakeNOS platform's YAML file, parsed with libyaml: FakeNOS's
    own loader takes about 14 s for the 38 platforms, this 0.4 s. (The few commands its
    Python plugins add, ``show version`` of IOS and EOS, are not needed here.)"""
    import yaml
    from fakenos.plugins.nos import nos_plugins

    files = nos_plugins[fakenos_platform]
    path = next(f for f in ([files] if isinstance(files, str) else files) if f.endswith(".yaml"))
    with open(path, encoding="utf-8") as handle:
        data = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return data.get("commands") or {}


def _platform_nos(platform: FakeNosPlatform) -> Any:
    from fakenos.core.nos import Nos

    commands = {
        command: {key: value for key, value in spec.items() if key not in ("prompt", "new_prompt")}
        for command, spec in _bundled_commands(platform.fakenos).items()
        if command != "enable"
    }
    for command, output in platform.replies.items():
        commands[command] = {"output": output, "help": command}
    if platform.enabled_prompt is not None:
        commands["enable"] = {"output": "", "new_prompt": platform.enabled_prompt, "help": "enable"}
        commands["disable"] = {"output": "", "new_prompt": platform.prompt, "help": "disable"}
    return Nos(
        name=f"rookery_all_{platform.device_type}",
        commands=commands,
        initial_prompt=platform.prompt,
    )


def _platform_host(device: PlatformDevice, port: int) -> dict[str, Any]:
    platform = FAKENOS_PLATFORMS[device.platform]
    return {
        "username": device.username + platform.username_suffix,
        "password": device.password,
        "port": port,
        "platform": platform.fakenos,
        "server": {
            "plugin": "ParamikoSshServer",
            "configuration": {"address": "127.0.0.1", "timeout": 1},
        },
        "shell": {
            "plugin": "CMDShell",
            "configuration": {
                "base_prompt": platform.base_prompt.format(
                    name=device.name, username=device.username
                ),
                "intro": platform.intro,
            },
        },
        "nos": {
            "plugin": f"rookery_all_{platform.device_type}",
            "configuration": {
                "commands": {
                    command: {"output": output, "help": command}
                    for command, output in device.outputs.items()
                }
            },
        },
    }


#: RFC 3526's 2048-bit MODP group (group 14): a safe prime, generator 2
_GROUP14 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A0879"
    "8E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B"
    "0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA4836"
    "1C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804"
    "F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6"
    "955817183995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
    16,
)


@functools.cache
def _serve_group_exchange() -> None:
    """Let the lab's SSH servers (paramiko) do diffie-hellman-group-exchange.

    netmiko's FortiOS driver offers only the group-exchange and SHA-1 key exchanges; a
    paramiko server without a moduli file (``/etc/ssh/moduli``) still picks group exchange
    and then fails the handshake. One group in a moduli file of our own fixes that for
    every server of this process.
    """
    import paramiko

    fd, path = tempfile.mkstemp(prefix="rookery-moduli-")
    with os.fdopen(fd, "w") as handle:
        handle.write(f"20240101000000 2 6 100 2047 2 {_GROUP14:X}\n")
    try:
        paramiko.Transport.load_server_moduli(path)
    finally:
        os.unlink(path)
