"""The job registry: discovery, skip reasons, parameter validation, the new-job template."""

from __future__ import annotations

import json
import logging
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from app import job_template, registry
from app.errors import ConfigError, RookeryError, ValidationError

RUN = "def run(device, job_id, config, db):\n    return 'ok'\n"


def write(folder: Path, name: str, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


def module(meta: str, run: str = RUN, doc: str = "") -> str:
    head = f'"""{doc}"""\n' if doc else ""
    return f"{head}JOB_META = {meta}\n\n{run}"


def make_job(params: list[dict[str, Any]], tmp_path: Path) -> registry.JobType:
    write(tmp_path, "job.py", module(f"{{'job_type': 'job', 'params': {params!r}}}"))
    found = registry.discover([tmp_path])
    assert not found.skipped, found.skipped
    return found.get("job")


# --- discovery -----------------------------------------------------------------------


def test_valid_module_is_registered_with_defaults(tmp_path, caplog):
    path = write(
        tmp_path,
        "config_audit.py",
        module("{'job_type': 'config_audit'}", doc="Audit configs.\n\nMore text."),
    )
    with caplog.at_level(logging.INFO, logger="app.registry"):
        found = registry.discover([tmp_path])

    assert found.skipped == []
    job = found.get("config_audit")
    assert job.label == "Config Audit"
    assert job.description == "Audit configs."
    assert job.icon == "gear"
    assert job.default_schedule is None
    assert job.params == ()
    assert job.targets == "devices"
    assert job.needs_credentials is True
    assert job.source == str(path)
    assert job.run(None, 1, {}, None) == "ok"
    assert "config_audit" in found
    assert "other" not in found
    assert f"Registered job type config_audit from {path}" in caplog.text


def test_explicit_metadata_and_params(tmp_path):
    write(
        tmp_path,
        "ping.py",
        module(
            """{
                'job_type': 'ping',
                'label': 'Ping sweep',
                'description': 'Checks reachability.',
                'icon': 'wifi',
                'targets': 'none',
                'default_schedule': {'kind': 'interval', 'minutes': 5},
                'params': [
                    {'name': 'count', 'type': 'integer', 'default': 3, 'help': 'Pings'},
                    {'name': 'mode', 'type': 'choice', 'choices': ['fast', 'slow']},
                    {'name': 'hosts_extra', 'type': 'list', 'default': ['a']},
                    {'name': 'token', 'type': 'secret', 'required': True},
                    {'name': 'note'},
                ],
            }"""
        ),
    )
    job = registry.discover([tmp_path]).get("ping")

    assert job.label == "Ping sweep"
    assert job.description == "Checks reachability."
    assert job.icon == "wifi"
    assert job.targets == "none"
    assert job.needs_credentials is False
    assert job.default_schedule == {"kind": "interval", "minutes": 5}
    assert [p.name for p in job.params] == ["count", "mode", "hosts_extra", "token", "note"]
    assert job.param("hosts_extra").label == "Hosts extra"
    assert job.param("note").type == "string"
    assert job.param("mode").choices == ("fast", "slow")
    assert job.param("missing") is None
    assert job.secret_params == ("token",)
    assert job.param("token").secret and not job.param("count").secret

    data = job.to_dict()
    assert "run" not in data
    assert data["params"][2]["default"] == ["a"]
    assert data["params"][1]["choices"] == ["fast", "slow"]
    assert data["params"][3]["secret"] is True
    assert json.loads(json.dumps(data)) == data


def test_underscore_files_and_non_python_files_are_ignored(tmp_path):
    write(tmp_path, "__init__.py", "raise RuntimeError('never imported')\n")
    write(tmp_path, "_helpers.py", "raise RuntimeError('never imported')\n")
    write(tmp_path, "notes.txt", "not a module")
    write(tmp_path, "good.py", module("{'job_type': 'good'}"))

    found = registry.discover([tmp_path])

    assert list(found.types) == ["good"]
    assert found.skipped == []


def test_missing_folder_is_reported(tmp_path):
    found = registry.discover([tmp_path / "nope"])
    assert found.types == {}
    assert found.skipped[0].source == str(tmp_path / "nope")
    assert "does not exist" in found.skipped[0].reason


SKIPS = [
    ("raise ValueError('bad things')\n", "import failed: ValueError: bad things"),
    ("def broken(:\n", "import failed: SyntaxError"),
    ("import sys\nsys.exit(3)\n", "import failed: SystemExit: 3"),
    ("import no_such_module_rookery\n", "ModuleNotFoundError"),
    (RUN, "no JOB_META"),
    ("JOB_META = [1]\n" + RUN, "JOB_META must be a dict"),
    ("JOB_META = {'job_type': 'x'}\n", "no run() function"),
    ("JOB_META = {'job_type': 'x'}\nrun = 5\n", "run is not callable"),
    (
        "JOB_META = {'job_type': 'x'}\ndef run(device, job_id):\n    pass\n",
        "must accept four positional arguments",
    ),
    (
        "JOB_META = {'job_type': 'x'}\ndef run(device, job_id, config, db, extra):\n    pass\n",
        "must accept four positional arguments",
    ),
    (
        "JOB_META = {'job_type': 'x'}\nasync def run(device, job_id, config, db):\n    pass\n",
        "not async",
    ),
    (module("{}"), 'no "job_type"'),
    (module("{'job_type': 5}"), "must be a string"),
    (module("{'job_type': 'Bad-Name'}"), "'Bad-Name' is invalid"),
    (module("{'job_type': 'x' * 65}"), "is invalid"),
    (module("{'job_type': 'x\\n'}"), "is invalid"),
    (module("{'job_type': 'x', 'targets': 'all'}"), 'must be "devices" or "none"'),
    (module("{'job_type': 'x', 'needs_credentials': 'yes'}"), "needs_credentials"),
    (module("{'job_type': 'x', 'label': 3}"), "JOB_META['label'] must be a string"),
    (module("{'job_type': 'x', 'default_schedule': 'hourly'}"), "must be a dict"),
    (module("{'job_type': 'x', 'default_schedule': {'kind': 'weekly'}}"), "'weekly'"),
    (module("{'job_type': 'x', 'params': {'a': 1}}"), "must be a list of dicts"),
    (module("{'job_type': 'x', 'params': ['a']}"), "params[0] must be a dict"),
    (module("{'job_type': 'x', 'params': [{'type': 'string'}]}"), "params[0] needs a name"),
    (module("{'job_type': 'x', 'params': [{'name': 'a b'}]}"), "params[0] needs a name"),
    (module("{'job_type': 'x', 'params': [{'name': 'a'}, {'name': 'a'}]}"), "declared twice"),
    (module("{'job_type': 'x', 'params': [{'name': 'a', 'type': 'date'}]}"), "unknown type"),
    (module("{'job_type': 'x', 'params': [{'name': 'a', 'typ': 'string'}]}"), "unknown keys"),
    (module("{'job_type': 'x', 'params': [{'name': 'a', 'type': 'choice'}]}"), "non-empty list"),
    (
        module("{'job_type': 'x', 'params': [{'name': 'a', 'type': 'choice', 'choices': []}]}"),
        "non-empty list",
    ),
    (
        module("{'job_type': 'x', 'params': [{'name': 'a', 'choices': ['b']}]}"),
        "has choices but its type is 'string'",
    ),
    (
        module("{'job_type': 'x', 'params': [{'name': 'a', 'type': 'integer', 'default': '5'}]}"),
        "default '5' is not a valid integer",
    ),
    (
        module("{'job_type': 'x', 'params': [{'name': 'a', 'type': 'integer', 'default': True}]}"),
        "not a valid integer",
    ),
    (
        module("{'job_type': 'x', 'params': [{'name': 'a', 'type': 'boolean', 'default': 1}]}"),
        "not a valid boolean",
    ),
    (
        module("{'job_type': 'x', 'params': [{'name': 'a', 'type': 'number', 'default': 'x'}]}"),
        "not a valid number",
    ),
    (
        module("{'job_type': 'x', 'params': [{'name': 'a', 'type': 'list', 'default': 'x'}]}"),
        "list of strings",
    ),
    (
        module("{'job_type': 'x', 'params': [{'name': 'a', 'type': 'secret', 'default': 'pw'}]}"),
        "may not have a default",
    ),
    (
        module(
            "{'job_type': 'x', 'params': "
            "[{'name': 'a', 'type': 'choice', 'choices': ['b'], 'default': 'c'}]}"
        ),
        "default 'c' is not one of its choices",
    ),
    (
        module(
            "{'job_type': 'x', 'params': [{'name': 'a', 'type': 'number', 'default': 10**400}]}"
        ),
        "invalid JOB_META: OverflowError",
    ),
    (
        module("{'job_type': 'x', 'params': [{'name': 'a', 'required': 'yes'}]}"),
        "required must be true or false",
    ),
]


@pytest.mark.parametrize(("source", "reason"), SKIPS)
def test_broken_module_is_skipped_with_reason_and_others_still_load(
    tmp_path, caplog, source, reason
):
    write(tmp_path, "a_good.py", module("{'job_type': 'a_good'}"))
    broken = write(tmp_path, "broken.py", source)
    write(tmp_path, "z_good.py", module("{'job_type': 'z_good'}"))

    with caplog.at_level(logging.WARNING, logger="app.registry"):
        found = registry.discover([tmp_path])

    assert sorted(found.types) == ["a_good", "z_good"]
    assert len(found.skipped) == 1
    skipped = found.skipped[0]
    assert skipped.source == str(broken)
    assert reason in skipped.reason
    assert "Traceback" not in skipped.reason
    assert "\n" not in skipped.reason
    assert f"Skipped job module {broken}: " in caplog.text
    assert not any(name.endswith(".broken") for name in sys.modules)


def test_duplicate_job_type_keeps_the_first_and_names_it(tmp_path):
    first = write(tmp_path, "a_backup.py", module("{'job_type': 'backup', 'label': 'First'}"))
    second = write(tmp_path, "b_backup.py", module("{'job_type': 'backup', 'label': 'Second'}"))

    found = registry.discover([tmp_path])

    assert found.get("backup").label == "First"
    assert found.skipped == [
        registry.SkippedModule(
            source=str(second),
            reason=f"job type 'backup' is already registered by {first}",
        )
    ]


def test_first_folder_wins_duplicates_across_folders(tmp_path):
    one = write(tmp_path / "one", "backup.py", module("{'job_type': 'backup', 'label': 'One'}"))
    write(tmp_path / "two", "backup.py", module("{'job_type': 'backup', 'label': 'Two'}"))

    found = registry.discover([tmp_path / "one", tmp_path / "two"])

    assert found.get("backup").label == "One"
    assert str(one) in found.skipped[0].reason


def test_same_file_stem_in_two_folders_loads_both(tmp_path):
    write(tmp_path / "one", "backup.py", module("{'job_type': 'backup_one'}") + "\nWHO = 1\n")
    write(tmp_path / "two", "backup.py", module("{'job_type': 'backup_two'}") + "\nWHO = 2\n")

    found = registry.discover([tmp_path / "one", tmp_path / "two"])

    assert sorted(found.types) == ["backup_one", "backup_two"]
    one, two = found.get("backup_one"), found.get("backup_two")
    assert one.run.__module__ != two.run.__module__
    assert one.run.__module__.startswith("rookery_jobs.")
    assert sys.modules[one.run.__module__].WHO == 1
    assert sys.modules[two.run.__module__].WHO == 2


def test_get_unknown_job_type_lists_registered(tmp_path):
    write(tmp_path, "b.py", module("{'job_type': 'bravo'}"))
    write(tmp_path, "a.py", module("{'job_type': 'alpha', 'label': 'Zulu'}"))
    found = registry.discover([tmp_path])

    with pytest.raises(registry.UnknownJobType) as info:
        found.get("nope")
    assert isinstance(info.value, RookeryError)
    assert str(info.value) == "Unknown job type 'nope'; registered: alpha, bravo"
    assert [t.job_type for t in found.sorted()] == ["bravo", "alpha"]


def test_job_paths_puts_builtin_first_and_ignores_empty_items(tmp_path):
    builtin = registry.builtin_jobs_dir()
    assert builtin == Path(registry.__file__).resolve().parent / "jobs"
    assert registry.job_paths("") == [builtin]
    setting = f"{tmp_path / 'a'}::{tmp_path / 'b'}:{tmp_path / 'a'}:"
    assert registry.job_paths(setting) == [builtin, tmp_path / "a", tmp_path / "b"]


# --- validate_params -----------------------------------------------------------------


def test_validate_params_coerces_form_strings(tmp_path):
    job = make_job(
        [
            {"name": "count", "type": "integer"},
            {"name": "ratio", "type": "number"},
            {"name": "enabled", "type": "boolean"},
            {"name": "mode", "type": "choice", "choices": ["fast", "slow"]},
            {"name": "hosts", "type": "list"},
            {"name": "title", "type": "string"},
            {"name": "token", "type": "secret"},
        ],
        tmp_path,
    )
    values = registry.validate_params(
        job,
        {
            "count": " 5 ",
            "ratio": "2.5",
            "enabled": "On",
            "mode": "slow",
            "hosts": "r1\r\nr2\rr3\n\n \n r4 ",
            "title": "  hello  ",
            "token": "  s3cret ",
        },
    )
    assert values == {
        "count": 5,
        "ratio": 2.5,
        "enabled": True,
        "mode": "slow",
        "hosts": ["r1", "r2", "r3", "r4"],
        "title": "hello",
        "token": "  s3cret ",
    }


def test_validate_params_accepts_json_values(tmp_path):
    job = make_job(
        [
            {"name": "count", "type": "integer"},
            {"name": "ratio", "type": "number"},
            {"name": "enabled", "type": "boolean"},
            {"name": "hosts", "type": "list"},
        ],
        tmp_path,
    )
    values = registry.validate_params(
        job, {"count": 7, "ratio": 3, "enabled": False, "hosts": [" a ", "", "b"]}
    )
    assert values == {"count": 7, "ratio": 3.0, "enabled": False, "hosts": ["a", "b"]}
    assert isinstance(values["ratio"], float)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("FALSE", False),
        ("on", True),
        ("off", False),
        ("1", True),
        ("0", False),
        ("Yes", True),
        ("no", False),
    ],
)
def test_boolean_words(tmp_path, raw, expected):
    job = make_job([{"name": "flag", "type": "boolean"}], tmp_path)
    assert registry.validate_params(job, {"flag": raw}) == {"flag": expected}


