#!/usr/bin/env python
"""Compliance end to end: what checking costs a backup run, and re-checking the fleet.

    python bench/compliance_backup.py [--devices 1000] [--recheck-devices 10000] [--rounds 3]

The issue's targets: "with 20 rules, [checking] must add less than 5 % to a backup run
of 1,000 devices (benchmark, side by side with rules off), and re-checking 10,000
devices after a rule edit must finish in under 60 s on one worker."

Sets up its own database (pipeline.py's: embedded PostgreSQL in a temporary folder when
DATABASE_URL is unset, else a database of its own on that server, dropped at the end),
one ``rookery worker`` process (fanout.py's, ``--concurrency 2``,
ROOKERY_WORKER_DEVICE_LIMIT=20) and the fast SSH emulator (bench/_fastssh.py, cisco_ios,
its own process) serving each device a ~300-line IOS config from a file
(``--configs``): bench/compliance.py's ``ios_config(n)`` with a revision line.

1. **Backups**: ``--devices`` devices (one credential each), one ``config_backup`` job
   (``max_parallel`` 20) over them, an untimed first backup of all of them, then
   ``--rounds`` rounds of two backups, one with no rules and one with the 20 rules of
   bench/compliance.py (the order alternating), each timed from ``start_run`` until the
   run is final. Before each backup the bench rewrites the configs that are to change
   (checks run on changed configs only): every device's ("all changed", the worst case)
   or one in twenty ("5 % changed", the common case). Rules are switched off by deleting
   them (``services.compliance.delete_rule``) and on by creating them (``create_rule``);
   the "Compliance check" run that creating them starts is left to finish before the
   clock starts. After each backup the run must have changed exactly the devices whose
   config was rewritten and, with rules, hold a ``compliance_results`` row per (changed
   device, rule in scope) computed on the run's commit.
2. **Re-check**: the backup fleet is deleted; ``--recheck-devices`` devices with a
   ~300-line config each are COPYed into ``devices`` and ``latest_configs`` (they need
   no SSH). A "Compliance check" run (``start_check``) computes the 20 rules' results
   for all of them (timed: the first check, informational); then one rule is edited
   (``update_rule``: the ``portfast`` rule loses its ``bpduguard`` line, so a third of
   the fleet comes into compliance with it) and the run that starts is timed from the
   edit to its final status. Every device must then hold a result of the new version of
   that rule (and the others' must be untouched).

Figures (times, lower is better; ``pass`` is ``value < target``):
``rules_overhead_all_changed`` and ``rules_overhead_5pct_changed`` (best backup with
rules / best without - 1, target 0.05), ``recheck_<N>_seconds`` (target 60) and
``first_check_<N>_seconds`` (no target). Prints a table, then one JSON line per figure.
Exit code 0 when the benchmark ran (a missed target is ``"pass": false``), 1 when it
could not.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
for _path in (str(REPO), str(BENCH_DIR)):
    if _path in sys.path:
        sys.path.remove(_path)
    sys.path.insert(0, _path)

import psycopg  # noqa: E402

# The engine benchmark's configs and rules; the database, worker and table helpers are
# pipeline.py's; registering the fleet and starting the worker are fanout.py's.
from compliance import RULES, ios_config  # noqa: E402
from fanout import ACTIVE_STATUSES, POLL_SECONDS, Rookery, proc_cpu_seconds  # noqa: E402
from pipeline import (  # noqa: E402
    BenchError,
    Workers,
    app_log_to_file,
    cleanup,
    open_database,
    print_table,
    run_guarded,
    say,
)

BENCH = "compliance_backup"
DEFAULT_DEVICES = 1000
DEFAULT_RECHECK_DEVICES = 10000
DEFAULT_ROUNDS = 3
CONCURRENCY = 20  # devices at once: fanout.py's default
READ_TIMEOUT = 60
OVERHEAD_TARGET = 0.05
RECHECK_TARGET = 60.0
#: one device in CHANGED_EVERY changes in the "5 %" rounds
CHANGED_EVERY = 20
FLEET_PREFIX = "cb"  # the backup fleet's devices are cb-ios-001 ...
RECHECK_PREFIX = "rc"
RECHECK_COMMIT = "c0ffee" * 6 + "c0ff"  # 40 hex digits: the loaded configs' commit
EDITED_RULE = "portfast"
#: the edit: the rule without its bpduguard line (a third of the fleet then complies)
EDITED_REQUIRED = "re:interface GigabitEthernet1/0/\\d+\n spanning-tree portfast"
CONTACT = "snmp-server contact noc@example.net"
SCENARIOS = {"all": "all changed", "5pct": "5 % changed"}


def device_config(n: int, revision: int) -> str:
    """bench/compliance.py's config of device ``n``, one line carrying ``revision``."""
    text = ios_config(n)
    if CONTACT not in text:
        raise BenchError("bench/compliance.py's ios_config no longer has an SNMP contact line")
    return text.replace(CONTACT, f"{CONTACT} revision {revision}", 1)


