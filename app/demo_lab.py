"""An emulated network on 127.0.0.1: FakeNOS SSH devices for demos, tests and benchmarks.

``DeviceLab`` starts one FakeNOS SSH server per device, all in this process, each on its own
free port of 127.0.0.1 with its own username and password, and a running configuration that
can be changed while the lab runs (``set_config``), so two backups can differ without a
restart. Netmiko drives the devices with the ordinary device types listed in ``PLATFORMS``::

    with DeviceLab(default_fleet(5)) as lab:
        for device in lab.devices:
            conn = ConnectHandler(**lab.netmiko_params(device.name))
            ...

How it uses FakeNOS (1.2): each platform is a FakeNOS NOS plugin (the bundled one, loaded
once per process and re-registered under ``rookery_<device type>`` with a prompt netmiko
expects); the per-host inventory adds a command override for the configuration command
whose ``output`` is a function. FakeNOS calls that function for every command, so it reads
the lab's current text for that device. (FakeNOS copies each host's command table when an
SSH session opens; plain string outputs could only change for the next session.)

Limits of the emulation: no configuration mode, every input byte is echoed after a 10 ms
pause (a backup takes about a second), and the enable secret is echoed when typed.

FakeNOS is only in the ``test`` and ``bench`` extras, so it is imported when a lab starts.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import io
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.ssh_keys import HostKey

log = logging.getLogger(__name__)

LOCALHOST = "127.0.0.1"


@dataclass(frozen=True)
class Platform:
    """How one netmiko device type is emulated."""

    device_type: str  # netmiko's name
    fakenos_platform: str  # the bundled FakeNOS plugin whose commands are reused
    backup_command: str  # what prints the running configuration
    short: str  # name prefix in default_fleet
    prompt: str  # initial prompt, "{base_prompt}" is the base prompt below
    base_prompt: str = "{name}"  # may use {name} and {username}
    needs_enable: bool = False  # configuration only readable after `enable`
    aliases: tuple[str, ...] = ()  # more commands answering with the configuration
    # Replies netmiko waits for during session preparation (command -> output).
    replies: dict[str, str] = field(default_factory=dict)


PLATFORMS: dict[str, Platform] = {
    platform.device_type: platform
    for platform in (
        Platform(
            "cisco_ios",
            "cisco_ios",
            "show running-config",
            "ios",
            "{base_prompt}>",
            needs_enable=True,
            aliases=("show run",),
        ),
        Platform(
            "arista_eos",
            "arista_eos",
            "show running-config",
            "eos",
            "{base_prompt}>",
            needs_enable=True,
            aliases=("show run",),
        ),
        Platform(
            "cisco_nxos",
            "cisco_nxos",
            "show running-config",
            "nxos",
            "{base_prompt}#",
            aliases=("show run",),
        ),
        Platform(
            "cisco_xr",
            "cisco_xr",
            "show running-config",
            "xr",
            "{base_prompt}#",
            base_prompt="RP/0/RP0/CPU0:{name}",
            aliases=("show run",),
        ),
        Platform(
            "juniper_junos",
            "juniper_junos",
            "show configuration",
            "junos",
            # netmiko's Junos driver looks for "> " (with the space) when it checks for
            # configuration mode; FakeNOS's own "host>" made every disconnect wait 10 s.
            "{base_prompt}> ",
            base_prompt="{username}@{name}",
            aliases=("show configuration | no-more",),
            replies={
                "set cli screen-width 511": "Screen width set to 511",
                "set cli complete-on-space off": "Disabling complete-on-space",
                "set cli screen-length 0": "Screen length set to 0",
            },
        ),
        Platform(
            "huawei",
            "huawei_vrp",
            "display current-configuration",
            "vrp",
            "{base_prompt}>",
            base_prompt="<{name}",
        ),
        Platform(
            "hp_comware",
            "hp_comware",
            "display current-configuration",
            "comware",
            "{base_prompt}>",
            base_prompt="<{name}",
        ),
    )
}

# The five platforms a default fleet cycles through (the others work, see PLATFORMS).
DEFAULT_PLATFORMS: tuple[str, ...] = (
    "cisco_ios",
    "arista_eos",
    "cisco_nxos",
    "cisco_xr",
    "juniper_junos",
)


@dataclass
class LabDevice:
    """One emulated device. ``port`` is set while its lab runs."""

    name: str
    platform: str  # a netmiko device type from PLATFORMS
    username: str
    password: str
    enable_secret: str | None = None
    config: str | None = None  # None: sample_config(platform, name)
    # More commands this device answers (command -> its output), beyond its platform's.
    commands: dict[str, str] = field(default_factory=dict)
    host: str = LOCALHOST
    port: int | None = None

    @property
    def backup_command(self) -> str:
        return PLATFORMS[self.platform].backup_command

    @property
    def needs_enable(self) -> bool:
        return PLATFORMS[self.platform].needs_enable

    def netmiko_params(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for netmiko's ConnectHandler."""
        if self.port is None:
            raise RuntimeError(f"device {self.name} is not running")
        params: dict[str, Any] = {
            "device_type": self.platform,
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "password": self.password,
            "fast_cli": True,
        }
        if self.enable_secret is not None:
            params["secret"] = self.enable_secret
        params.update(overrides)
        return params

    def inventory_row(self) -> dict[str, Any]:
        """What a demo prints so a user can add the device to Rookery."""
        return {
            "name": self.name,
            "platform": self.platform,
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "password": self.password,
            "enable_secret": self.enable_secret,
            "backup_command": self.backup_command,
        }


