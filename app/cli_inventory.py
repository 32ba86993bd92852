"""``rookery device …``: list the inventory, import it from CSV or Nornir, export it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click
from flask.cli import AppGroup, with_appcontext

from app.cli_output import emit, json_option, table
from app.extensions import db
from app.models import Device
from app.services import inventory

logger = logging.getLogger(__name__)

ACTOR = "cli"
FORMATS = ("csv", "nornir")


def device_dict(device: Device) -> dict[str, Any]:
    """A device as ``device list --json`` shows it (the API's device fields)."""
    return {
        "id": device.id,
        "name": device.name,
        "host": device.host,
        "port": device.port,
        "platform": device.platform,
        "driver": device.driver,
        "enabled": device.enabled,
        "notes": device.notes,
        "tags": [t.name for t in device.tags],
    }


@click.group("device", cls=AppGroup)
def device_group() -> None:
    """The inventory: list, import, export devices."""


@device_group.command("list")
@click.option("--tag", default=None, help="Only devices with this tag.")
@json_option
@with_appcontext
def device_list(tag: str | None, as_json: bool) -> None:
    """List devices by name."""
    data = [device_dict(d) for d in db.session.scalars(inventory.list_devices(tag=tag))]
    human = table(
        ["ID", "NAME", "HOST", "PORT", "PLATFORM", "ENABLED", "TAGS"],
        [
            [
                d["id"],
                d["name"],
                d["host"],
                d["port"],
                d["platform"],
                "yes" if d["enabled"] else "no",
                ",".join(d["tags"]) or "-",
            ]
            for d in data
        ],
        empty="No devices." if tag is None else f"No devices with tag {tag!r}.",
    )
    emit(data, as_json, human)


def _guess_format(path: Path) -> str:
    return "nornir" if path.suffix.lower() in {".yaml", ".yml"} else "csv"


@device_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="csv, or nornir (hosts.yaml); default: from the file's extension.",
)
@click.option(
    "--groups",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Nornir groups.yaml.",
)
@click.option(
    "--defaults",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Nornir defaults.yaml.",
)
@click.option("--partial", is_flag=True, help="Import the good rows even if some are bad.")
@json_option
@with_appcontext
def device_import(
    file: Path,
    fmt: str | None,
    groups: Path | None,
    defaults: Path | None,
    partial: bool,
    as_json: bool,
) -> None:
    """Create or update devices from FILE (CSV, or a Nornir SimpleInventory).

    Each bad row is printed with its line. Without --partial one bad row means nothing
    is imported and the exit code is 1; with it the good rows are imported (exit code 1
    only if nothing could be).
    """
    fmt = fmt or _guess_format(file)
    if fmt == "csv" and (groups or defaults):
        raise click.UsageError("--groups and --defaults go with --format nornir.")
    if fmt == "csv":
        report = inventory.import_csv(file.read_bytes(), partial=partial, actor=ACTOR)
    else:
        report = inventory.import_nornir(
            file.read_bytes(),
            groups.read_bytes() if groups else None,
            defaults.read_bytes() if defaults else None,
            partial=partial,
            actor=ACTOR,
        )
    imported = report.created + report.updated + report.unchanged
    failed = bool(report.errors) and (not partial or imported == 0)
    data = {
        "created": report.created,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "imported": not failed,
        "errors": [{"line": e.line, "name": e.name, "message": e.message} for e in report.errors],
    }
    if as_json:
        emit(data, True, "")
    else:
        for error in report.errors:
            click.echo(f"{file.name}: {error}", err=True)
        if not failed:
            skipped = f", {len(report.errors)} bad row(s) skipped" if report.errors else ""
            click.echo(
                f"Imported {file.name}: {report.created} created, {report.updated} updated, "
                f"{report.unchanged} unchanged{skipped}."
            )
    if failed:
        hint = "." if partial else " (--partial imports the good rows)."
        raise click.ClickException(
            f"{len(report.errors)} bad row(s) in {file.name}; nothing was imported{hint}"
        )


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as exc:  # a folder, a missing parent, no permission: one line, no traceback
        raise click.ClickException(f"Cannot write {path}: {exc.strerror}.") from None


@device_group.command("export")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="CSV: a file (default: standard output). Nornir: a folder for hosts.yaml and groups.yaml.",
)
@with_appcontext
def device_export(fmt: str, output: Path | None) -> None:
    """Write every device as CSV or as a Nornir SimpleInventory (import takes both back)."""
    if fmt == "csv":
        text = inventory.export_csv()
        if output is None:
            click.echo(text, nl=False)
        else:
            _write(output, text)
            click.echo(f"Wrote {output}.", err=True)
        return
    if output is None:
        raise click.UsageError(
            "--format nornir writes two files (hosts.yaml, groups.yaml): give --output FOLDER."
        )
    if output.exists() and not output.is_dir():
        raise click.UsageError(f"{output} is a file; --format nornir needs a folder.")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(f"Cannot create {output}: {exc.strerror}.") from None
    for name, text in inventory.export_nornir().items():
        _write(output / name, text)
    click.echo(f"Wrote {output / 'hosts.yaml'} and {output / 'groups.yaml'}.", err=True)