def test_missing_values_use_defaults_or_none(tmp_path):
    job = make_job(
        [
            {"name": "count", "type": "integer", "default": 3},
            {"name": "hosts", "type": "list", "default": ["x"]},
            {"name": "title", "type": "string"},
            {"name": "flag", "type": "boolean"},
            {"name": "flag_on", "type": "boolean", "default": True},
            {"name": "token", "type": "secret"},
        ],
        tmp_path,
    )
    values = registry.validate_params(job, {"count": "", "title": "   ", "hosts": " \n \r\n "})
    assert values == {
        "count": 3,
        "hosts": ["x"],
        "title": None,
        "flag": False,
        "flag_on": True,
        "token": None,
    }
    values["hosts"].append("y")
    assert job.param("hosts").default == ("x",)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("show interfaces | include up, down", ["show interfaces | include up, down"]),
        ("show version\nshow clock", ["show version", "show clock"]),
        ("  show version \r\n\r\n\tshow clock\t\r", ["show version", "show clock"]),
        ("a,b\n,\nc", ["a,b", ",", "c"]),
        (["show ip route vrf a, b", " show clock "], ["show ip route vrf a, b", "show clock"]),
        (["show version\n", "\r\nshow users"], ["show version", "show users"]),
        (("one", "two, three"), ["one", "two, three"]),
    ],
)
def test_list_items_are_lines_never_comma_separated(tmp_path, value, expected):
    job = make_job([{"name": "commands", "type": "list"}], tmp_path)
    assert registry.validate_params(job, {"commands": value}) == {"commands": expected}


