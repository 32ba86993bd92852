"""Every ``rookery`` command, fed odd arguments and option values, ends in one clear line.

The commands come from the CLI's own tree, so a new command is swept the day it is
added. A person typing a wrong id, a word where a number goes or an empty string gets
exit code 1 or 2 and an ``Error:`` line, never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest

from app.cli import cli
from tests.integration.helpers import make_job

#: Commands that serve, wait for a worker or change the schema: tested on their own.
SKIPPED = {
    ("worker",),
    ("web",),
    ("demo",),
    ("shell",),
    ("routes",),
    ("queue", "ping"),
    ("db",),
}
#: Options whose odd value would only make the command wait (job run --wait N).
WAITING_OPTIONS = {"wait"}

ODD = ["abc", "99999999999999999999", "-1", "", "0"]


Leaf = tuple[tuple[str, ...], click.Command]


def leaves(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[Leaf]:
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        if path in SKIPPED or path[:1] in SKIPPED:
            continue
        if isinstance(command, click.Group):
            yield from leaves(command, path)
        else:
            yield path, command


def check(runner, args: list[str]) -> None:
    result = runner.invoke(cli, args, input="")
    shown = f"rookery {' '.join(map(repr, args))} -> {result.exit_code}\n{result.output[-500:]}"
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{shown}\n{result.exception!r}"
    )
    assert result.exit_code in (0, 1, 2), shown
    assert "Traceback" not in result.output, shown
    if result.exit_code:  # Aborted!: a password prompt met the end of its input
        assert "Error" in result.output or "Aborted!" in result.output, shown


@pytest.fixture
def commands(app, tmp_path, monkeypatch) -> list[Leaf]:
    monkeypatch.chdir(tmp_path)  # what the commands write (export -o abc) lands here
    monkeypatch.setenv("ROOKERY_JOBS_PATH", str(tmp_path / "new-jobs"))  # new-job abc too
    with app.app_context():
        make_job("nightly", "writer")  # job #1, so "1" reaches the code past the lookup
    found = list(leaves(cli))
    assert len(found) > 20, "the sweep lost the CLI's commands"
    return found


@pytest.mark.parametrize("odd", ODD)
def test_every_command_answers_odd_arguments_in_one_line(runner, commands, odd):
    for path, command in commands:
        arguments = [p for p in command.params if isinstance(p, click.Argument)]
        check(runner, [*path, *[odd for p in arguments if p.required or p.nargs == -1]])


def test_every_option_answers_odd_values_in_one_line(runner, commands):
    for path, command in commands:
        params = command.params
        arguments = ["1" for p in params if isinstance(p, click.Argument) and p.required]
        for option in params:
            if not isinstance(option, click.Option) or option.is_flag:
                continue
            if option.name in WAITING_OPTIONS:
                continue
            for odd in ("abc", "99999999999999999999", ""):
                check(runner, [*path, *arguments, option.opts[0], odd])
