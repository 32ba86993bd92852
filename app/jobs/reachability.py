"""Checks that devices answer: a TCP connection to the management port, and ICMP when allowed."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

from app.jobs import JobLogger

JOB_META = {
    "job_type": "reachability",
    "label": "Reachability",
    "description": "Open a TCP connection to each device's management port (and ping it "
    "when asked and allowed). Needs no credentials.",
    "icon": "signal",
    "targets": "devices",
    "needs_credentials": False,
    "default_schedule": {"kind": "interval", "minutes": 15},
    "params": [
        {
            "name": "timeout",
            "type": "number",
            "default": 3,
            "help": "Seconds to wait for the TCP connection.",
        },
        {
            "name": "icmp",
            "type": "boolean",
            "default": False,
            "help": "Also ping the device (needs the ping command and the right to use it).",
        },
    ],
}


def _tcp(host: str, port: int, timeout: float) -> float:
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=timeout):
        pass
    return (time.monotonic() - started) * 1000


def _ping(host: str, timeout: float) -> bool | None:
    ping = shutil.which("ping")
    if ping is None:
        return None
    try:
        done = subprocess.run(
            [ping, "-c", "1", "-W", str(max(1, int(timeout))), host],
            capture_output=True,
            timeout=timeout + 2,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.returncode == 0


def run(device, job_id, config, db):
    params = config["params"]
    timeout = float(params.get("timeout") or 3)
    log = JobLogger(job_id, JOB_META["job_type"], device.id)
    data: dict = {"host": device.host, "port": device.port}
    try:
        data["tcp_ms"] = round(_tcp(device.host, device.port, timeout), 2)
    except OSError as exc:
        reason = (
            "connection refused"
            if isinstance(exc, ConnectionRefusedError)
            else ("timed out" if isinstance(exc, TimeoutError | socket.timeout) else str(exc))
        )
        log.warning(f"{device.name}: TCP {device.host}:{device.port} {reason}")
        return {"success": False, "message": f"TCP {device.port}: {reason}", "data": data}
    message = f"TCP {device.port} answered in {data['tcp_ms']} ms"
    if params.get("icmp"):
        answered = _ping(device.host, timeout)
        data["icmp"] = answered
        message += {True: "; ping ok", False: "; no ping reply", None: "; ping not allowed"}[
            answered
        ]
    return {"success": True, "message": message, "data": data}
