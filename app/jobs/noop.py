"""Does nothing for a while: tests the pipeline (queue, worker, runner, events) end to end."""

from __future__ import annotations

import time

from app.jobs import JobLogger, result

JOB_META = {
    "job_type": "noop",
    "label": "No-op",
    "description": "Waits a number of seconds, then succeeds, fails or raises as asked. "
    "For testing the pipeline and for benchmarks.",
    "icon": "hourglass",
    "targets": "none",
    "params": [
        {
            "name": "seconds",
            "type": "number",
            "default": 0,
            "help": "How long to wait (0 to return at once).",
        },
        {
            "name": "fail",
            "type": "boolean",
            "default": False,
            "help": "End with success: false (COMPLETED_FAILURE, not retried).",
        },
        {
            "name": "raise_error",
            "type": "boolean",
            "default": False,
            "help": "Raise an exception (FAILED_UNEXPECTED after the last attempt).",
        },
        {"name": "message", "type": "string", "default": "", "help": "Message to return."},
    ],
}


def run(device, job_id, config, db):
    params = config["params"]
    seconds = float(params.get("seconds") or 0)
    log = JobLogger(job_id, JOB_META["job_type"])
    if seconds:
        log.info(f"Waiting {seconds:g}s")
        steps = max(1, min(20, int(seconds * 2)))
        for step in range(1, steps + 1):
            time.sleep(seconds / steps)
            log.progress(step, steps)
    if params.get("raise_error"):
        raise RuntimeError("noop was asked to raise")
    message = params.get("message") or f"waited {seconds:g}s"
    if params.get("fail"):
        return result(message, success=False)
    return result(message, data={"seconds": seconds})
