#!/usr/bin/env python
"""A fast SSH emulator for benchmarks: many cisco_ios-like devices in one asyncio process.

    python bench/_fastssh.py [--devices N] [--delay S] [--inventory FILE] [--configs DIR]

Each device listens on its own port of 127.0.0.1, checks its own username and password
(and enable secret when it has one) and answers netmiko's ``cisco_ios`` driver (with
fast_cli) at once: ``terminal length 0``, ``terminal width 511``, ``enable``,
``show running-config`` (``show run``), ``show version``, ``configure terminal`` / ``end``,
``exit``. Prompts are ``hostname>`` and ``hostname#``; input is echoed without delay
(FakeNOS waits 10 ms a byte). A backup takes a few milliseconds of emulator time, so
the emulator is rarely what a benchmark measures.

A device prints the sample config of its name (``app.demo_lab.sample_config``); with
``--configs DIR`` it prints ``DIR/<name>.cfg`` instead when that file exists, read at
each ``show running-config``: a benchmark changes a device's config between two
backups by rewriting its file (write a temporary file and rename it over the old one).

From the command line it prints the inventory as JSON (stdout, or ``--inventory FILE``)
and serves until SIGINT/SIGTERM; run it as its own process so it does not share a GIL
with what is measured. In a process::

    with FastSSHLab(default_fleet(500, ["cisco_ios"])) as lab:
        lab.port_of("ios-001"); lab.set_config("ios-001", "hostname x\\n")

Needs asyncssh (``pip install asyncssh``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import asyncssh

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from app.demo_lab import LOCALHOST, LabDevice, default_fleet, sample_config  # noqa: E402
from app.lab_loop import LoopThread  # noqa: E402

INVALID = "% Invalid input detected at '^' marker."


class _Device:
    """One device's state: what it prints, and how slowly."""

    def __init__(self, spec: LabDevice) -> None:
        self.spec = spec
        self.config = (
            spec.config if spec.config is not None else sample_config("cisco_ios", spec.name)
        )
        self.delay = 0.0  # seconds before the configuration is printed
        self.config_dir: Path | None = None  # <dir>/<name>.cfg, when it exists, wins
        self.released = asyncio.Event()
        self.released.set()  # cleared: show running-config hangs

    def running_config(self) -> str:
        if self.config_dir is not None:
            try:
                return (self.config_dir / f"{self.spec.name}.cfg").read_text()
            except FileNotFoundError:
                pass
        return self.config


class _Server(asyncssh.SSHServer):
    def __init__(self, device: _Device, lab: FastSSHLab) -> None:
        self._device = device
        self._lab = lab

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._lab._connections.add(conn)
        self._conn = conn

    def connection_lost(self, exc: Exception | None) -> None:
        self._lab._connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        spec = self._device.spec
        return username == spec.username and password == spec.password


class _Session:
    """The CLI of one SSH session (a PTY shell; the emulator does the echo)."""

    def __init__(self, process: asyncssh.SSHServerProcess, device: _Device) -> None:
        self.process = process
        self.device = device
        self.name = device.spec.name
        self.mode = ">"  # ">", "#" or "(config)#"
        self.awaiting_secret = False

    @property
    def prompt(self) -> str:
        return f"{self.name}{self.mode}"

    async def run(self) -> None:
        write = self.process.stdout.write
        write(f"\r\n{self.prompt}")
        line: list[str] = []
        skip_lf = False
        try:
            while True:
                data = await self.process.stdin.read(4096)
                if not data:
                    break
                out: list[str] = []
                for ch in data:
                    if skip_lf and ch == "\n":
                        skip_lf = False
                        continue
                    skip_lf = ch == "\r"
                    if ch in "\r\n":
                        out.append("\r\n")
                        write("".join(out))
                        out = []
                        reply = await self.handle("".join(line).strip())
                        line = []
                        if reply is None:
                            self.process.exit(0)
                            return
                        write(reply)
                    elif ch in "\x08\x7f":
                        if line:
                            line.pop()
                            if not self.awaiting_secret:
                                out.append("\x08 \x08")
                    elif ch == "\x03":  # Ctrl-C
                        line = []
                        out.append(f"\r\n{self.prompt}")
                    elif ch >= " ":
                        line.append(ch)
                        if not self.awaiting_secret:
                            out.append(ch)
                if out:
                    write("".join(out))
        except (asyncssh.BreakReceived, asyncssh.TerminalSizeChanged):
            pass
        except (BrokenPipeError, ConnectionError, asyncssh.Error):
            return
        self.process.exit(0)

    async def handle(self, command: str) -> str | None:
        """The text after the echoed line: output then the next prompt (None: hang up)."""
        if self.awaiting_secret:
            self.awaiting_secret = False
            if command == self.device.spec.enable_secret:
                self.mode = "#"
                return self.prompt
            return f"% Access denied\r\n\r\n{self.prompt}"
        output = await self.output(command)
        if output is None:
            return None
        if self.awaiting_secret:
            return output  # "Password: ", no prompt
        if output == "":
            return self.prompt
        return output.replace("\r\n", "\n").replace("\n", "\r\n") + "\r\n" + self.prompt

    async def output(self, command: str) -> str | None:
        words = command.split()
        if not words:
            return ""
        first = words[0]
        if first in ("exit", "logout", "quit"):
            if self.mode == "(config)#":
                self.mode = "#"
                return ""
            return None
        if command in ("end", "\x1a") and self.mode == "(config)#":
            self.mode = "#"
            return ""
        if self.mode == "(config)#":
            return ""  # configuration lines are accepted and forgotten
        if command.startswith("terminal "):
            return ""
        if first in ("en", "enable"):
            if self.mode == "#":
                return ""
            if self.device.spec.enable_secret is None:
                self.mode = "#"
                return ""
            self.awaiting_secret = True
            return "Password: "
        if first in ("disable",):
            self.mode = ">"
            return ""
        if command in ("configure terminal", "conf t"):
            if self.mode != "#":
                return INVALID
            self.mode = "(config)#"
            return "Enter configuration commands, one per line.  End with CNTL/Z."
        if command in ("show running-config", "show run"):
            if self.mode != "#":
                return INVALID
            if self.device.delay:
                await asyncio.sleep(self.device.delay)
            await self.device.released.wait()
            return self.device.running_config().rstrip("\n")
        if command in ("show version", "show ver"):
            return (
                "Cisco IOS Software, fastssh emulator, Version 15.9(3)M\n"
                f"{self.name} uptime is 1 week, 2 days, 3 hours, 4 minutes\n"
                "cisco ISR4451-X/K9 processor"
            )
        return INVALID