def sample_config(platform: str, name: str, revision: int = 1) -> str:
    """A plausible running configuration in the platform's syntax, without any secret.

    Each (name, revision) gives a different text: the hostname line, descriptions and
    addresses depend on the name, and one line carries the revision.
    """
    digest = hashlib.sha256(name.encode()).digest()
    octet2, octet3 = digest[0], digest[1]
    vlan = 100 + digest[2] % 800
    style = PLATFORMS[platform].fakenos_platform if platform in PLATFORMS else platform
    if style == "juniper_junos":
        return (
            f"## Last commit: revision {revision}\n"
            "version 21.4R3;\n"
            "system {\n"
            f"    host-name {name};\n"
            "    services {\n"
            "        ssh;\n"
            "    }\n"
            "}\n"
            "interfaces {\n"
            "    ge-0/0/0 {\n"
            f'        description "uplink of {name}";\n'
            "        unit 0 {\n"
            f"            family inet address 10.{octet2}.{octet3}.1/30;\n"
            "        }\n"
            "    }\n"
            "    lo0 {\n"
            f"        unit 0 family inet address 192.0.2.{octet3}/32;\n"
            "    }\n"
            "}\n"
            "vlans {\n"
            f"    users vlan-id {vlan};\n"
            "}\n"
            f"snmp location rack-{octet2}-rev-{revision};\n"
        )
    if style in ("huawei_vrp", "hp_comware"):
        return (
            f"# revision {revision}\n"
            f" sysname {name}\n"
            "#\n"
            f"vlan {vlan}\n"
            "#\n"
            "interface GigabitEthernet0/0/1\n"
            f" description uplink of {name}\n"
            f" ip address 10.{octet2}.{octet3}.1 255.255.255.252\n"
            "#\n"
            "interface LoopBack0\n"
            f" ip address 192.0.2.{octet3} 255.255.255.255\n"
            "#\n"
            f"snmp-agent sys-info location rack-{octet2}-rev-{revision}\n"
            "#\n"
            "return\n"
        )
    uplink = {
        "cisco_xr": "GigabitEthernet0/0/0/0",
        "cisco_nxos": "Ethernet1/1",
        "arista_eos": "Ethernet1",
    }.get(style, "GigabitEthernet0/1")
    head = "Building configuration...\n\n" if style in ("cisco_ios", "cisco_xr") else ""
    return (
        f"{head}! revision {revision}\n"
        f"hostname {name}\n"
        "!\n"
        f"vlan {vlan}\n"
        " name users\n"
        "!\n"
        f"interface {uplink}\n"
        f" description uplink of {name}\n"
        f" ip address 10.{octet2}.{octet3}.1 255.255.255.252\n"
        "!\n"
        "interface Loopback0\n"
        f" ip address 192.0.2.{octet3} 255.255.255.255\n"
        "!\n"
        f"snmp-server location rack-{octet2}-rev-{revision}\n"
        "!\n"
        "end\n"
    )


