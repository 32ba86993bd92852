"""Drop-in compliance rule modules: discovery, skip reasons, running checks (no database)."""

from __future__ import annotations

import logging
import os
import textwrap
from pathlib import Path

import pytest

from app import compliance
from app.compliance import modules

CONFIG = "hostname r1\n!\nntp server 10.0.0.1\n!\nline vty 0 4\n transport input telnet\n"
DEVICE = {"name": "r1", "host": "192.0.2.1", "platform": "cisco_ios", "tags": ["core"]}

GOOD = '''
"""NTP servers are set."""

RULE_META = {
    "name": "ntp-servers",
    "severity": "high",
    "platforms": ["cisco_ios", "cisco_ios_ssh", "juniper"],
    "tags": ["core", "edge"],
}


def check(config, device):
    if "ntp server 10.0.0.2" in config:
        return []
    return [{"message": "NTP server missing", "missing": ["ntp server 10.0.0.2"],
             "remediation": "ntp server 10.0.0.2"}]
'''


def write(folder: Path, name: str, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


def module(meta: str, check: str = "def check(config, device):\n    return []\n") -> str:
    return f"RULE_META = {meta}\n\n{check}"


def run(tmp_path: Path, check: str, name: str = "probe") -> compliance.Finding:
    write(tmp_path, f"{name}.py", module(f"{{'name': {name!r}}}", textwrap.dedent(check)))
    found, skipped = compliance.discover(tmp_path)
    assert skipped == []
    rule = next(r for r in found if r.name == name)
    return compliance.run_module(rule, compliance.parse_config(CONFIG, "cisco_ios"), DEVICE)


# --- discovery ------------------------------------------------------------------------


def test_a_good_module_is_discovered_with_its_metadata(tmp_path):
    path = write(tmp_path, "ntp.py", GOOD)

    found, skipped = compliance.discover(tmp_path)

    assert skipped == []
    assert found == [
        compliance.ModuleRule(
            name="ntp-servers",
            description="NTP servers are set.",
            severity="high",
            platforms=("cisco_ios", "juniper_junos"),
            tags=("core", "edge"),
            path=str(path),
        )
    ]
    rule = found[0]
    assert compliance.in_scope(rule, "cisco_ios", ["core"])
    assert not compliance.in_scope(rule, "arista_eos", ["core"])
    assert not compliance.in_scope(rule, "cisco_ios", ["lab"])

    finding = compliance.run_module(rule, CONFIG, DEVICE)
    assert finding == compliance.Finding(
        compliant=False,
        missing=["NTP server missing", "ntp server 10.0.0.2"],
        unexpected=[],
        remediation="ntp server 10.0.0.2",
    )
    ok = compliance.run_module(rule, CONFIG + "ntp server 10.0.0.2\n", DEVICE)
    assert ok == compliance.Finding(True, [], [], "", None)


def test_defaults_and_files_that_are_not_rules(tmp_path):
    write(tmp_path, "plain.py", module("{'name': ' plain ', 'description': ' Says hi. '}"))
    write(tmp_path, "_helpers.py", "raise RuntimeError('never imported')")
    write(tmp_path, ".hidden.py", "raise RuntimeError('never imported')")
    write(tmp_path, "notes.txt", "not python")

    found, skipped = compliance.discover(tmp_path)

    assert skipped == []
    assert [(r.name, r.description, r.severity, r.platforms, r.tags) for r in found] == [
        ("plain", "Says hi.", "medium", (), ())
    ]


def test_a_missing_folder_holds_no_rules(tmp_path):
    assert compliance.discover(tmp_path / "nowhere") == ([], [])
    assert compliance.discover(str(tmp_path / "nowhere")) == ([], [])


def test_a_file_given_as_the_folder_is_reported(tmp_path):
    path = write(tmp_path, "rules.py", GOOD)

    assert compliance.discover(path) == (
        [],
        [compliance.SkippedModule(str(path), "the rules folder is not a folder")],
    )


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("import no_such_module_here\n", "import failed: ModuleNotFoundError: No module named"),
        ("RULE_META = {\n", "import failed: SyntaxError:"),
        ("raise SystemExit(3)\n", "import failed: SystemExit: 3"),
        ("def check(config, device):\n    return []\n", "no RULE_META defined"),
        (module("[('name', 'x')]"), "RULE_META must be a dict, not list"),
        (module("{'severity': 'low'}"), 'RULE_META needs a "name" (text)'),
        (module("{'name': 42}"), 'RULE_META needs a "name" (text)'),
        (
            module("{'name': 'two\\nlines'}"),
            'RULE_META["name"] must be one line of at most 200 characters',
        ),
        (
            module("{'name': 'x', 'severity': 'urgent'}"),
            "RULE_META[\"severity\"] must be one of low, medium, high, critical, not 'urgent'",
        ),
        (module("{'name': 'x', 'description': 3}"), 'RULE_META["description"] must be text'),
        (
            module("{'name': 'x', 'platforms': 'cisco_ios'}"),
            'RULE_META["platforms"] must be a list of names, not str',
        ),
        (
            module("{'name': 'x', 'tags': ['core', '']}"),
            'RULE_META["tags"] must hold names (non-empty text) only',
        ),
        (module("{'name': 'x'}", ""), "no check() function defined"),
        (module("{'name': 'x'}", "check = 'yes'\n"), "check is not callable"),
        (
            module("{'name': 'x'}", "async def check(config, device):\n    return []\n"),
            "check() must be a plain function, not async",
        ),
        (
            module("{'name': 'x'}", "def check(config):\n    return []\n"),
            "check(config) must accept two positional arguments (config, device)",
        ),
        (
            module("{'name': 'x'}", "def check(config, device, strict):\n    return []\n"),
            "check(config, device, strict) must accept two positional arguments",
        ),
    ],
)
def test_a_broken_module_is_skipped_with_its_reason(tmp_path, caplog, source, reason):
    write(tmp_path, "good.py", GOOD)
    broken = write(tmp_path, "broken.py", source)

    with caplog.at_level(logging.WARNING, logger="app.compliance.modules"):
        found, skipped = compliance.discover(tmp_path)

    assert [r.name for r in found] == ["ntp-servers"]
    assert len(skipped) == 1
    assert skipped[0].path == str(broken)
    assert skipped[0].reason.startswith(reason), skipped[0].reason
    assert f"Skipped compliance rule module {broken}" in caplog.text