@pytest.mark.parametrize("value", ["", " \n\r\n\t", [], ["", "  ", "\n"]])
def test_blank_list_is_missing(tmp_path, value):
    job = make_job([{"name": "commands", "type": "list", "required": True}], tmp_path)
    with pytest.raises(ValidationError) as caught:
        registry.validate_params(job, {"commands": value})
    assert caught.value.fields == {"commands": registry.REQUIRED_MESSAGE}


@pytest.mark.parametrize(
    "value",
    [["show version\nconfigure terminal"], ["show clock", "show version\rreload"], ("a\r\nb",)],
)
def test_a_line_break_inside_a_list_item_is_refused_not_split(tmp_path, value):
    job = make_job([{"name": "commands", "type": "list"}], tmp_path)
    with pytest.raises(ValidationError) as caught:
        registry.validate_params(job, {"commands": value})
    assert "line break" in caught.value.fields["commands"]


def test_multidict_list_values(tmp_path):
    from werkzeug.datastructures import MultiDict

    job = make_job([{"name": "hosts", "type": "list"}], tmp_path)
    assert registry.validate_params(job, MultiDict([("hosts", "a"), ("hosts", "b, c")])) == {
        "hosts": ["a", "b, c"]
    }
    assert registry.validate_params(job, MultiDict([("hosts", "a, b")])) == {"hosts": ["a, b"]}
    assert registry.validate_params(job, MultiDict([("hosts", "a\nb, c")])) == {
        "hosts": ["a", "b, c"]
    }