# ------------------------------------------------------------------------ emulator


class Emulator:
    """The fast SSH emulator's process (stopped by its own pid) and its config files."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.log_file: Any = None
        self.rows: list[dict[str, Any]] = []
        self.folder = Path()
        self.revisions: list[int] = []

    def start(self, devices: int, tmp: Path, timeout: float) -> None:
        import json

        self.folder = tmp / "served-configs"
        self.folder.mkdir()
        inventory = tmp / "fast-inventory.json"
        log_path = tmp / "fast-lab.log"
        self.log_file = log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(BENCH_DIR / "_fastssh.py"),
                "--devices",
                str(devices),
                "--inventory",
                str(inventory),
                "--configs",
                str(self.folder),
            ],
            cwd=str(REPO),
            stdout=self.log_file,
            stderr=self.log_file,
            start_new_session=True,  # a Ctrl-C reaches the bench only; it stops it
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = log_path.read_text(errors="replace").splitlines()[-15:]
                raise BenchError(
                    f"the emulator exited with code {self.process.returncode}:\n" + "\n".join(tail)
                )
            try:
                rows = json.loads(inventory.read_text())
            except (OSError, ValueError):
                rows = None
            if isinstance(rows, list) and len(rows) == devices:
                self.rows = rows
                self.revisions = [0] * devices
                for n in range(devices):
                    self.write(n)
                return
            time.sleep(0.05)
        raise BenchError(f"the emulator did not start within {timeout:g}s")

    def write(self, n: int) -> None:
        """Device ``n``'s config file at its revision (a rename: never read half-written)."""
        path = self.folder / f"{self.rows[n]['name']}.cfg"
        part = path.with_suffix(".part")
        part.write_text(device_config(n, self.revisions[n]))
        os.replace(part, path)

    def change(self, indexes: list[int]) -> None:
        for n in indexes:
            self.revisions[n] += 1
            self.write(n)

    def stop_all(self) -> None:
        """SIGINT (the emulator stops its servers on it), then SIGKILL after 20 s."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None


# --------------------------------------------------------------------------- rules


def rules_on(bench: Bench) -> float:
    """Create the 20 rules (each starts a check of the fleet); wait for the checks.
    Returns the seconds it took (untimed set-up, shown in the table)."""
    from app.extensions import db
    from app.services import compliance

    started = time.perf_counter()
    for name, (required, forbidden) in RULES.items():
        compliance.create_rule(actor="bench", name=name, required=required, forbidden=forbidden)
        db.session.remove()
    bench.wait_checks()
    return time.perf_counter() - started


def rules_off() -> None:
    """Delete every rule (with its results and history)."""
    from app.extensions import db
    from app.services import compliance

    for rule in compliance.list_rules():
        compliance.delete_rule(rule.id, actor="bench")
    db.session.remove()


# ---------------------------------------------------------------------- the bench


@dataclass
class Backup:
    """One timed backup of the whole fleet."""

    scenario: str  # "all" or "5pct"
    rules: bool
    number: int  # round
    seconds: float
    changed: int
    checks: int
    worker_cpu: float
    check_seconds: float | None  # the finalize step's check, from its log lines
    timeline: str


@dataclass
class Check:
    """One timed "Compliance check" run."""

    seconds: float  # the call (start_check / update_rule) until the run is final
    run_seconds: float  # the run's own created_at -> finished_at
    queued_seconds: float  # created_at -> started_at
    checks: int
    devices: int
    worker_cpu: float


@dataclass
class Bench:
    args: argparse.Namespace
    dsn: str
    rookery: Rookery
    emulator: Emulator
    job_id: int = 0
    device_names: list[str] = field(default_factory=list)
    rules_state: bool = False
    toggles: list[float] = field(default_factory=list)

    # -- waiting ------------------------------------------------------------------------

    def wait_run(self, conn: psycopg.Connection, run_id: int) -> str:
        worker = self.rookery.worker
        assert worker is not None
        deadline = time.monotonic() + self.args.timeout
        while True:
            status = conn.execute(
                "SELECT status FROM job_runs WHERE id = %s", (run_id,)
            ).fetchone()[0]
            if status not in ACTIVE_STATUSES:
                return status
            if worker.process.poll() is not None:
                raise BenchError(
                    f"the worker exited with code {worker.process.returncode} during run "
                    f"{run_id}:\n{worker.tail()}"
                )
            if time.monotonic() > deadline:
                raise BenchError(
                    f"run {run_id} was still {status} after {self.args.timeout:g}s:\n"
                    f"{worker.tail()}"
                )
            time.sleep(POLL_SECONDS)

    def wait_checks(self) -> None:
        """Until no "Compliance check" run is active; the last one must have succeeded."""
        from app.services.compliance import CHECK_JOB_NAME

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while True:
                row = conn.execute(
                    "SELECT r.id FROM job_runs r WHERE r.job_name = %s AND r.status = ANY(%s) "
                    "ORDER BY r.id LIMIT 1",
                    (CHECK_JOB_NAME, list(ACTIVE_STATUSES)),
                ).fetchone()
                if row is None:
                    break
                self.wait_run(conn, row[0])
            last = conn.execute(
                "SELECT id, status, coalesce(message, '') FROM job_runs WHERE job_name = %s "
                "ORDER BY id DESC LIMIT 1",
                (CHECK_JOB_NAME,),
            ).fetchone()
        if last is not None and last[1] != "COMPLETED_SUCCESS":
            raise BenchError(f"compliance check run {last[0]} ended {last[1]}: {last[2]}")

    def set_rules(self, wanted: bool) -> None:
        if wanted == self.rules_state:
            return
        if wanted:
            self.toggles.append(rules_on(self))
        else:
            rules_off()
        self.rules_state = wanted

    # -- backups ------------------------------------------------------------------------

    def backup(self, scenario: str, rules: bool, number: int, changed: list[int]) -> Backup:
        """Rewrite the ``changed`` devices' configs, back the fleet up, check the run."""
        from app.extensions import db
        from app.models import Job
        from app.services import runs

        self.set_rules(rules)
        self.emulator.change(changed)
        worker = self.rookery.worker
        assert worker is not None
        cpu_before = proc_cpu_seconds(worker.process.pid)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            started = time.perf_counter()
            run = runs.start_run(
                db.session.get(Job, self.job_id), triggered_by="bench", actor="bench"
            )
            run_id = run.id
            status = self.wait_run(conn, run_id)
            seconds = time.perf_counter() - started
            db.session.remove()
            cpu = proc_cpu_seconds(worker.process.pid) - cpu_before
            result = self.check_backup(conn, run_id, status, changed, rules)
            check_seconds, timeline = backup_timeline(conn, run_id)
        label = "with rules" if rules else "no rules"
        say(
            f"    {SCENARIOS[scenario]}, round {number}, {label}: {seconds:.2f}s "
            f"({len(changed)} changed, {result.get('checks', 0)} checks; {timeline})"
        )
        return Backup(
            scenario=scenario,
            rules=rules,
            number=number,
            seconds=seconds,
            changed=len(changed),
            checks=int(result.get("checks", 0)),
            worker_cpu=cpu,
            check_seconds=check_seconds if rules else None,
            timeline=timeline,
        )

    def check_backup(
        self,
        conn: psycopg.Connection,
        run_id: int,
        status: str,
        changed: list[int],
        rules: bool,
    ) -> dict[str, Any]:
        """Every device backed up, exactly the rewritten ones changed, and with rules a
        result per (changed device, rule in scope) on the run's commit."""
        ok, total = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'success'), count(*) FROM device_results "
            "WHERE run_id = %s",
            (run_id,),
        ).fetchone()
        message, result = conn.execute(
            "SELECT coalesce(message, ''), coalesce(result, '{}'::jsonb) FROM job_runs "
            "WHERE id = %s",
            (run_id,),
        ).fetchone()
        if status != "COMPLETED_SUCCESS" or ok != len(self.device_names):
            first = conn.execute(
                "SELECT device_name || ': ' || coalesce(message, '') FROM device_results "
                "WHERE run_id = %s AND status <> 'success' ORDER BY id LIMIT 1",
                (run_id,),
            ).fetchone()
            raise BenchError(
                f"backup run {run_id} ended {status} with {ok}/{total} devices backed up: "
                f"{first[0] if first else message}"
            )
        expected = sorted(self.device_names[n] for n in changed)
        if sorted(result.get("changed") or []) != expected:
            raise BenchError(
                f"backup run {run_id} changed {len(result.get('changed') or [])} configs, "
                f"not the {len(expected)} rewritten"
            )
        if "compliance_error" in result:
            raise BenchError(f"backup run {run_id}: {result['compliance_error']}")
        in_scope = len(RULES) if rules else 0  # the rules name no platform and no tag
        if result.get("checks", 0) != in_scope * len(expected):
            raise BenchError(
                f"backup run {run_id} made {result.get('checks')} checks, not "
                f"{in_scope} x {len(expected)}"
            )
        if rules:
            found = conn.execute(
                "SELECT count(*) FROM compliance_results c JOIN devices d ON d.id = c.device_id "
                "WHERE d.name = ANY(%s) AND c.commit = %s",
                (expected, result.get("commit")),
            ).fetchone()[0]
            if found != in_scope * len(expected):
                raise BenchError(
                    f"backup run {run_id}: {found} compliance results on its commit, not "
                    f"{in_scope} x {len(expected)}"
                )
        return result

    # -- re-check -----------------------------------------------------------------------

    def timed_check(self, start: Any) -> Check:
        """``start()`` (which starts a check run), then wait for that run to be final."""
        from app.extensions import db
        from app.services.compliance import CHECK_JOB_NAME

        worker = self.rookery.worker
        assert worker is not None
        cpu_before = proc_cpu_seconds(worker.process.pid)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            before = conn.execute("SELECT coalesce(max(id), 0) FROM job_runs").fetchone()[0]
            started = time.perf_counter()
            start()
            db.session.remove()
            row = conn.execute(
                "SELECT id FROM job_runs WHERE job_name = %s AND id > %s ORDER BY id LIMIT 1",
                (CHECK_JOB_NAME, before),
            ).fetchone()
            if row is None:
                raise BenchError("no compliance check run was started")
            status = self.wait_run(conn, row[0])
            seconds = time.perf_counter() - started
            cpu = proc_cpu_seconds(worker.process.pid) - cpu_before
            run_s, queued_s, result, message = conn.execute(
                "SELECT extract(epoch FROM finished_at - created_at),"
                " extract(epoch FROM started_at - created_at),"
                " coalesce(result, '{}'::jsonb), coalesce(message, '')"
                " FROM job_runs WHERE id = %s",
                (row[0],),
            ).fetchone()
        if status != "COMPLETED_SUCCESS":
            raise BenchError(f"compliance check run {row[0]} ended {status}: {message}")
        data = result.get("data") or result
        return Check(
            seconds=seconds,
            run_seconds=float(run_s),
            queued_seconds=float(queued_s),
            checks=int(data.get("checks", -1)),
            devices=int(data.get("devices_checked", -1)),
            worker_cpu=cpu,
        )