def test_a_repeated_rule_name_is_skipped(tmp_path):
    first = write(tmp_path, "a_ntp.py", GOOD)
    second = write(tmp_path, "b_ntp.py", GOOD)

    found, skipped = compliance.discover(tmp_path)

    assert [r.path for r in found] == [str(first)]
    assert skipped == [
        compliance.SkippedModule(str(second), f"rule name 'ntp-servers' is already used by {first}")
    ]


def test_two_folders_with_the_same_file_name_do_not_mix(tmp_path):
    write(
        tmp_path / "a", "rule.py", module("{'name': 'a'}", "def check(c, d):\n    return ['a']\n")
    )
    write(
        tmp_path / "b", "rule.py", module("{'name': 'b'}", "def check(c, d):\n    return ['b']\n")
    )

    (a,), _ = compliance.discover(tmp_path / "a")
    (b,), _ = compliance.discover(tmp_path / "b")

    assert compliance.run_module(a, CONFIG, DEVICE).unexpected == ["a"]
    assert compliance.run_module(b, CONFIG, DEVICE).unexpected == ["b"]


# --- running checks -------------------------------------------------------------------


def test_str_and_dict_findings(tmp_path):
    finding = run(
        tmp_path,
        """
        def check(config, device):
            return [
                "telnet is allowed on the vty lines",
                {"unexpected": ["line vty 0 4\\n transport input telnet"],
                 "remediation": "line vty 0 4\\n transport input ssh\\n"},
                {"message": "no syslog", "missing": ["logging host 10.0.0.50"],
                 "remediation": "logging host 10.0.0.50"},
                {"message": "SNMP", "missing": ["snmp-server location x"],
                 "unexpected": ["snmp-server community <removed> RW"]},
                {"remediation": "line vty 0 4\\n transport input ssh"},
                "",
            ]
        """,
    )

    assert finding.compliant is False
    assert finding.error is None
    assert finding.missing == ["no syslog", "logging host 10.0.0.50", "snmp-server location x"]
    assert finding.unexpected == [
        "telnet is allowed on the vty lines",
        "line vty 0 4\n transport input telnet",
        "SNMP",
        "snmp-server community <removed> RW",
        modules.NO_MESSAGE,
        modules.NO_MESSAGE,
    ]
    assert finding.remediation == "line vty 0 4\n transport input ssh\nlogging host 10.0.0.50"


def test_the_check_gets_the_config_text_and_a_copy_of_the_device(tmp_path):
    finding = run(
        tmp_path,
        """
        def check(config, device):
            seen = [type(config).__name__, config.splitlines()[0], device["name"],
                    device["platform"], ",".join(device["tags"])]
            device["tags"].append("changed")
            device["name"] = "changed"
            return [" ".join(seen)]
        """,
    )

    assert finding.unexpected == ["str hostname r1 r1 cisco_ios core"]
    assert DEVICE == {"name": "r1", "host": "192.0.2.1", "platform": "cisco_ios", "tags": ["core"]}