@pytest.mark.parametrize(
    ("param", "value", "message"),
    [
        ({"type": "integer"}, "5.5", "Expected a whole number."),
        ({"type": "integer"}, "abc", "Expected a whole number."),
        ({"type": "integer"}, True, "Expected a whole number."),
        ({"type": "integer"}, 5.5, "Expected a whole number."),
        ({"type": "number"}, "abc", "Expected a number."),
        ({"type": "number"}, "nan", "Expected a finite number."),
        ({"type": "number"}, "-inf", "Expected a finite number."),
        ({"type": "number"}, False, "Expected a number."),
        ({"type": "boolean"}, "maybe", "Expected true or false."),
        ({"type": "boolean"}, 2, "Expected true or false."),
        ({"type": "choice", "choices": ["a", "b"]}, "c", "Choose one of: a, b."),
        ({"type": "list"}, [1, 2], "Expected a list of text items."),
        ({"type": "list"}, 5, "Expected a list of text items."),
        ({"type": "string"}, 5, "Expected text."),
        ({"type": "secret"}, 5, "Expected text."),
        ({"type": "string", "required": True}, "  ", "This parameter is required."),
        ({"type": "list", "required": True}, "", "This parameter is required."),
        ({"type": "boolean", "required": True}, None, "This parameter is required."),
        ({"type": "secret", "required": True}, "", "This parameter is required."),
    ],
)
def test_invalid_values_are_rejected(tmp_path, param, value, message):
    job = make_job([{"name": "p", **param}], tmp_path)
    with pytest.raises(ValidationError) as info:
        registry.validate_params(job, {"p": value})
    assert info.value.fields == {"p": message}
    assert str(info.value) == "Invalid parameters: p"