def default_fleet(
    n: int,
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
    *,
    seed: str = "rookery",
    enable_secrets: bool = False,
) -> list[LabDevice]:
    """``n`` devices cycling through ``platforms``, each with its own username and password.

    Names are ``<short>-<nnn>`` (``ios-001``, ``eos-002`` ...); credentials derive from the
    seed and the name, so the same call gives the same fleet. With ``enable_secrets`` the
    devices that need ``enable`` also get a secret they check.
    """
    for platform in platforms:
        if platform not in PLATFORMS:
            raise ValueError(f"unknown platform {platform!r}; known: {sorted(PLATFORMS)}")
    fleet = []
    for i in range(n):
        platform = PLATFORMS[platforms[i % len(platforms)]]
        name = f"{platform.short}-{i + 1:03d}"
        token = hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()
        fleet.append(
            LabDevice(
                name=name,
                platform=platform.device_type,
                username=f"netops{i + 1:03d}",
                password=f"pw-{token[:12]}",
                enable_secret=(
                    f"en-{token[12:24]}" if enable_secrets and platform.needs_enable else None
                ),
            )
        )
    return fleet


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 right now (all held open together, so distinct)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOCALHOST, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def host_key() -> HostKey:
    """The SSH host key every lab device presents (FakeNOS's bundled RSA key), as an
    ``app.ssh_keys.HostKey``: the same key on every port and after every restart."""
    from fakenos.plugins.servers.ssh_server_paramiko import DEFAULT_SSH_KEY
    from paramiko import RSAKey

    from app.ssh_keys import HostKey

    return HostKey.from_pkey(RSAKey(file_obj=io.StringIO(DEFAULT_SSH_KEY)))


def unreachable_port() -> int:
    """A port of 127.0.0.1 nobody listens on: connecting is refused at once.

    Netmiko turns the refusal into NetmikoTimeoutException ("TCP connection to device
    failed."). Another process could take the port later, so use it soon.
    """
    return free_ports(1)[0]


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts connections and never sends a byte.

    An SSH client waits for the server's version banner: netmiko (paramiko) gives up after
    min(``conn_timeout``, ``banner_timeout``) with NetmikoTimeoutException, whose message is
    "A paramiko SSHException occurred during connection creation: Error reading SSH protocol
    banner" when banner_timeout < conn_timeout, else "Paramiko: 'No existing session' error".
    """

    def __init__(self) -> None:
        self.host = LOCALHOST
        self.port: int | None = None
        self._sock: socket.socket | None = None
        self._clients: list[socket.socket] = []
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> SilentServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((LOCALHOST, 0))
        sock.listen(64)
        sock.settimeout(0.2)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._stopping.clear()
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)
        self._thread.start()
        return self

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._clients.append(client)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        for client in self._clients:
            client.close()
        self._clients.clear()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> SilentServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@functools.cache
def _bundled_nos(fakenos_platform: str) -> Any:
    """FakeNOS's bundled plugin for a platform, parsed once per process."""
    from fakenos.core.nos import Nos
    from fakenos.plugins.nos import nos_plugins

    return Nos(filename=nos_plugins[fakenos_platform])


def _lab_nos(platform: Platform) -> Any:
    """A NOS plugin for one platform: the bundled commands with the prompt netmiko expects."""
    from fakenos.core.nos import Nos

    bundled = _bundled_nos(platform.fakenos_platform)
    commands = copy.copy(bundled.commands)
    if not platform.needs_enable:
        # These devices start at their final prompt, which may differ from the bundled
        # one ("> " on Junos), so the commands answer at any prompt.
        commands = {
            command: {key: value for key, value in spec.items() if key != "prompt"}
            for command, spec in commands.items()
            if command != "enable"
        }
    for command, output in platform.replies.items():
        commands[command] = {"output": output, "help": command}
    nos = Nos(
        name=f"rookery_{platform.device_type}",
        commands=commands,
        initial_prompt=platform.prompt,
    )
    nos.device = bundled.device  # the Python plugins' outputs (show version ...) use it
    return nos