def backup_timeline(conn: psycopg.Connection, run_id: int) -> tuple[float | None, str]:
    """(seconds of finalize's compliance check, the run's timeline in ms after created).

    The check's time is read from the run's own log lines: "Config store: ..." is logged
    right before it, "Compliance: ..." right after (only when it checked something)."""
    row = conn.execute(
        "SELECT extract(epoch FROM r.started_at - r.created_at) * 1000,"
        " extract(epoch FROM (SELECT min(started_at) FROM device_results WHERE run_id = r.id)"
        "   - r.created_at) * 1000,"
        " extract(epoch FROM (SELECT max(finished_at) FROM device_results WHERE run_id = r.id)"
        "   - r.created_at) * 1000,"
        " extract(epoch FROM (SELECT min(at) FROM job_logs WHERE run_id = r.id"
        "   AND message LIKE 'Config store:%%') - r.created_at) * 1000,"
        " extract(epoch FROM (SELECT min(at) FROM job_logs WHERE run_id = r.id"
        "   AND message LIKE 'Compliance:%%') - r.created_at) * 1000,"
        " extract(epoch FROM r.finished_at - r.created_at) * 1000"
        " FROM job_runs r WHERE r.id = %s",
        (run_id,),
    ).fetchone()
    running, first, last, stored, checked, final = (None if v is None else float(v) for v in row)
    parts = [
        f"running +{_ms(running)}",
        f"first device +{_ms(first)}",
        f"last device done +{_ms(last)}",
        f"committed +{_ms(stored)}",
    ]
    if checked is not None:
        parts.append(f"checked +{_ms(checked)}")
    parts.append(f"final +{_ms(final)} ms")
    check_seconds = None
    if stored is not None and checked is not None:
        check_seconds = (checked - stored) / 1000
    return check_seconds, ", ".join(parts)