def test_all_errors_are_collected_including_unknown_and_missing(tmp_path):
    job = make_job(
        [
            {"name": "count", "type": "integer"},
            {"name": "host", "type": "string", "required": True},
            {"name": "ok", "type": "string"},
        ],
        tmp_path,
    )
    with pytest.raises(ValidationError) as info:
        registry.validate_params(job, {"count": "x", "ok": "fine", "zzz": 1, "extra": "2"})
    assert str(info.value) == "Invalid parameters: count, host, extra, zzz"
    assert info.value.fields == {
        "count": "Expected a whole number.",
        "host": "This parameter is required.",
        "extra": "Unknown parameter 'extra'",
        "zzz": "Unknown parameter 'zzz'",
    }


@pytest.mark.parametrize("value", [12345, ["hunter2-secret"], {"x": "hunter2-secret"}])
def test_secret_value_never_appears_in_errors(tmp_path, value):
    job = make_job(
        [
            {"name": "token", "type": "secret"},
            {"name": "count", "type": "integer"},
        ],
        tmp_path,
    )
    with pytest.raises(ValidationError) as info:
        registry.validate_params(job, {"token": value, "count": "hunter2-secret"})
    text = str(info.value) + repr(info.value.fields) + repr(info.value.args)
    assert "hunter2" not in text
    assert "12345" not in text
    assert set(info.value.fields) == {"token", "count"}


def test_validated_secret_is_returned_unchanged(tmp_path):
    job = make_job([{"name": "token", "type": "secret"}], tmp_path)
    assert registry.validate_params(job, {"token": " p@ss, word\n"}) == {"token": " p@ss, word\n"}


# --- Flask wiring --------------------------------------------------------------------


def bare_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(config)
    return app


def test_init_app_stores_registry_and_current_returns_it(tmp_path):
    write(tmp_path, "mine.py", module("{'job_type': 'mine_rookery_test'}"))
    app = bare_app(ROOKERY_JOBS_PATH=str(tmp_path), ROOKERY_REQUIRE_JOB_TYPES=True)

    registry.init_app(app)

    with app.app_context():
        found = registry.current()
    assert found is app.extensions["rookery_registry"]
    assert "mine_rookery_test" in found