class FastSSHLab(LoopThread):
    """cisco_ios-like devices on 127.0.0.1, served by an asyncio loop in a thread.

    Same shape as app.demo_lab.DeviceLab: ``start``/``stop`` (or ``with``), ``devices``
    (LabDevice with host/port), ``port_of``, ``set_config``, ``config_of``, plus
    ``set_delay`` (seconds before show running-config answers), ``set_hanging`` and
    ``set_config_dir`` (configs read from ``<dir>/<name>.cfg`` where such a file exists).
    """

    def __init__(self, devices: Iterable[LabDevice]) -> None:
        self._specs: dict[str, LabDevice] = {}
        for spec in devices:
            if spec.name in self._specs:
                raise ValueError(f"duplicate device name {spec.name!r}")
            if spec.platform != "cisco_ios":
                raise ValueError(f"{spec.name}: fastssh only emulates cisco_ios")
            self._specs[spec.name] = spec
        self._devices = {name: _Device(spec) for name, spec in self._specs.items()}
        super().__init__()
        self._listeners: list[asyncssh.SSHAcceptor] = []
        self._connections: set[asyncssh.SSHServerConnection] = set()

    # -- reading -----------------------------------------------------------------------

    @property
    def devices(self) -> list[LabDevice]:
        return list(self._specs.values())

    def port_of(self, name: str) -> int:
        port = self._specs[name].port
        if port is None:
            raise RuntimeError(f"device {name} is not running")
        return port

    def config_of(self, name: str) -> str:
        return self._devices[name].config

    def inventory(self) -> list[dict[str, Any]]:
        return [spec.inventory_row() for spec in self._specs.values()]

    # -- changing ----------------------------------------------------------------------

    def set_config(self, name: str, text: str) -> None:
        self._devices[name].config = text

    def set_delay(self, name: str, seconds: float) -> None:
        self._devices[name].delay = seconds

    def set_config_dir(self, folder: Path | None) -> None:
        """Serve ``folder/<name>.cfg`` (read at each show running-config) when it exists."""
        for device in self._devices.values():
            device.config_dir = folder

    def set_hanging(self, name: str, hanging: bool = True) -> None:
        event = self._devices[name].released
        self._call(event.clear if hanging else event.set)

    # -- lifecycle ---------------------------------------------------------------------

    thread_name = "fastssh"

    def _port_holders(self) -> Iterable[LabDevice]:
        return self._specs.values()

    # -- in the loop -------------------------------------------------------------------

    def _call(self, func: Any) -> None:
        if self._loop is None:
            func()
        else:
            self._loop.call_soon_threadsafe(func)

    async def _start(self) -> None:
        key = asyncssh.generate_private_key("ssh-ed25519")
        for spec in self._specs.values():
            device = self._devices[spec.name]
            listener = await asyncssh.listen(
                LOCALHOST,
                0,
                server_factory=lambda device=device: _Server(device, self),
                server_host_keys=[key],
                process_factory=lambda process, device=device: _Session(process, device).run(),
                line_editor=False,
                encoding="utf-8",
                keepalive_interval=0,
                login_timeout=30,
            )
            self._listeners.append(listener)
            spec.host = LOCALHOST
            spec.port = listener.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        for device in self._devices.values():
            device.released.set()
        for listener in self._listeners:
            listener.close()
        for conn in list(self._connections):
            conn.close()
        for listener in self._listeners:
            await listener.wait_closed()
        self._listeners.clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100, help="how many (default 100)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds per show run")
    parser.add_argument("--seed", default="rookery", help="credentials derive from it")
    parser.add_argument("--enable-secrets", action="store_true", help="devices ask for one")
    parser.add_argument("--inventory", type=Path, help="write the JSON here, not stdout")
    parser.add_argument(
        "--configs",
        type=Path,
        help="serve DIR/<name>.cfg as a device's running config when that file exists",
    )
    args = parser.parse_args(argv)

    fleet = default_fleet(
        args.devices, ["cisco_ios"], seed=args.seed, enable_secrets=args.enable_secrets
    )
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    with FastSSHLab(fleet) as lab:
        for spec in lab.devices:
            lab.set_delay(spec.name, args.delay)
        lab.set_config_dir(args.configs)
        text = json.dumps(lab.inventory(), indent=1)
        if args.inventory:
            args.inventory.write_text(text + "\n")
            print(f"fastssh: {len(fleet)} devices, inventory in {args.inventory}", flush=True)
        else:
            print(text, flush=True)
        stopped.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
