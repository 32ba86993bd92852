"""The emulated device lab (app.demo_lab, FakeNOS) as netmiko sees it."""

from __future__ import annotations

import time
from typing import Any

import pytest
from netmiko import (
    ConnectHandler,
    NetmikoAuthenticationException,
    NetmikoTimeoutException,
    ReadTimeout,
)

from app.demo_lab import (
    DEFAULT_PLATFORMS,
    DeviceLab,
    LabDevice,
    SilentServer,
    default_fleet,
    sample_config,
)

pytest_plugins = ["tests.devices"]


def backup(device: LabDevice, **overrides: Any) -> str:
    conn = ConnectHandler(**device.netmiko_params(**overrides))
    try:
        if device.needs_enable:
            conn.enable()
        text = conn.send_command(device.backup_command)
        if not text.strip():
            # On a loaded machine netmiko can meet the prompt its session preparation left
            # behind (FakeNOS echoes 10 ms a byte) and read no output; asked again, the
            # emulator answers. Rookery's backup refuses an empty config the same way.
            text = conn.send_command(device.backup_command)
        return text
    finally:
        conn.disconnect()


def only(lab: DeviceLab, platform: str) -> LabDevice:
    (device,) = lab.devices_of(platform)
    return device


@pytest.mark.parametrize("platform", DEFAULT_PLATFORMS)
def test_backup_then_changed_config(device_lab: DeviceLab, platform: str) -> None:
    device = only(device_lab, platform)
    started = time.monotonic()
    first = backup(device)
    elapsed = time.monotonic() - started

    assert first.strip() == device_lab.config_of(device.name).strip()
    assert device.name in first
    assert device.password not in first
    assert device.username not in first
    assert elapsed < 5, f"{platform} backup took {elapsed:.2f}s"

    changed = sample_config(platform, device.name, revision=2)
    device_lab.set_config(device.name, changed)
    second = backup(device)
    assert second.strip() == changed.strip()
    assert second != first


def test_set_config_applies_within_a_session(device_lab: DeviceLab) -> None:
    device = only(device_lab, "cisco_ios")
    conn = ConnectHandler(**device.netmiko_params())
    try:
        conn.enable()
        before = conn.send_command(device.backup_command)
        device_lab.set_config(device.name, "hostname renamed\n!\nend\n")
        after = conn.send_command(device.backup_command)
    finally:
        conn.disconnect()
    assert "hostname ios-001" in before
    assert after.strip() == "hostname renamed\n!\nend"


def test_lab_is_reset_between_tests(device_lab: DeviceLab) -> None:
    # Runs after the tests above changed configs: the fixture put them back.
    for device in device_lab.devices:
        assert device_lab.config_of(device.name) == sample_config(device.platform, device.name)


@pytest.mark.parametrize("platform", DEFAULT_PLATFORMS)
def test_wrong_password(device_lab: DeviceLab, platform: str) -> None:
    device = only(device_lab, platform)
    with pytest.raises(NetmikoAuthenticationException):
        ConnectHandler(**device.netmiko_params(password=device.password + "-wrong"))


def test_other_devices_password_is_refused(device_lab: DeviceLab) -> None:
    ios, eos = only(device_lab, "cisco_ios"), only(device_lab, "arista_eos")
    with pytest.raises(NetmikoAuthenticationException):
        ConnectHandler(**ios.netmiko_params(username=eos.username, password=eos.password))


def test_closed_port_is_refused(closed_port: int) -> None:
    started = time.monotonic()
    with pytest.raises(NetmikoTimeoutException, match="TCP connection to device failed"):
        ConnectHandler(
            device_type="cisco_ios",
            host="127.0.0.1",
            port=closed_port,
            username="u",
            password="p",
            conn_timeout=2,
        )
    assert time.monotonic() - started < 2


def test_silent_server_times_out_waiting_for_the_banner(silent_server: SilentServer) -> None:
    started = time.monotonic()
    # paramiko's message depends on which of conn_timeout / banner_timeout runs out first.
    with pytest.raises(
        NetmikoTimeoutException, match=r"Error reading SSH protocol banner|No existing session"
    ):
        ConnectHandler(
            device_type="cisco_ios",
            host=silent_server.host,
            port=silent_server.port,
            username="u",
            password="p",
            conn_timeout=1,
            banner_timeout=1,
        )
    assert time.monotonic() - started < 5