def test_current_without_init_app_says_so():
    with bare_app().app_context(), pytest.raises(RuntimeError, match="init_app"):
        registry.current()


def test_init_app_requiring_job_types_lists_skipped_modules(tmp_path, monkeypatch):
    empty_builtin = tmp_path / "builtin"
    empty_builtin.mkdir()
    monkeypatch.setattr(registry, "builtin_jobs_dir", lambda: empty_builtin)
    broken = write(tmp_path / "extra", "broken.py", "raise RuntimeError('boom')\n")
    app = bare_app(ROOKERY_JOBS_PATH=str(tmp_path / "extra"), ROOKERY_REQUIRE_JOB_TYPES=True)

    with pytest.raises(ConfigError) as info:
        registry.init_app(app)

    message = str(info.value)
    assert "No valid job type" in message
    assert f"{broken}: import failed: RuntimeError: boom" in message


def test_init_app_without_requirement_accepts_no_types(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "builtin_jobs_dir", lambda: tmp_path)
    app = bare_app(ROOKERY_JOBS_PATH="")
    registry.init_app(app)
    assert app.extensions["rookery_registry"].types == {}


# --- the new-job template ------------------------------------------------------------


class RecordingLogger:
    lines: list[tuple[str, str]] = []

    def __init__(self, job_id: Any, job_type: str, device_id: Any = None) -> None:
        self.job_type = job_type

    def log(self, level: str, message: str, meta: Any = None) -> None:
        self.lines.append((level, message))

    def progress(self, done: int, total: int) -> None:
        self.lines.append(("progress", f"{done}/{total}"))


def test_rendered_template_is_a_valid_job_module(tmp_path, monkeypatch):
    import app.jobs

    # app.jobs.JobLogger may not exist yet in this checkout; the template imports it.
    monkeypatch.setattr(app.jobs, "JobLogger", RecordingLogger, raising=False)
    source = job_template.render_template("acl_check")
    write(tmp_path, "acl_check.py", source)

    found = registry.discover([tmp_path])

    assert found.skipped == []
    job = found.get("acl_check")
    assert job.targets == "none"
    assert job.needs_credentials is False
    assert {p.type for p in job.params} >= {"string", "integer", "boolean", "choice", "list"}

    monkeypatch.setitem(job.run.__globals__, "JobLogger", RecordingLogger)
    RecordingLogger.lines = []
    params = registry.validate_params(job, {"repeat": "2", "items": "a\nb"})
    result = job.run(None, 1, {"params": params}, None)
    assert result["success"] is True
    assert result["data"]["items"] == ["a", "b"]
    assert ("progress", "2/2") in RecordingLogger.lines


@pytest.mark.parametrize("name", ["", "Bad", "1abc", "has-dash", "x" * 65, "ok\n"])
def test_render_template_rejects_bad_names(name):
    with pytest.raises(ValidationError):
        job_template.render_template(name)


def test_template_sets_only_the_job_type():
    rendered = job_template.render_template("xyz")
    assert '"job_type": "xyz"' in rendered
    assert "my_job" not in rendered


def test_unknown_meta_key_is_a_warning_not_a_skip(tmp_path, caplog):
    path = write(tmp_path, "typo.py", module("{'job_type': 'typo', 'need_credentials': False}"))
    with caplog.at_level(logging.WARNING, logger="app.registry"):
        found = registry.discover([tmp_path])
    assert "typo" in found
    assert f"Job module {path}: JOB_META ignores unknown keys need_credentials" in caplog.text


def test_validated_params_validate_again_unchanged(tmp_path):
    # Saved params are merged with overrides and validated again (run_now, re-runs).
    job = make_job(
        [
            {"name": "count", "type": "integer"},
            {"name": "ratio", "type": "number", "default": 1},
            {"name": "flag", "type": "boolean"},
            {"name": "mode", "type": "choice", "choices": ["a", "b"], "default": "a"},
            {"name": "hosts", "type": "list"},
            {"name": "title", "type": "string"},
            {"name": "token", "type": "secret"},
        ],
        tmp_path,
    )
    once = registry.validate_params(job, {"count": "4", "hosts": "x,y", "token": "pw"})
    assert registry.validate_params(job, once) == once
    assert once["ratio"] == 1.0 and isinstance(once["ratio"], float)
