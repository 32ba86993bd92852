"""Platform profiles (app.profiles): the built-in files, an admin's folder, broken files."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from app import platforms, profiles
from app.config_store import normalize_config, redact_secrets


@pytest.fixture(autouse=True)
def _builtin_profiles_after() -> Iterator[None]:
    """A test that loads an admin folder into the process leaves the built-in ones."""
    yield
    profiles._current = None


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def reasons(loaded: profiles.ProfileSet) -> dict[str, str]:
    return {Path(s.source).name: s.reason for s in loaded.skipped}


# ------------------------------------------------------------------- the built-in ones


def test_every_builtin_profile_loads() -> None:
    loaded = profiles.load()
    assert loaded.skipped == []
    assert len(loaded.names()) >= 25
    assert set(loaded.names()) <= platforms.known_platforms()
    assert profiles.GENERIC in loaded.profiles and profiles.GENERIC not in loaded.names()
    for profile in loaded.profiles.values():
        assert profile.origin == profiles.BUILTIN
        assert profile.config_commands and all(c.strip() for c in profile.config_commands)
        assert profile.files == (str(profiles.builtin_dir() / f"{profile.device_type}.toml"),)


def test_netmiko_synonyms_and_transports_share_a_profile() -> None:
    loaded = profiles.load()
    assert loaded.get("cisco_ios_telnet") is loaded.get("cisco_ios")
    assert loaded.get("alcatel_sros").device_type == "nokia_sros"
    assert loaded.get("brocade_fastiron_ssh").device_type == "ruckus_fastiron"
    assert loaded.get("vyatta_vyos").device_type == "vyos"
    assert loaded.get("huawei_vrp").device_type == "huawei"
    assert loaded.get("some_new_os").device_type == profiles.GENERIC
    assert not loaded.has("some_new_os") and loaded.has("juniper")


def test_extends_adds_rules_and_replaces_the_rest() -> None:
    loaded = profiles.load()
    ios, nxos = loaded.get("cisco_ios"), loaded.get("cisco_nxos")
    assert nxos.extends == "cisco_ios"
    assert nxos.volatile[: len(ios.volatile)] == ios.volatile
    assert len(nxos.volatile) == len(ios.volatile) + 1
    assert nxos.errors[: len(ios.errors)] == ios.errors
    assert nxos.config_commands == ios.config_commands
    ipos = loaded.get("ericsson_ipos")  # extends cisco_ios, its own config command
    assert ipos.config_commands == ("show configuration",)
    assert ipos.errors == ios.errors


@pytest.mark.parametrize(
    ("platform", "line"),
    (
        ("cisco_xe", "Current configuration : 4711 bytes"),
        ("cisco_xe", "! NVRAM config last updated at 10:00:00 UTC Mon Jan 1 2024 by admin"),
        ("huawei_vrpv8", "2024-01-01 10:00:00.123+08:00"),
        ("huawei_smartax", "2024-01-01 10:00:00+08:00"),
        ("fortinet", "#config-version=FGT60F-7.2.8-FW-build1639-240313:opmode=0:vdom=0:user=admin"),
        ("vyatta_vyos", "Last login: Mon Jan  1 09:00:00 2024 from 10.0.0.9"),
    ),
)
def test_volatile_lines_of_a_profile_are_dropped(platform: str, line: str) -> None:
    text = f"hostname r1\n{line}\ninterface Gi1\n"
    assert normalize_config(platform, text) == "hostname r1\ninterface Gi1\n"


@pytest.mark.parametrize(
    ("platform", "line", "expected"),
    (
        (
            "huawei_vrpv8",
            " local-user admin password irreversible-cipher $1c$abc$",
            " local-user admin password irreversible-cipher <removed>",
        ),
        (
            "huawei",
            " snmp-agent community read cipher %^%#abc def%^%#",
            " snmp-agent community read cipher <removed>",
        ),
        (
            "fortinet",
            "        set password ENC SH2abcdef==",
            "        set password ENC <removed>",
        ),
        (
            "vyos",
            "set system login user vyos authentication plaintext-password 'hunter2'",
            "set system login user vyos authentication plaintext-password '<removed>'",
        ),
    ),
)
def test_secret_rules_of_a_profile_remove_their_group(
    platform: str, line: str, expected: str
) -> None:
    assert normalize_config(platform, f"{line}\n") == f"{expected}\n"
    assert redact_secrets(line, platform) == expected
    assert redact_secrets(line, "generic") != expected or platform == "generic"


def test_a_platform_without_error_rules_never_refuses(tmp_path: Path) -> None:
    write(tmp_path, "acme.toml", "")  # not a device type: skipped
    write(tmp_path, "cisco_ios.toml", "errors = []\n")
    loaded = profiles.load(tmp_path)
    assert loaded.get("cisco_ios").error_pattern is None


# ------------------------------------------------------------------ an admin's folder


def test_a_file_named_like_a_builtin_changes_only_its_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "cisco_ios.toml", 'extra_commands = ["show version"]\n')
    loaded = profiles.load(tmp_path)
    ios, builtin = loaded.get("cisco_ios"), profiles.load().get("cisco_ios")
    assert ios.extra_commands == ("show version",)
    assert ios.config_commands == builtin.config_commands
    assert ios.volatile == builtin.volatile and ios.errors == builtin.errors
    assert ios.origin == profiles.ADMIN
    assert ios.files == (*builtin.files, str(path))
    assert loaded.get("cisco_xe").extra_commands == ("show version",)  # it extends cisco_ios
    assert loaded.get("cisco_xe").origin == profiles.BUILTIN


def test_a_new_profile_from_the_folder(tmp_path: Path) -> None:
    write(
        tmp_path,
        "mellanox_mlnxos.toml",
        'description = "NVIDIA Onyx"\n'
        'extends = "cisco_ios"\n'
        "volatile = ['##\\s*Generated at .*']\n"
        "secrets = ['^\\s*username\\s+\\S+\\s+password\\s+\\d+\\s+(?P<secret>\\S+)']\n",
    )
    loaded = profiles.load(tmp_path)
    assert loaded.skipped == []
    onyx = loaded.get("mellanox")  # netmiko's other name of the type is no alias: generic
    assert onyx.device_type == profiles.GENERIC
    onyx = loaded.get("mellanox_mlnxos")
    assert onyx.origin == profiles.ADMIN and "mellanox_mlnxos" in loaded.names()
    assert onyx.to_dict()["volatile_rules"] == len(loaded.get("cisco_ios").volatile) + 1
    profiles._current = loaded
    text = "## Generated at 2024-01-01 10:00:00\nhostname sw1\n"
    assert normalize_config("mellanox_mlnxos", text) == "hostname sw1\n"
    assert platforms.command_error("mellanox_mlnxos", "% Invalid input detected") is not None


def test_init_app_loads_the_folder_of_the_setting(tmp_path: Path) -> None:
    write(tmp_path, "linux.toml", 'config_commands = ["cat /etc/hostname", "cat /etc/hosts"]\n')
    app = Flask(__name__)
    app.config["ROOKERY_PLATFORM_PROFILES_DIR"] = str(tmp_path)
    profiles.init_app(app)
    assert profiles.get("linux").config_commands == ("cat /etc/hostname", "cat /etc/hosts")
    assert app.extensions[profiles.EXTENSION_KEY] is profiles.current()
    assert "linux" in platforms.PROFILED


# ---------------------------------------------------------------------- broken files


BROKEN = {
    "cisco_xr.toml": ("config_commands = [show run", "invalid TOML"),
    "arista_eos.toml": ("volatle = ['x']", "unknown key 'volatle' (did you mean 'volatile'?)"),
    "juniper_junos.toml": ("errors = ['(unclosed']", "errors[0] '(unclosed' is not a valid"),
    "hp_comware.toml": ("secrets = ['password \\S+']", "has no group named secret"),
    "cisco_foo.toml": ('config_commands = ["show"]', "netmiko has no device type 'cisco_foo'"),
    "ciscoios.toml": ('config_commands = ["show"]', "did you mean 'cisco_ios'?"),
    "juniper.toml": ('config_commands = ["show"]', "canonical name: juniper_junos.toml"),
    "fortinet.toml": ("extends = 'fortigate'", "extends 'fortigate', which has no profile"),
    "yamaha.toml": ("extends = 'yamaha'", "extends itself: yamaha -> yamaha"),
    "eltex.toml": ("enable = 'yes'", "enable must be true or false"),
    "linux.toml": ("config_commands = []", "config_commands is missing"),
    "mellanox_mlnxos.toml": ("volatile = 'x'", "volatile must be a list of non-empty strings"),
    "cisco_s300.toml": ('device_type = "cisco_s500"', "differs from the file name"),
}


def test_broken_files_are_skipped_with_their_reason_and_the_rest_load(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name, (text, _) in BROKEN.items():
        write(tmp_path, name, text + "\n")
    write(tmp_path, "cisco_ios.toml", 'extra_commands = ["show version"]\n')
    with caplog.at_level(logging.WARNING, logger="app.profiles"):
        loaded = profiles.load(tmp_path)
    found = reasons(loaded)
    for name, (_, reason) in BROKEN.items():
        assert reason in found.get(name, ""), (name, found.get(name))
        assert name in caplog.text
    assert len(loaded.skipped) == len(BROKEN)
    builtin = profiles.load()
    # a broken file leaves the built-in profile of its name as it was
    for name in ("cisco_xr", "arista_eos", "juniper_junos", "fortinet", "yamaha", "linux"):
        assert loaded.get(name).origin == profiles.BUILTIN
        assert loaded.get(name).config_commands == builtin.get(name).config_commands
    assert loaded.get("cisco_ios").extra_commands == ("show version",)  # the good file
    assert "cisco_foo" not in loaded.profiles
    assert "mellanox_mlnxos" not in loaded.profiles
    assert set(loaded.names()) == set(builtin.names())


def test_a_missing_folder_is_reported_and_the_builtin_profiles_load(tmp_path: Path) -> None:
    loaded = profiles.load(tmp_path / "nowhere")
    assert [s.reason for s in loaded.skipped] == [
        "profiles folder does not exist or is not a folder"
    ]
    assert loaded.names() == profiles.load().names()


# ----------------------------------------------------------------------- names people use


@pytest.mark.parametrize(
    ("name", "meant"),
    (
        ("ios", "cisco_ios"),  # NAPALM's names, by netutils
        ("nxos_ssh", "cisco_nxos"),
        ("cisco.nxos.nxos", "cisco_nxos"),  # Ansible's
        ("junipernetworks.junos.junos", "juniper_junos"),
        ("huawei_vrp", "huawei"),
        ("panos", "paloalto_panos"),
        ("fortios", "fortinet"),
    ),
)
def test_library_names_map_to_netmiko_device_types(name: str, meant: str) -> None:
    if "." in name or name in ("ios", "nxos_ssh", "panos", "fortios"):
        assert platforms.library_names()[name] == meant
    assert platforms.suggest(name) == meant


@pytest.mark.parametrize(
    ("name", "meant"),
    (
        ("cisco_iosxe", "cisco_xe"),
        ("IOS-XE", "cisco_xe"),
        ("routeros", "mikrotik_routeros"),
        ("FortiGate", "fortinet"),
        ("ScreenOS", "juniper_screenos"),
        ("brocade_fastiron", "ruckus_fastiron"),
        ("cisco_asa_firewall", None),
    ),
)
def test_did_you_mean_among_the_profiles(name: str, meant: str | None) -> None:
    assert platforms.suggest(name, profiles.current().names()) == meant


def test_every_platform_name_is_a_device_type() -> None:
    known = platforms.known_platforms()
    assert set(platforms.ALIASES.values()) <= known
    assert set(platforms.SPOKEN.values()) <= known
    assert set(platforms.library_names().values()) <= known
    assert set(platforms.PROFILED) == set(profiles.current().names())
