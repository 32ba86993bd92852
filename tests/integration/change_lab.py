"""What the change set tests share (constants; the fixtures are in change_fixtures.py):
a template and a check on the stateful emulator, whose BGP summary is healthy until a
device's loopback says BREAKS-BGP."""

from __future__ import annotations

HEALTHY = "Neighbor        V    AS  State/PfxRcd\n192.0.2.2       4 65001  12"
BROKEN = "Neighbor        V    AS  State/PfxRcd\n192.0.2.2       4 65001  Idle"
TEMPLATE = """ntp server 192.0.2.123
interface Loopback0
 description {{ device.name }} {{ note }}
"""
#: a check before and after: the BGP neighbor must not be Idle
BGP_UP = {"command": "show ip bgp summary", "expect": r"\bIdle\b", "absent": True}