def test_hanging_command_times_out(device_lab: DeviceLab) -> None:
    device = only(device_lab, "cisco_nxos")
    device_lab.set_hanging(device.name)
    conn = ConnectHandler(**device.netmiko_params())
    try:
        started = time.monotonic()
        with pytest.raises(ReadTimeout):
            conn.send_command(device.backup_command, read_timeout=1)
        assert time.monotonic() - started < 4
    finally:
        # Release the command so the device answers the disconnect promptly.
        device_lab.set_hanging(device.name, False)
        conn.disconnect()


def test_stopped_device_refuses_then_comes_back(device_lab: DeviceLab) -> None:
    device = only(device_lab, "arista_eos")
    device_lab.stop_device(device.name)
    with pytest.raises(NetmikoTimeoutException, match="TCP connection to device failed"):
        ConnectHandler(**device.netmiko_params(conn_timeout=2))
    device_lab.start_device(device.name)
    assert "hostname eos-002" in backup(device)


def test_enable_secret_is_checked(device_lab_factory) -> None:
    (device,) = default_fleet(1, ["cisco_ios"], seed="enable", enable_secrets=True)
    assert device.enable_secret
    lab = device_lab_factory([device])
    assert "hostname ios-001" in backup(device)
    with pytest.raises(ValueError, match="Failed to enter enable mode"):
        backup(device, secret="not-the-secret")
    assert lab.port_of(device.name) == device.port


def test_default_fleet_is_distinct_and_secret_free() -> None:
    fleet = default_fleet(12, enable_secrets=True)
    assert len({d.name for d in fleet}) == 12
    assert len({d.username for d in fleet}) == 12
    assert len({d.password for d in fleet}) == 12
    assert [d.platform for d in fleet[:5]] == list(DEFAULT_PLATFORMS)
    assert fleet == default_fleet(12, enable_secrets=True)
    configs = {d.name: sample_config(d.platform, d.name) for d in fleet}
    assert len(set(configs.values())) == 12
    for device in fleet:
        text = configs[device.name]
        assert device.name in text
        for secret in (device.password, device.enable_secret):
            if secret:
                assert secret not in text
        assert "password" not in text.lower()
        assert "secret" not in text.lower()


def test_lab_rejects_unknown_platform_and_duplicates() -> None:
    with pytest.raises(ValueError, match="unknown platform"):
        DeviceLab([LabDevice("x", "cisco_foo", "u", "p")])
    with pytest.raises(ValueError, match="duplicate"):
        DeviceLab([LabDevice("x", "cisco_ios", "u", "p"), LabDevice("x", "cisco_ios", "u", "q")])


def test_other_platforms_work_too(device_lab_factory) -> None:
    # Beyond the default five: Huawei VRP (netmiko waits ~2 s in its disconnect) and Comware.
    lab = device_lab_factory(default_fleet(2, ["huawei", "hp_comware"]))
    for device in lab.devices:
        text = backup(device)
        assert text.strip() == lab.config_of(device.name).strip()
        assert f"sysname {device.name}" in text


def test_fastssh_emulator() -> None:
    from bench._fastssh import FastSSHLab

    fleet = default_fleet(3, ["cisco_ios"], seed="fast", enable_secrets=True)
    with FastSSHLab(fleet) as lab:
        device = fleet[0]
        started = time.monotonic()
        first = backup(device)
        assert time.monotonic() - started < 2
        assert first.strip() == lab.config_of(device.name).strip()
        lab.set_config(device.name, sample_config("cisco_ios", device.name, revision=2))
        assert "rev-2" in backup(device)
        assert "hostname ios-002" in backup(fleet[1])
        with pytest.raises(NetmikoAuthenticationException):
            ConnectHandler(**device.netmiko_params(password="nope"))
        with pytest.raises(ValueError, match="Failed to enter enable mode"):
            backup(device, secret="nope")
        lab.set_hanging(device.name)
        conn = ConnectHandler(**device.netmiko_params())
        try:
            conn.enable()
            with pytest.raises(ReadTimeout):
                conn.send_command(device.backup_command, read_timeout=1)
        finally:
            lab.set_hanging(device.name, False)
            conn.disconnect()
