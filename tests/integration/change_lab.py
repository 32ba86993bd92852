"""What the change set tests share (constants and a session opener; the fixtures are in
change_fixtures.py): a template and a check on the stateful emulator, whose BGP summary
is healthy until a device's loopback says BREAKS-BGP."""

from __future__ import annotations

import dataclasses

from app.drivers import DriverSession, SessionOptions, open_session
from app.job_api import DeviceTarget, ResolvedCredential
from app.stateful_lab import StatefulLab

OPTIONS = dataclasses.replace(SessionOptions(), read_timeout=15)

HEALTHY = "Neighbor        V    AS  State/PfxRcd\n192.0.2.2       4 65001  12"
BROKEN = "Neighbor        V    AS  State/PfxRcd\n192.0.2.2       4 65001  Idle"
TEMPLATE = """ntp server 192.0.2.123
interface Loopback0
 description {{ device.name }} {{ note }}
"""
#: a check before and after: the BGP neighbor must not be Idle
BGP_UP = {"command": "show ip bgp summary", "expect": r"\bIdle\b", "absent": True}


def open_device(lab: StatefulLab, name: str, options: SessionOptions = OPTIONS) -> DriverSession:
    """A session opened as Rookery opens one: app.drivers.open_session, pinned lab key."""
    spec = lab.device(name)
    target = DeviceTarget(
        id=1,
        name=name,
        host=spec.host,
        port=lab.port_of(name),
        platform=spec.platform,
        host_key=lab.host_key(),
        host_key_approved=True,
    )
    credential = ResolvedCredential(
        id=1,
        name="lab",
        username=spec.username,
        password=spec.password,
        enable_secret=spec.enable_secret,
    )
    return open_session(target, credential, options)