def _ms(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}"


def load_recheck_fleet(dsn: str, devices: int) -> float:
    """``devices`` cisco_ios devices and a ~300-line latest config each, COPYed in."""
    started = time.monotonic()
    now = datetime.now(UTC)
    with psycopg.connect(dsn) as conn:
        with conn.cursor().copy(
            "COPY devices (name, host, port, platform, driver, enabled, notes, created_at, "
            "updated_at) FROM STDIN"
        ) as copy:
            for n in range(devices):
                host = f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"
                row = (f"{RECHECK_PREFIX}-{n:05d}", host, 22, "cisco_ios", "netmiko", True, "")
                copy.write_row((*row, now, now))
        ids = dict(
            conn.execute(
                "SELECT name, id FROM devices WHERE name LIKE %s", (f"{RECHECK_PREFIX}-%",)
            ).fetchall()
        )
        with conn.cursor().copy(
            "COPY latest_configs (device_id, commit, committed_at, body) FROM STDIN"
        ) as copy:
            for n in range(devices):
                copy.write_row(
                    (ids[f"{RECHECK_PREFIX}-{n:05d}"], RECHECK_COMMIT, now, device_config(n, 0))
                )
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE devices, device_tags, latest_configs, compliance_results")
    return time.monotonic() - started


def count_results(dsn: str, rule: str | None = None, version: int | None = None) -> int:
    """Results of the re-check fleet (of ``rule`` at ``version``, when given)."""
    query = (
        "SELECT count(*) FROM compliance_results c JOIN devices d ON d.id = c.device_id "
        "JOIN compliance_rules r ON r.id = c.rule_id WHERE d.name LIKE %s"
    )
    params: list[Any] = [f"{RECHECK_PREFIX}-%"]
    if rule is not None:
        query += " AND r.name = %s AND c.rule_version = %s AND c.commit = %s"
        params += [rule, version, RECHECK_COMMIT]
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(query, params).fetchone()[0]