@functools.cache
def _server_class() -> type:
    """FakeNOS's Paramiko server, quicker to create, minus a crash in a session thread.

    FakeNOS 1.2 lets ``connection_function`` raise in its thread after a failed login (the
    transport has no channel to accept); pytest reports that as an unhandled thread error.
    """
    from importlib.metadata import version

    from fakenos.core.servers import TCPServerBase
    from fakenos.plugins.servers.ssh_server_paramiko import DEFAULT_SSH_KEY, ParamikoSshServer
    from paramiko import RSAKey

    # FakeNOS parses its RSA host key for every server: 45 ms of CPU, nearly all of a
    # device's start-up. Known versions get this __init__, which shares one parsed key.
    share_key = version("fakenos").startswith("1.2.")
    shared_key = RSAKey(file_obj=io.StringIO(DEFAULT_SSH_KEY)) if share_key else None

    class LabSshServer(ParamikoSshServer):
        def __init__(
            self,
            shell: type,
            nos: Any,
            nos_inventory_config: dict,
            port: int,
            username: str,
            password: str,
            ssh_key_file: str | None = None,
            ssh_key_file_password: str | None = None,
            ssh_banner: str = "FakeNOS Paramiko SSH Server",
            shell_configuration: dict | None = None,
            address: str = LOCALHOST,
            timeout: int = 1,
            watchdog_interval: float = 1,
        ) -> None:
            if shared_key is None or ssh_key_file:
                super().__init__(
                    shell,
                    nos,
                    nos_inventory_config,
                    port,
                    username,
                    password,
                    ssh_key_file=ssh_key_file,
                    ssh_key_file_password=ssh_key_file_password,
                    ssh_banner=ssh_banner,
                    shell_configuration=shell_configuration,
                    address=address,
                    timeout=timeout,
                    watchdog_interval=watchdog_interval,
                )
                return
            # ParamikoSshServer.__init__ of FakeNOS 1.2, with the key shared.
            TCPServerBase.__init__(self)
            self.nos = nos
            self.nos_inventory_config = nos_inventory_config
            self.shell = shell
            self.shell_configuration = shell_configuration or {}
            self.ssh_banner = ssh_banner
            self.username = username
            self.password = password
            self.port = port
            self.address = address
            self.timeout = timeout
            self.watchdog_interval = watchdog_interval
            self._active_sessions = set()
            self._active_sessions_lock = threading.Lock()
            self._ssh_server_key = shared_key

        def connection_function(self, client: Any, is_running: Any) -> None:
            try:
                super().connection_function(client, is_running)
            except Exception:
                log.debug(
                    "device lab: SSH session on port %s ended early", self.port, exc_info=True
                )

    return LabSshServer