def test_a_check_that_raises_gives_an_error_finding(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="app.compliance.modules"):
        finding = run(
            tmp_path,
            """
            def check(config, device):
                servers = {}
                return servers["ntp"]
            """,
        )

    assert finding == compliance.Finding(
        compliant=False,
        missing=[],
        unexpected=[],
        remediation="",
        error="check() raised KeyError: 'ntp' (line 6 of probe.py)",
    )
    assert "Compliance rule module probe raised (line 6 of probe.py)" in caplog.text


def test_a_check_that_exits_gives_an_error_finding(tmp_path):
    finding = run(tmp_path, "import sys\ndef check(config, device):\n    sys.exit(2)\n")

    assert finding.compliant is False
    assert finding.error == "check() raised SystemExit: 2 (line 5 of probe.py)"


@pytest.mark.parametrize(
    ("returned", "error"),
    [
        (
            "None",
            "check() returned NoneType, not a list of findings "
            "(an empty list when the device is compliant).",
        ),
        (
            "{'message': 'x'}",
            "check() returned dict, not a list of findings "
            "(an empty list when the device is compliant).",
        ),
        ("'bad'", "check() returned str, not a list of findings"),
        ("[42]", "finding 1 is a int, not a message or a dict."),
        (
            "['ok', {'mesage': 'typo'}]",
            "finding 2 has unknown keys mesage (a finding has message, missing, unexpected, "
            "remediation).",
        ),
        ("[{'missing': 'ntp server 1.1.1.1'}]", 'finding 1: "missing" must be a list'),
        ("[{'unexpected': [1]}]", 'finding 1: "unexpected" must be a list'),
        ("[{'message': ['x']}]", 'finding 1: "message" must be text.'),
        ("[{'remediation': ['x']}]", 'finding 1: "remediation" must be text.'),
    ],
)
def test_a_wrong_return_value_gives_an_error_finding(tmp_path, returned, error):
    finding = run(tmp_path, f"def check(config, device):\n    return {returned}\n")

    assert finding.compliant is False
    assert finding.missing == [] and finding.unexpected == [] and finding.remediation == ""
    assert finding.error is not None and finding.error.startswith(error), finding.error


def test_a_tuple_of_findings_and_many_findings(tmp_path):
    assert run(tmp_path, "def check(c, d):\n    return ()\n", "empty").compliant is True

    many = run(tmp_path, "def check(c, d):\n    return [str(i) for i in range(5000)]\n", "many")
    assert len(many.unexpected) == modules.MAX_ENTRIES
    assert many.unexpected[-1] == f"… and {5000 - modules.MAX_ENTRIES + 1} more"


def test_modules_are_imported_once_per_version_of_their_file(tmp_path):
    counter = tmp_path / "imports.txt"
    source = f"""
        with open({str(counter)!r}, "a") as f:
            f.write("x")
        RULE_META = {{"name": "counted"}}
        def check(config, device):
            return [VERSION]
        VERSION = "one"
        """
    path = write(tmp_path / "rules", "counted.py", source)

    (rule,), _ = compliance.discover(tmp_path / "rules")
    compliance.discover(tmp_path / "rules")
    for _ in range(3):
        assert compliance.run_module(rule, CONFIG, DEVICE).unexpected == ["one"]
    assert counter.read_text() == "x"

    path.write_text(textwrap.dedent(source.replace('"one"', '"two!"')))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert compliance.run_module(rule, CONFIG, DEVICE).unexpected == ["two!"]
    assert counter.read_text() == "xx"


def test_a_module_broken_or_renamed_since_discovery_gives_an_error_finding(tmp_path):
    path = write(tmp_path, "ntp.py", GOOD)
    (rule,), _ = compliance.discover(tmp_path)

    path.write_text(GOOD.replace('"ntp-servers"', '"ntp"') + "\n# longer now\n")
    assert compliance.run_module(rule, CONFIG, DEVICE).error == (
        "The rule module changed since it was discovered: it is now rule 'ntp'."
    )

    path.write_text("RULE_META = None\n")
    assert compliance.run_module(rule, CONFIG, DEVICE).error == (
        "The rule module cannot be loaded: no RULE_META defined"
    )

    path.unlink()
    error = compliance.run_module(rule, CONFIG, DEVICE).error
    assert error is not None and error.startswith(
        "The rule module cannot be loaded: cannot be read"
    )
