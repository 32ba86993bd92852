"""Settings: parsing, clear errors, key files, and the README table."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from app import config
from app.errors import ConfigError

README = Path(__file__).resolve().parents[2] / "README.md"


def test_defaults_when_environment_is_empty():
    values = config.read_settings({}, {})
    assert values["DATABASE_URL"] is None
    assert values["ROOKERY_INSTANCE"] is None  # found (or made) by config.find_instance
    assert values["ROOKERY_WORKER_CONCURRENCY"] == 8
    assert values["ROOKERY_EVENT_LOGGING"] is True


def test_values_are_parsed_by_type():
    values = config.read_settings(
        {
            "ROOKERY_WORKER_CONCURRENCY": "16",
            "ROOKERY_EVENT_LOGGING": "off",
            "ROOKERY_LOG_LEVEL": "debug",
        },
        {},
    )
    assert values["ROOKERY_WORKER_CONCURRENCY"] == 16
    assert values["ROOKERY_EVENT_LOGGING"] is False
    assert values["ROOKERY_LOG_LEVEL"] == "DEBUG"


def test_overrides_win_over_environment():
    values = config.read_settings({"ROOKERY_DEFAULT_RETRIES": "5"}, {"ROOKERY_DEFAULT_RETRIES": 0})
    assert values["ROOKERY_DEFAULT_RETRIES"] == 0


@pytest.mark.parametrize(
    ("env", "raw", "expected"),
    [
        ("ROOKERY_WORKER_CONCURRENCY", "abc", "expected a whole number"),
        ("ROOKERY_WORKER_CONCURRENCY", "0", "at least 1"),
        ("ROOKERY_EVENT_LOGGING", "maybe", "true or false"),
        ("ROOKERY_LOG_LEVEL", "loud", "DEBUG, INFO"),
    ],
)
def test_bad_value_names_the_setting(env, raw, expected):
    with pytest.raises(ConfigError) as info:
        config.read_settings({env: raw}, {})
    assert env in str(info.value)
    assert expected in str(info.value)


def test_secret_values_are_not_echoed_in_errors():
    setting = config.SETTINGS_BY_ENV["ROOKERY_SECRET_KEY"]
    assert setting.secret


def test_default_timeout_may_not_exceed_maximum():
    with pytest.raises(ConfigError, match="may not exceed"):
        config.read_settings(
            {"ROOKERY_JOB_TIMEOUT_SECONDS": "100", "ROOKERY_JOB_TIMEOUT_MAX_SECONDS": "50"}, {}
        )


def test_key_file_is_created_once_with_mode_0600(tmp_path):
    path = tmp_path / "secret_key"
    first = config.read_or_create_key(path, lambda: "one")
    second = config.read_or_create_key(path, lambda: "two")
    assert first == second == "one"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_empty_key_file_is_an_error(tmp_path):
    path = tmp_path / "secret_key"
    path.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        config.read_or_create_key(path, lambda: "x")


def test_instance_folder_is_created_private(tmp_path):
    folder = config.prepare_instance(tmp_path / "a" / "instance")
    assert folder.is_dir()
    assert stat.S_IMODE(folder.stat().st_mode) & 0o077 == 0


def test_unwritable_instance_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="ROOKERY_INSTANCE"):
        config.prepare_instance(blocker / "instance")


def test_uncreatable_instance_folder_is_a_clear_error():
    # /proc refuses new folders even to root, unlike a chmod-ed folder
    with pytest.raises(ConfigError, match="Cannot create the instance folder"):
        config.prepare_instance("/proc/rookery-instance")


def test_readme_lists_every_setting():
    text = README.read_text()
    missing = [s.env for s in config.SETTINGS if f"`{s.env}`" not in text]
    assert missing == [], f"README lacks {missing}: paste `rookery settings --markdown`"


def test_the_instance_is_found_in_a_parent_and_never_made_by_accident(tmp_path):
    from app.config import ConfigError, find_instance

    deep = tmp_path / "clone" / "docs" / "deeper"
    deep.mkdir(parents=True)
    with pytest.raises(ConfigError, match="No Rookery instance found"):
        find_instance(deep, create=False)
    assert not any(p.name == "instance" for p in tmp_path.rglob("*"))  # nothing was made
    assert find_instance(deep, create=True) == deep.resolve() / "instance"  # a first start
    made = tmp_path / "clone" / "instance"
    made.mkdir()
    with pytest.raises(ConfigError):  # an empty folder named instance is not Rookery's
        find_instance(deep, create=False)
    (made / "secret_key").write_text("x\n")
    assert find_instance(deep, create=False) == made.resolve()