# --------------------------------------------------------------------------- report


def figure(name: str, value: float, target: float | None) -> dict[str, Any]:
    rounded = round(value, 3)
    return {
        "bench": BENCH,
        "figure": name,
        "value": rounded,
        "target": target,
        "pass": target is None or rounded < target,
    }


def report(
    args: argparse.Namespace,
    backups: list[Backup],
    first: Check,
    recheck: Check,
    notes: dict[str, float],
) -> list[dict[str, Any]]:
    figures = []
    rows: list[tuple[str, ...]] = [
        (
            "backups",
            "no rules s",
            "with rules s",
            "overhead",
            "target",
            "check s",
            "check / no rules",
        )
    ]
    per_round: list[str] = []
    for scenario, label in SCENARIOS.items():
        off = [b for b in backups if b.scenario == scenario and not b.rules]
        on = [b for b in backups if b.scenario == scenario and b.rules]
        best_off = min(b.seconds for b in off)
        best_on = min(b.seconds for b in on)
        overhead = best_on / best_off - 1
        item = figure(
            f"rules_overhead_{'all' if scenario == 'all' else '5pct'}_changed",
            overhead,
            OVERHEAD_TARGET,
        )
        figures.append(item)
        med_off = statistics.median(b.seconds for b in off)
        med_on = statistics.median(b.seconds for b in on)
        checks = [b.check_seconds for b in on if b.check_seconds is not None]
        changed = on[0].changed
        rows.append(
            (
                f"{label} ({changed} of {args.devices}), best of {len(off)}",
                f"{best_off:.2f}",
                f"{best_on:.2f}",
                f"{overhead:+.3f}",
                f"< {OVERHEAD_TARGET}",
                f"{min(checks):.2f}" if checks else "-",
                f"{min(checks) / best_off:.3f}" if checks else "-",
            )
        )
        rows.append(
            (
                "  median",
                f"{med_off:.2f}",
                f"{med_on:.2f}",
                f"{med_on / med_off - 1:+.3f}",
                "",
                f"{statistics.median(checks):.2f}" if checks else "-",
                f"{statistics.median(checks) / med_off:.3f}" if checks else "-",
            )
        )
        rows.append(
            (
                "  worker CPU s (median)",
                f"{statistics.median(b.worker_cpu for b in off):.2f}",
                f"{statistics.median(b.worker_cpu for b in on):.2f}",
                "",
                "",
                "",
                "",
            )
        )
        per_round.append(
            f"  {label}, each round (no rules / with rules, s): "
            + "; ".join(
                f"#{n} {a.seconds:.2f} / {b.seconds:.2f}"
                for n, (a, b) in enumerate(zip(off, on, strict=True), 1)
            )
        )
    n = args.recheck_devices
    first_item = figure(f"first_check_{n}_seconds", first.seconds, None)
    recheck_item = figure(f"recheck_{n}_seconds", recheck.seconds, RECHECK_TARGET)
    say()
    say(
        f"  {args.devices} devices on the fast emulator (~300-line IOS configs), "
        f"{CONCURRENCY} at a time; one `rookery worker`; {len(RULES)} rules"
    )
    print_table(rows)
    for line in per_round:
        say(line)
    say(
        "  check s: the check in the backup's finalize step, from the run's 'Config store' "
        "log line to its 'Compliance' one (the changed devices, in the run's transaction); "
        "check / no rules: that time over the backup without rules, the overhead without "
        "the noise of two whole runs"
    )
    say()
    print_table(
        [
            ("re-check", "wall s", "run s", "queued s", "worker CPU s", "checks", "target"),
            (
                f"first check: {n} devices x {len(RULES)} rules",
                f"{first.seconds:.2f}",
                f"{first.run_seconds:.2f}",
                f"{first.queued_seconds:.2f}",
                f"{first.worker_cpu:.2f}",
                str(first.checks),
                "-",
            ),
            (
                f"one rule edited: {n} devices x 1 rule",
                f"{recheck.seconds:.2f}",
                f"{recheck.run_seconds:.2f}",
                f"{recheck.queued_seconds:.2f}",
                f"{recheck.worker_cpu:.2f}",
                str(recheck.checks),
                f"< {RECHECK_TARGET:g}",
            ),
        ]
    )
    say(
        f"  set-up: emulator + fleet registered in {notes['register']:.1f}s, untimed first "
        f"backup {notes['warmup']:.1f}s, rules created and checked in "
        f"{notes['rules_on']:.1f}s (median), {n} configs COPYed in {notes['load']:.1f}s"
    )
    say()
    figures += [recheck_item, first_item]
    say("  figure                                  value  target")
    for item in figures:
        target = "-" if item["target"] is None else f"< {item['target']:g}"
        verdict = "" if item["target"] is None else ("pass" if item["pass"] else "MISS")
        say(f"  {item['figure']:<38} {item['value']:>7.3f}  {target:<6} {verdict}")
    say()
    return figures


