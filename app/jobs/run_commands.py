"""Runs show commands on devices and keeps each device's output (TextFSM-parsed if asked)."""

from __future__ import annotations

from typing import Any

from netmiko.utilities import get_structured_data_textfsm

from app.jobs import (
    APPROVED_BY,
    JobLogger,
    NotRetryable,
    command_error,
    command_problem,
    redact_secrets,
)

JOB_META = {
    "job_type": "run_commands",
    "label": "Run commands",
    "description": "Run the given commands on each device and store the output; with "
    "TextFSM, also the parsed records where ntc-templates has a template. A device that "
    "refuses a command (% Invalid input, syntax error...) fails, its output kept. Output "
    "and records are stored with secrets removed, as in config backups.",
    "icon": "terminal",
    "targets": "devices",
    "needs_credentials": True,
    "params": [
        {
            "name": "commands",
            "type": "list",
            "required": True,
            "help": "One command per line, commas included. Read-only commands (show, "
            "display, ping, traceroute...) unless an admin saves the job.",
        },
        {
            "name": "textfsm",
            "type": "boolean",
            "default": False,
            "help": "Parse the output with ntc-templates where a template exists (output "
            "that cannot be parsed is kept as text, with a warning).",
        },
    ],
}

#: longest reason of a parse failure kept in a log line and the result's data
_REASON_CHARS = 300


def run(device, job_id, config, db):
    params = config["params"]
    commands = [c for c in params.get("commands") or [] if c.strip()]
    log = JobLogger(job_id, JOB_META["job_type"], device.id)
    # Checked again here, whatever wrote the job: a line break must never make one
    # command several, and only a job an admin saved may send more than read-only ones.
    approved = bool(params.get(APPROVED_BY))
    for command in commands:
        problem = command_problem(command, device.platform, approved=approved)
        if problem is not None:
            raise NotRetryable(f"{command!r} not sent (no command was): {problem}")
    outputs: list[str] = []
    parsed: dict[str, list] = {}
    unparsed: dict[str, str] = {}
    refused: dict[str, str] = {}
    with device.connect() as session:
        for command in commands:
            raw = str(session.send_command(command))
            refusal = command_error(device.platform, raw)
            # Stored and parsed only without secrets: viewers read every run's output.
            text = redact_secrets(raw, device.platform)
            outputs.append(f"{device.name}# {command}\n{text.rstrip()}\n")
            if refusal is not None:
                # The device answered, but with an error instead of output: the run must
                # not call that a success. The next commands still run (their output helps).
                refused[command] = refusal
                log.error(f"{device.name}: {command!r} refused: {refusal}")
                continue
            log.info(f"{device.name}: ran {command!r} ({len(text)} bytes)")
            if params.get("textfsm"):
                records, reason = _parse(text, device.platform, command)
                if records is not None:
                    parsed[command] = records
                else:
                    unparsed[command] = reason
                    log.warning(f"{device.name}: {command!r} not parsed, kept as text: {reason}")
    data: dict[str, Any] = {"commands": commands}
    if parsed:
        data["parsed"] = parsed
    if unparsed:
        data["unparsed"] = unparsed
    if refused:
        data["refused"] = refused
    return {
        "success": not refused,
        "message": _message(commands, refused),
        "output": "\n".join(outputs),
        "data": data,
    }


def _message(commands: list[str], refused: dict[str, str]) -> str:
    if not refused:
        return f"{len(commands)} command(s)"
    command, refusal = next(iter(refused.items()))
    first = f"{command!r} refused: {refusal}"
    if len(refused) == 1:
        return first
    return f"{len(refused)} of {len(commands)} commands refused; first {first}"


def _parse(text: str, platform: str, command: str) -> tuple[list | None, str]:
    """The TextFSM records of one command's output, or None and why there are none.

    Parsing is an extra on top of the output, never a reason to lose it: no template, a
    template that finds nothing, and a template that fails on this output (ntc-templates'
    ``-> Error`` rules raise TextFSMError on a line they do not expect) all end here.
    """
    try:
        records = get_structured_data_textfsm(
            text, platform=platform, command=command, raise_parsing_error=True
        )
    except Exception as exc:  # TextFSMError, NetmikoParsingException, a broken template
        reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        return None, reason[:_REASON_CHARS]
    if not isinstance(records, list):  # netmiko returns the text when it parsed nothing
        return None, "no records"
    return records, ""
