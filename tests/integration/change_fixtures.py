"""Fixtures of the change set tests: the stateful cisco_ios emulator (127.0.0.1) loaded
as inventory, and a Rookery whose runs a test drains in-process. A test module uses them
with ``pytest_plugins = ["tests.integration.change_fixtures"]`` and may set ``FLEET``
(how many devices, 3 by default) and ``PLATFORMS`` (the emulated platforms the devices
cycle through, cisco_ios by default); its ``engine_config`` stays its own (the
integration conftest's would win over a plugin's)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.stateful_lab import StatefulLab, stateful_fleet
from tests.integration.change_lab import BROKEN, HEALTHY
from tests.integration.helpers import load_lab_devices


@pytest.fixture(scope="module")
def _lab(request: pytest.FixtureRequest) -> Iterator[StatefulLab]:
    size = getattr(request.module, "FLEET", 3)
    kinds = getattr(request.module, "PLATFORMS", ("cisco_ios",))
    with StatefulLab(stateful_fleet(size, enable_secrets=True, platforms=kinds)) as lab:
        yield lab


@pytest.fixture
def lab(ctx, _lab: StatefulLab) -> Iterator[StatefulLab]:
    """Every device with a healthy BGP summary that goes Idle when its loopback says
    BREAKS-BGP, in the inventory with its credential; reset afterwards."""
    for device in _lab.devices:
        _lab.set_show(device.name, "show ip bgp summary", HEALTHY)
        _lab.set_show(
            device.name, "show ip bgp summary", BROKEN, when=r"^\s+description .*BREAKS-BGP$"
        )
    load_lab_devices(_lab.devices, _lab)
    yield _lab
    _lab.reset()