# ----------------------------------------------------------------------------- main


def _dispose(app: Any) -> None:
    from app.extensions import db

    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def run(
    args: argparse.Namespace, tmp: Path, workers: Workers, emulator: Emulator
) -> list[dict[str, Any]]:
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db
    from app.services import compliance

    say(
        f"Rookery compliance benchmark: backups of {args.devices} devices, {args.rounds} "
        f"round(s) with and without {len(RULES)} rules; re-check of {args.recheck_devices}"
    )
    setup_started = time.monotonic()
    app_log_to_file(tmp / "bench-app.log")
    bench_db = open_database(tmp)
    cleanup.append(bench_db.drop)
    app = create_app({"DATABASE_URL": bench_db.uri, "ROOKERY_INSTANCE": str(tmp / "instance")})
    cleanup.append(lambda: _dispose(app))
    notes: dict[str, float] = {}
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
        db.session.remove()
        dsn = app.config["ROOKERY_PG_DSN"]
        say(
            f"  database: {bench_db.kind} PostgreSQL, migrated in "
            f"{time.monotonic() - setup_started:.1f}s"
        )
        fanout_args = argparse.Namespace(
            concurrency=CONCURRENCY, read_timeout=READ_TIMEOUT, timeout=args.timeout
        )
        rookery = Rookery(fanout_args, tmp, bench_db.uri, dsn, workers)
        rookery.start_worker()
        say(f"  worker registered {rookery.started_seconds:.1f}s after spawn")

        # ---- 1. backups
        started = time.monotonic()
        emulator.start(args.devices, tmp, args.timeout)
        job = rookery.register(emulator.rows, FLEET_PREFIX)
        notes["register"] = time.monotonic() - started
        bench = Bench(args, dsn, rookery, emulator, job_id=job.job_id)
        bench.device_names = [f"{FLEET_PREFIX}-{row['name']}" for row in emulator.rows]
        say(f"  {args.devices} devices served and registered in {notes['register']:.1f}s")
        say("  untimed first backup (every config new) ...")
        warm = bench.backup("all", False, 0, list(range(args.devices)))
        notes["warmup"] = warm.seconds
        backups: list[Backup] = []
        order = [False, True]  # rules off first, then on; reversed every round
        for scenario in SCENARIOS:
            say(f"  backups, {SCENARIOS[scenario]}:")
            for number in range(1, args.rounds + 1):
                for rules in order:
                    if scenario == "all":
                        changed = list(range(args.devices))
                    else:
                        offset = (len(backups) * 7) % CHANGED_EVERY  # other devices each time
                        changed = list(range(offset, args.devices, CHANGED_EVERY))
                    backups.append(bench.backup(scenario, rules, number, changed))
                order.reverse()
        emulator.stop_all()

        # ---- 2. re-check
        say("  re-check: the backup fleet removed, rules on ...")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM devices WHERE name LIKE %s", (f"{FLEET_PREFIX}-%",))
        bench.set_rules(True)
        notes["rules_on"] = statistics.median(bench.toggles)
        say(f"  re-check: loading {args.recheck_devices} devices and configs ...")
        notes["load"] = load_recheck_fleet(dsn, args.recheck_devices)
        say("  re-check: first check of every device against every rule ...")
        first = bench.timed_check(lambda: compliance.start_check("bench", "bench: first check"))
        expected = args.recheck_devices * len(RULES)
        found = count_results(dsn)
        if first.checks != expected or found != expected:
            raise BenchError(
                f"the first check made {first.checks} checks and left {found} results, "
                f"not {args.recheck_devices} x {len(RULES)}"
            )
        say(f"    {first.seconds:.2f}s, {first.checks} checks")
        rule = next(r for r in compliance.list_rules() if r.name == EDITED_RULE)
        rule_id, version = rule.id, rule.version
        db.session.remove()
        say(f"  re-check: rule {EDITED_RULE} edited, its check run timed ...")
        recheck = bench.timed_check(
            lambda: compliance.update_rule(rule_id, actor="bench", required=EDITED_REQUIRED)
        )
        n = args.recheck_devices
        fresh = count_results(dsn, EDITED_RULE, version + 1)
        others = sum(count_results(dsn, name, 1) for name in RULES if name != EDITED_RULE)
        if recheck.checks != n or fresh != n or others != n * (len(RULES) - 1):
            raise BenchError(
                f"after the edit: {recheck.checks} checks, {fresh} results of {EDITED_RULE} "
                f"version {version + 1} (expected {n}), {others} results of the other rules "
                f"at version 1 (expected {n * (len(RULES) - 1)})"
            )
        say(f"    {recheck.seconds:.2f}s, {recheck.checks} checks")
        assert rookery.worker is not None
        workers.stop(rookery.worker)
    return report(args, backups, first, recheck, notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--devices",
        type=int,
        default=DEFAULT_DEVICES,
        help=f"devices backed up (default {DEFAULT_DEVICES})",
    )
    parser.add_argument(
        "--recheck-devices",
        type=int,
        default=DEFAULT_RECHECK_DEVICES,
        help=f"devices re-checked after a rule edit (default {DEFAULT_RECHECK_DEVICES})",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        help=f"backups with and without rules per scenario, best kept (default {DEFAULT_ROUNDS})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        help="seconds a process may take to start, or a run to finish (default 900)",
    )
    args = parser.parse_args(argv)
    if min(args.devices, args.recheck_devices, args.rounds) < 1:
        parser.error("--devices, --recheck-devices and --rounds must be at least 1")

    import importlib.util

    missing = [n for n in ("netmiko", "asyncssh") if importlib.util.find_spec(n) is None]
    if missing:
        say(f"Benchmark failed: not installed: {', '.join(missing)}")
        return 1
    return run_guarded(
        "rookery-bench-compliance-",
        lambda tmp, stoppers: run(args, tmp, stoppers[0], stoppers[1]),
        [Workers(), Emulator()],
    )


if __name__ == "__main__":
    sys.exit(main())
