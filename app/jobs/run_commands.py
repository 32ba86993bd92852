"""Runs show commands on devices and keeps each device's output (TextFSM-parsed if asked)."""

from __future__ import annotations

from netmiko.utilities import get_structured_data_textfsm

from app.jobs import JobLogger

JOB_META = {
    "job_type": "run_commands",
    "label": "Run commands",
    "description": "Run the given commands on each device and store the output; with "
    "TextFSM, also the parsed records where ntc-templates has a template.",
    "icon": "terminal",
    "targets": "devices",
    "needs_credentials": True,
    "params": [
        {
            "name": "commands",
            "type": "list",
            "required": True,
            "help": "One command per line (show commands; there is no configuration mode).",
        },
        {
            "name": "textfsm",
            "type": "boolean",
            "default": False,
            "help": "Parse the output with ntc-templates where a template exists.",
        },
    ],
}


def run(device, job_id, config, db):
    params = config["params"]
    commands = [c for c in params.get("commands") or [] if c.strip()]
    log = JobLogger(job_id, JOB_META["job_type"], device.id)
    outputs: list[str] = []
    parsed: dict[str, list] = {}
    with device.connect() as session:
        for command in commands:
            text = str(session.send_command(command))
            outputs.append(f"{device.name}# {command}\n{text.rstrip()}\n")
            if params.get("textfsm"):
                structured = get_structured_data_textfsm(
                    text, platform=device.platform, command=command
                )
                if isinstance(structured, list):  # else: no template for this command
                    parsed[command] = structured
            log.info(f"{device.name}: ran {command!r} ({len(text)} bytes)")
    data = {"commands": commands}
    if parsed:
        data["parsed"] = parsed
    return {
        "success": True,
        "message": f"{len(commands)} command(s)",
        "output": "\n".join(outputs),
        "data": data,
    }