class DeviceLab:
    """Emulated devices on 127.0.0.1, started together in this process.

    ``start()`` gives each device a free port; ``stop()`` ends every session. The lab is
    also a context manager. ``set_config`` changes what the device's configuration command
    prints, from the next command on; ``set_hanging`` makes that command block instead
    (the SSH session stays up, the prompt never comes back) until cleared or stopped.
    """

    def __init__(self, devices: Iterable[LabDevice], *, quiet: bool = True) -> None:
        self._devices: dict[str, LabDevice] = {}
        for device in devices:
            if device.name in self._devices:
                raise ValueError(f"duplicate device name {device.name!r}")
            if device.platform not in PLATFORMS:
                raise ValueError(
                    f"{device.name}: unknown platform {device.platform!r}; "
                    f"known: {sorted(PLATFORMS)}"
                )
            self._devices[device.name] = device
        self._configs: dict[str, str] = {}
        self._initial: dict[str, str] = {}
        self._released: dict[str, threading.Event] = {}
        for device in self._devices.values():
            text = (
                device.config
                if device.config is not None
                else sample_config(device.platform, device.name)
            )
            self._configs[device.name] = self._initial[device.name] = text
            released = threading.Event()
            released.set()
            self._released[device.name] = released
        self._net: Any = None
        self._quiet = quiet

    # -- reading -----------------------------------------------------------------------

    @property
    def devices(self) -> list[LabDevice]:
        return list(self._devices.values())

    def device(self, name: str) -> LabDevice:
        return self._devices[name]

    def devices_of(self, platform: str) -> list[LabDevice]:
        return [device for device in self._devices.values() if device.platform == platform]

    def port_of(self, name: str) -> int:
        port = self._devices[name].port
        if port is None:
            raise RuntimeError(f"device {name} is not running")
        return port

    def config_of(self, name: str) -> str:
        """The text the device prints now for its configuration command."""
        return self._configs[name]

    def netmiko_params(self, name: str, **overrides: Any) -> dict[str, Any]:
        return self._devices[name].netmiko_params(**overrides)

    def inventory(self) -> list[dict[str, Any]]:
        return [device.inventory_row() for device in self._devices.values()]

    @property
    def running(self) -> bool:
        return self._net is not None

    # -- changing ----------------------------------------------------------------------

    def set_config(self, name: str, text: str) -> None:
        """What the configuration command prints from now on (no restart, no new session)."""
        if name not in self._configs:
            raise KeyError(name)
        self._configs[name] = text

    def reset(self) -> None:
        """Undo set_config, set_hanging and stop_device: every device as it started."""
        self._configs.update(self._initial)
        for event in self._released.values():
            event.set()
        if self._net is not None and any(not h.running for h in self._net.hosts.values()):
            self._start_hosts(self._net)

    def set_hanging(self, name: str, hanging: bool = True) -> None:
        """Make the configuration command block (True) or answer again (False).

        Netmiko's send_command then raises ReadTimeout after its ``read_timeout``.
        Clearing it also releases the commands already blocked.
        """
        if hanging:
            self._released[name].clear()
        else:
            self._released[name].set()

    def stop_device(self, name: str) -> None:
        """Take one device off the network (its port refuses connections)."""
        self._require_running()
        self._stop_hosts(self._net, name)

    def start_device(self, name: str) -> None:
        """Bring a device stopped by stop_device back, on the same port."""
        self._require_running()
        self._start_hosts(self._net, name)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> DeviceLab:
        if self._net is not None:
            return self
        if self._quiet:
            # FakeNOS logs every client disconnect as an error.
            logging.getLogger("fakenos").setLevel(logging.CRITICAL)
        from fakenos import FakeNOS

        device_types = sorted({device.platform for device in self._devices.values()})
        plugins = [_lab_nos(PLATFORMS[device_type]) for device_type in device_types]
        last_error: OSError | None = None
        for _attempt in range(3):
            ports = free_ports(len(self._devices))
            inventory = {
                "hosts": {
                    device.name: self._host_inventory(device, port)
                    for device, port in zip(self._devices.values(), ports, strict=True)
                }
            }
            net = FakeNOS(inventory=inventory, plugins=plugins)
            net.servers_plugins["ParamikoSshServer"] = _server_class()  # this lab's copy only
            try:
                self._start_hosts(net)
            except OSError as exc:  # a port was taken between probing and binding
                last_error = exc
                self._stop_hosts(net)
                continue
            for device, port in zip(self._devices.values(), ports, strict=True):
                device.host = LOCALHOST
                device.port = port
            self._net = net
            return self
        raise RuntimeError(f"could not start the device lab: {last_error}")

    def stop(self) -> None:
        if self._net is None:
            return
        for event in self._released.values():
            event.set()  # let blocked commands return so their sessions can end
        net, self._net = self._net, None
        self._stop_hosts(net)
        for device in self._devices.values():
            device.port = None

    def __enter__(self) -> DeviceLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------

    def _require_running(self) -> None:
        if self._net is None:
            raise RuntimeError("the device lab is not running")

    def _host_inventory(self, device: LabDevice, port: int) -> dict[str, Any]:
        platform = PLATFORMS[device.platform]
        output = self._config_output(device.name)
        prompts = ["{base_prompt}#"] if platform.needs_enable else None
        commands: dict[str, dict[str, Any]] = {
            command: {"output": output, "help": "Current configuration", "prompt": prompts}
            for command in (platform.backup_command, *platform.aliases)
        }
        for command, text in device.commands.items():
            commands[command] = {"output": text, "help": command, "prompt": prompts}
        if device.enable_secret is not None:
            # `enable` asks for a password; the next line is answered like a command.
            commands["enable"] = {
                "output": "Password:",
                "help": "Turn on privileged commands",
                "prompt": "{base_prompt}>",
            }
            commands[device.enable_secret] = {
                "output": None,
                "new_prompt": "{base_prompt}#",
                "prompt": "{base_prompt}>",
            }
        return {
            "username": device.username,
            "password": device.password,
            "port": port,
            "platform": platform.fakenos_platform,
            "server": {
                "plugin": "ParamikoSshServer",
                "configuration": {"address": LOCALHOST, "timeout": 1},
            },
            "shell": {
                "plugin": "CMDShell",
                "configuration": {
                    "base_prompt": platform.base_prompt.format(
                        name=device.name, username=device.username
                    ),
                    "intro": "",
                },
            },
            "nos": {
                "plugin": f"rookery_{platform.device_type}",
                "configuration": {"commands": commands},
            },
        }

    def _config_output(self, name: str) -> Callable[..., str]:
        # A plain function: FakeNOS deep-copies command tables, which copies a bound method's
        # object but keeps a function (and what it closes over) as is.
        configs = self._configs
        released = self._released[name]

        def output(device: Any, base_prompt: str, current_prompt: str, command: str) -> str:
            released.wait()
            return configs[name]

        return output

    @staticmethod
    def _start_hosts(net: Any, hosts: str | None = None) -> None:
        net.start(hosts=hosts)
        # FakeNOS binds in start() but calls listen() later, in its accept thread: a client
        # connecting right after start() is refused. listen() twice is harmless, so listen now.
        for host in net._get_hosts_as_list(hosts):
            sock = getattr(host.server, "_socket", None)
            if sock is not None:
                sock.listen()

    @staticmethod
    def _stop_hosts(net: Any, name: str | None = None) -> None:
        # Each host's stop may wait for its sessions to end; stop them together.
        hosts = [host for host in net._get_hosts_as_list(name) if host.running]
        if not hosts:
            return
        for host in hosts:
            # FakeNOS's accept loop polls with a 1 s timeout and its stop() waits for it;
            # shutting the listening socket down first wakes the loop at once. (FakeNOS then
            # logs "listener stopped after a socket error", silenced by quiet=True.)
            sock = getattr(host.server, "_socket", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        with ThreadPoolExecutor(max_workers=min(64, len(hosts))) as pool:
            list(pool.map(lambda host: host.stop(), hosts))


def drifted(platform: str, text: str, tick: int) -> str:
    """``text`` with its demo drift line set to ``tick``: a change a backup commits and a
    diff shows, written as a comment of the platform's configuration syntax."""
    if platform.startswith("juniper"):
        line = f"/* rookery demo drift {tick} */"
    elif platform.startswith(("huawei", "hp_")):
        line = f"# rookery demo drift {tick}"
    else:
        line = f"! rookery demo drift {tick}"
    kept = [row for row in text.rstrip("\n").splitlines() if "rookery demo drift" not in row]
    return "\n".join([*kept, line]) + "\n"


def drift_once(lab: DeviceLab, tick: int) -> str:
    """Change one device's configuration (the devices in turn); the device's name."""
    device = sorted(lab.devices, key=lambda d: d.name)[tick % len(lab.devices)]
    lab.set_config(device.name, drifted(device.platform, lab.config_of(device.name), tick))
    return device.name


def serve_forever(
    devices: list[LabDevice],
    announce: Callable[[DeviceLab], None],
    *,
    drift_minutes: float | None = None,
    on_drift: Callable[[str], None] | None = None,
) -> None:
    """Run a lab until interrupted (for a `rookery demo` command); ``announce`` prints it.

    With ``drift_minutes`` one device's configuration changes that often (the devices in
    turn), so backups find something to commit and diffs appear.
    """
    with DeviceLab(devices) as lab:
        announce(lab)
        tick = 0
        try:
            while True:
                if not drift_minutes:
                    time.sleep(3600)
                    continue
                time.sleep(drift_minutes * 60)
                tick += 1
                name = drift_once(lab, tick)
                if on_drift is not None:
                    on_drift(name)
        except KeyboardInterrupt:
            pass


def main(argv: list[str] | None = None) -> int:
    """``python -m app.demo_lab [--devices N] [--platforms a,b]``: serve a lab, print JSON."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description="Serve emulated SSH devices on 127.0.0.1.")
    parser.add_argument("--devices", type=int, default=len(DEFAULT_PLATFORMS))
    parser.add_argument("--platforms", default=",".join(DEFAULT_PLATFORMS))
    parser.add_argument("--seed", default="rookery")
    parser.add_argument("--enable-secrets", action="store_true")
    args = parser.parse_args(argv)
    fleet = default_fleet(
        args.devices,
        args.platforms.split(","),
        seed=args.seed,
        enable_secrets=args.enable_secrets,
    )
    serve_forever(fleet, lambda lab: print(json.dumps(lab.inventory(), indent=1), flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
