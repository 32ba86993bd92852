#!/usr/bin/env python
"""Fan-out benchmark: config backups of many emulated devices, Rookery against plain scripts.

    python bench/fanout.py [--devices N] [--concurrency C] [--fast-rounds R] [--timeout S]

Backs up N emulated devices (default 100), C at a time (default 20), three ways, in
one run, on two emulators, each served by a process of its own (so the emulator does
not share a GIL with the clients it serves):

- fakenos: ``python -m app.demo_lab`` (FakeNOS; five platforms; slow, ~1 s a backup)
- fast: ``python bench/_fastssh.py`` (asyncssh cisco_ios emulator; a backup costs the
  emulator a few ms, so each client's own per-device overhead shows)

The three ways, each timed from its first device to its last:

- bare: a process running netmiko ``ConnectHandler(fast_cli=True)``, ``enable()``,
  ``send_command(<backup command>)`` in a ``ThreadPoolExecutor(C)``, writing each
  configuration to a file;
- Nornir: a process running Nornir 3 (threaded runner, ``num_workers=C``) with
  nornir_netmiko's ``netmiko_send_command(enable=True)``, writing each configuration to
  a file and closing the device's connection in the task (C sessions at once, as bare);
- Rookery: one ``python -m app.cli worker --concurrency 2`` process
  (ROOKERY_WORKER_DEVICE_LIMIT=C) for the whole benchmark; a ``config_backup`` job with
  ``max_parallel=C`` over the N devices (one credential per device, matched by tag);
  timed from ``start_run`` until the run is final in ``job_runs`` (polled every 25 ms);
  the run must end with every device backed up and one git commit of N files.

Before anything is timed, the worker makes one untimed backup of one device (it
imports netmiko and opens the git store on its first run; the scripts' clocks also
start after their imports). FakeNOS is measured once, the fast emulator ``--fast-rounds``
times (best kept). The figures are ratios measured in the same run: Rookery's wall
time over the bare script's and over Nornir's, and the worker's peak RSS over the bare
script's (both VmHWM, see _usage). Prints a table, then one JSON line per figure. Exit
code 0 when the benchmark ran (a missed target is ``"pass": false``), 1 when it could
not (set-up failed, a process died, a run did not finish in time).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
for _path in (str(REPO), str(BENCH_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

BENCH = "fanout"
TARGETS = {
    "rookery_vs_bare_wall_fakenos": 1.1,
    "rookery_vs_nornir_wall_fakenos": 1.0,
    "rookery_vs_bare_wall_fast": 1.1,
    "rookery_vs_nornir_wall_fast": 1.0,
    "rookery_vs_bare_peak_rss": 1.5,
}
DEFAULT_DEVICES = 100
DEFAULT_CONCURRENCY = 20
DEFAULT_FAST_ROUNDS = 2
DEFAULT_READ_TIMEOUT = 60  # ROOKERY_SSH_READ_TIMEOUT's default, given to all three
CONNECT_TIMEOUT = 10  # ROOKERY_SSH_CONNECT_TIMEOUT's default, given to all three
WORKER_CONCURRENCY = 2
POLL_SECONDS = 0.025
ACTIVE_STATUSES = ("PENDING", "QUEUED", "SCHEDULED", "WAITING", "RUNNING")


# --------------------------------------------------------------------- the clients
#
# ``python bench/fanout.py --client bare|nornir --inventory F --out DIR --concurrency C
# --read-timeout S`` runs one client in its own process and prints one JSON line.


def _usage() -> dict[str, float]:
    """This process's peak RSS (kB) and CPU time (s) so far.

    The peak is VmHWM, as for the worker, not ``ru_maxrss``: Linux carries the
    parent's peak over into ``ru_maxrss`` across fork+exec (the benchmark's own
    ~100 MiB would show up as the client's), while VmHWM belongs to this process's
    own address space.
    """
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = float(line.split()[1])
    return {"peak_rss_kb": peak, "cpu_seconds": usage.ru_utime + usage.ru_stime}


def _error_name(exc: BaseException | None) -> str:
    return type(exc).__name__ if exc is not None else "failed"


def _describe(exc: BaseException | None) -> str:
    lines = str(exc or "").strip().splitlines()
    return f"{_error_name(exc)}: {lines[0] if lines else ''}"[:300]


def client_bare(
    rows: list[dict[str, Any]], out: Path, concurrency: int, read_timeout: float
) -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from netmiko import ConnectHandler

    def backup(row: dict[str, Any]) -> None:
        params = {
            "device_type": row["platform"],
            "host": row["host"],
            "port": row["port"],
            "username": row["username"],
            "password": row["password"],
            "secret": row.get("enable_secret") or "",
            "fast_cli": True,
            "conn_timeout": CONNECT_TIMEOUT,
            "auth_timeout": CONNECT_TIMEOUT,
            "banner_timeout": CONNECT_TIMEOUT,
        }
        with ConnectHandler(**params) as conn:
            conn.enable()
            text = conn.send_command(row["backup_command"], read_timeout=read_timeout)
        (out / f"{row['name']}.cfg").write_text(text)

    cpu_before = _usage()["cpu_seconds"]
    errors: Counter[str] = Counter()
    first_error = ""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [pool.submit(backup, row) for row in rows]
        for future in as_completed(futures):
            exc = future.exception()
            if exc is not None:
                errors[_error_name(exc)] += 1
                first_error = first_error or _describe(exc)
    seconds = time.perf_counter() - started
    usage = _usage()
    return {
        "seconds": seconds,
        "ok": len(rows) - sum(errors.values()),
        "total": len(rows),
        "errors": dict(errors),
        "first_error": first_error,
        "peak_rss_kb": usage["peak_rss_kb"],
        "cpu_seconds": usage["cpu_seconds"] - cpu_before,
    }


def client_nornir(
    rows: list[dict[str, Any]], out: Path, concurrency: int, read_timeout: float
) -> dict[str, Any]:
    from nornir import InitNornir
    from nornir.core.task import Task
    from nornir_netmiko.tasks import netmiko_send_command

    # SimpleInventory reads YAML; JSON is YAML.
    hosts = {
        row["name"]: {
            "hostname": row["host"],
            "port": row["port"],
            "username": row["username"],
            "password": row["password"],
            "platform": row["platform"],
            "data": {"backup_command": row["backup_command"]},
            "connection_options": {
                "netmiko": {
                    "extras": {
                        "secret": row.get("enable_secret") or "",
                        "fast_cli": True,
                        "conn_timeout": CONNECT_TIMEOUT,
                        "auth_timeout": CONNECT_TIMEOUT,
                        "banner_timeout": CONNECT_TIMEOUT,
                    }
                }
            },
        }
        for row in rows
    }
    folder = out.parent
    (folder / "hosts.yaml").write_text(json.dumps(hosts))
    (folder / "groups.yaml").write_text("{}")
    (folder / "defaults.yaml").write_text("{}")

    def backup(task: Task) -> None:
        try:
            result = task.run(
                task=netmiko_send_command,
                command_string=task.host["backup_command"],
                enable=True,
                read_timeout=read_timeout,
            )
            (out / f"{task.host.name}.cfg").write_text(result.result)
        finally:
            task.host.close_connections()  # C sessions at once, as the others

    cpu_before = _usage()["cpu_seconds"]
    started = time.perf_counter()
    nr = InitNornir(
        runner={"plugin": "threaded", "options": {"num_workers": concurrency}},
        inventory={
            "plugin": "SimpleInventory",
            "options": {
                "host_file": str(folder / "hosts.yaml"),
                "group_file": str(folder / "groups.yaml"),
                "defaults_file": str(folder / "defaults.yaml"),
            },
        },
        logging={"log_file": str(folder / "nornir.log")},
    )
    results = nr.run(task=backup)
    nr.close_connections()
    seconds = time.perf_counter() - started
    errors: Counter[str] = Counter()
    first_error = ""
    for name in results.failed_hosts:
        exc = next((r.exception for r in results[name] if r.exception is not None), None)
        # The subtask's error is wrapped in NornirSubTaskError; name the device's own.
        inner = [r.exception for r in results[name][1:] if r.exception is not None]
        shown = inner[0] if inner else exc
        errors[_error_name(shown)] += 1
        first_error = first_error or _describe(shown)
    usage = _usage()
    return {
        "seconds": seconds,
        "ok": len(rows) - sum(errors.values()),
        "total": len(rows),
        "errors": dict(errors),
        "first_error": first_error,
        "peak_rss_kb": usage["peak_rss_kb"],
        "cpu_seconds": usage["cpu_seconds"] - cpu_before,
    }


CLIENTS: dict[str, Callable[..., dict[str, Any]]] = {"bare": client_bare, "nornir": client_nornir}


def client_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fanout.py --client")
    parser.add_argument("role", choices=sorted(CLIENTS))
    parser.add_argument("--inventory", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--read-timeout", type=float, required=True)
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    rows = json.loads(args.inventory.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    result = CLIENTS[args.role](rows, args.out, args.concurrency, args.read_timeout)
    written = len(list(args.out.glob("*.cfg")))
    result["files"] = written
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["--client"]:
    # A client process stops here, before the benchmark side's imports (psycopg...):
    # its peak RSS is netmiko's (or Nornir's) and its own, nothing else.
    sys.exit(client_main(sys.argv[2:]))


# ---------------------------------------------------------------- the benchmark side

# The database, worker handling and table helpers are pipeline.py's.
from pipeline import (  # noqa: E402
    BenchError,
    Worker,
    Workers,
    app_log_to_file,
    cleanup,
    open_database,
    print_table,
    run_guarded,
    say,
    wait_registered,
)


@dataclass
class Measure:
    """One timed backup of the whole fleet by one side."""

    side: str  # "bare", "nornir", "rookery"
    seconds: float
    ok: int
    total: int
    errors: dict[str, int] = field(default_factory=dict)
    first_error: str = ""
    cpu_seconds: float | None = None
    peak_rss_kb: float | None = None
    timeline: str = ""  # Rookery: where the run's time went


def run_timeline(conn: Any, run_id: int) -> str:
    """Where a run's time went, from its own timestamps (ms after it was created)."""
    row = conn.execute(
        "SELECT extract(epoch FROM r.started_at - r.created_at) * 1000,"
        " extract(epoch FROM min(d.started_at) - r.created_at) * 1000,"
        " extract(epoch FROM max(d.finished_at) - r.created_at) * 1000,"
        " extract(epoch FROM r.finished_at - r.created_at) * 1000"
        " FROM job_runs r LEFT JOIN device_results d ON d.run_id = r.id"
        " WHERE r.id = %s GROUP BY r.id",
        (run_id,),
    ).fetchone()
    if row is None or None in row:
        return ""
    running, first, last, final = (float(v) for v in row)
    return (
        f"created +0, running +{running:.0f}, first device +{first:.0f}, "
        f"last device done +{last:.0f}, final +{final:.0f} ms"
    )


@dataclass
class Lab:
    kind: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: Any
    rows: list[dict[str, Any]]
    inventory_path: Path
    started_seconds: float


class Processes:
    """Emulator processes this benchmark started; each is stopped by its own pid."""

    def __init__(self) -> None:
        self.labs: list[Lab] = []

    def start_lab(self, kind: str, devices: int, tmp: Path, timeout: float) -> Lab:
        inventory = tmp / f"{kind}-inventory.json"
        log_path = tmp / f"{kind}-lab.log"
        log_file = log_path.open("ab")
        if kind == "fakenos":
            cmd = [sys.executable, "-m", "app.demo_lab", "--devices", str(devices)]
            stdout: Any = inventory.open("wb")
        else:
            cmd = [
                sys.executable,
                str(BENCH_DIR / "_fastssh.py"),
                "--devices",
                str(devices),
                "--inventory",
                str(inventory),
            ]
            stdout = log_file
        spawned = time.monotonic()
        process = subprocess.Popen(
            cmd,
            cwd=str(REPO),
            stdout=stdout,
            stderr=log_file,
            start_new_session=True,  # a Ctrl-C reaches the bench only; it stops them
        )
        if stdout is not log_file:
            stdout.close()
        lab = Lab(kind, process, log_path, log_file, [], inventory, 0.0)
        self.labs.append(lab)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BenchError(
                    f"the {kind} emulator exited with code {process.returncode}:\n{_tail(log_path)}"
                )
            try:
                rows = json.loads(inventory.read_text())
            except (OSError, ValueError):
                rows = None
            if isinstance(rows, list) and len(rows) == devices:
                lab.rows = rows
                lab.started_seconds = time.monotonic() - spawned
                return lab
            time.sleep(0.05)
        raise BenchError(f"the {kind} emulator did not start within {timeout:g}s")

    def stop_lab(self, lab: Lab) -> None:
        """SIGINT (both emulators stop their servers on it), then SIGKILL after 20 s."""
        if lab.process.poll() is None:
            lab.process.send_signal(signal.SIGINT)
            try:
                lab.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                lab.process.kill()
                lab.process.wait()
        lab.log_file.close()
        if lab in self.labs:
            self.labs.remove(lab)

    def stop_all(self) -> None:
        for lab in list(self.labs):
            self.stop_lab(lab)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_client(role: str, lab: Lab, tmp: Path, label: str, args: argparse.Namespace) -> Measure:
    folder = tmp / f"{role}-{label}"
    folder.mkdir()
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--client",
        role,
        "--inventory",
        str(lab.inventory_path),
        "--out",
        str(folder / "configs"),
        "--concurrency",
        str(args.concurrency),
        "--read-timeout",
        str(args.read_timeout),
    ]
    try:
        done = subprocess.run(
            cmd, cwd=str(folder), capture_output=True, text=True, timeout=args.timeout
        )
    except subprocess.TimeoutExpired:
        raise BenchError(
            f"the {role} client on {lab.kind} did not finish in {args.timeout:g}s"
        ) from None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise BenchError(
            f"the {role} client on {lab.kind} failed (exit {done.returncode}):\n"
            + "\n".join(done.stderr.splitlines()[-15:])
        )
    data = json.loads(lines[-1])
    if data["files"] != data["ok"]:
        raise BenchError(
            f"the {role} client on {lab.kind} wrote {data['files']} files for {data['ok']} "
            "devices backed up"
        )
    return Measure(
        side=role,
        seconds=data["seconds"],
        ok=data["ok"],
        total=data["total"],
        errors=data["errors"],
        first_error=data["first_error"],
        cpu_seconds=data["cpu_seconds"],
        peak_rss_kb=data["peak_rss_kb"],
    )


# ------------------------------------------------------------------------- Rookery


def proc_status_kb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return float(line.split()[1])
    raise BenchError(f"/proc/{pid}/status has no {key}")


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class RookeryJob:
    job_id: int
    devices: int


class Rookery:
    """The bench's side of Rookery: its app (for the services) and its one worker."""

    def __init__(
        self, args: argparse.Namespace, tmp: Path, url: str, dsn: str, workers: Workers
    ) -> None:
        self.args = args
        self.tmp = tmp
        self.url = url  # DATABASE_URL for the worker
        self.dsn = dsn  # libpq form, for the bench's own polling
        self.workers = workers
        self.worker: Worker | None = None
        self.repo = tmp / "configs"
        self.commits = 0
        self.started_seconds = 0.0

    def register(self, rows: list[dict[str, Any]], prefix: str) -> RookeryJob:
        """Devices named ``<prefix>-<name>``, a credential each, a job over them."""
        from app.extensions import db
        from app.services import credentials, inventory, jobs

        fleet_tag = f"bench-{prefix}"
        for row in rows:
            name = f"{prefix}-{row['name']}"
            login_tag = f"login-{name}"
            inventory.create_device(
                actor="bench",
                name=name,
                host=row["host"],
                port=row["port"],
                platform=row["platform"],
                tags=[fleet_tag, login_tag],
            )
            credentials.create_credential(
                name=f"cred-{name}",
                username=row["username"],
                password=row["password"],
                enable_secret=row.get("enable_secret"),
                tags=[login_tag],
                actor="bench",
            )
        job = jobs.create_job(
            name=f"bench-backup-{prefix}",
            job_type="config_backup",
            target_tags=[fleet_tag],
            max_parallel=self.args.concurrency,
            max_retries=0,
            timeout_seconds=int(self.args.timeout),
            actor="bench",
        )
        registered = RookeryJob(job.id, len(rows))
        db.session.remove()
        return registered

    def start_worker(self) -> None:
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": self.url,
                "ROOKERY_INSTANCE": str(self.tmp / "instance"),  # same encryption key
                "ROOKERY_CONFIG_REPO": str(self.repo),
                "ROOKERY_WORKER_DEVICE_LIMIT": str(self.args.concurrency),
                "ROOKERY_SSH_READ_TIMEOUT": str(int(self.args.read_timeout)),
                "ROOKERY_SSH_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
            }
        )
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            after = conn.execute(
                "SELECT coalesce(max(id), 0) FROM procrastinate_workers"
            ).fetchone()[0]
            self.worker = self.workers.start(
                "rookery",
                [
                    sys.executable,
                    "-m",
                    "app.cli",
                    "worker",
                    "--concurrency",
                    str(WORKER_CONCURRENCY),
                ],
                env,
                self.tmp / "rookery-worker.log",
            )
            ready = wait_registered(conn, self.worker, after, self.args.timeout)
        self.started_seconds = ready - self.worker.spawned

    def run(self, job: RookeryJob) -> Measure:
        """start_run, then wait until the run is final; checks results and the commit."""
        import psycopg

        from app.extensions import db
        from app.models import Job
        from app.services import runs

        assert self.worker is not None
        pid = self.worker.process.pid
        cpu_before = proc_cpu_seconds(pid)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            started = time.perf_counter()
            run = runs.start_run(
                db.session.get(Job, job.job_id), triggered_by="bench", actor="bench"
            )
            run_id = run.id
            deadline = time.monotonic() + self.args.timeout
            while True:
                status = conn.execute(
                    "SELECT status FROM job_runs WHERE id = %s", (run_id,)
                ).fetchone()[0]
                if status not in ACTIVE_STATUSES:
                    break
                if self.worker.process.poll() is not None:
                    raise BenchError(
                        f"the Rookery worker exited with code {self.worker.process.returncode} "
                        f"during run {run_id}:\n{self.worker.tail()}"
                    )
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"Rookery's run {run_id} was still {status} after "
                        f"{self.args.timeout:g}s:\n{self.worker.tail()}"
                    )
                time.sleep(POLL_SECONDS)
            seconds = time.perf_counter() - started
            db.session.remove()
            cpu = proc_cpu_seconds(pid) - cpu_before
            by_status = dict(
                conn.execute(
                    "SELECT status, count(*) FROM device_results WHERE run_id = %s GROUP BY status",
                    (run_id,),
                ).fetchall()
            )
            message, result = conn.execute(
                "SELECT coalesce(message, ''), result FROM job_runs WHERE id = %s", (run_id,)
            ).fetchone()
            timeline = run_timeline(conn, run_id)
            first_error = ""
            if by_status.get("success", 0) != job.devices:
                row = conn.execute(
                    "SELECT device_name || ': ' || coalesce(message, '') FROM device_results "
                    "WHERE run_id = %s AND status <> 'success' ORDER BY id LIMIT 1",
                    (run_id,),
                ).fetchone()
                first_error = row[0] if row else message
        ok = by_status.get("success", 0)
        errors = {k: v for k, v in by_status.items() if k != "success"}
        if status != "COMPLETED_SUCCESS" and not errors:
            errors[status] = job.devices - ok
            first_error = first_error or message
        if ok:
            self._check_commit(run_id, result or {}, ok)
        return Measure(
            side="rookery",
            seconds=seconds,
            ok=ok,
            total=job.devices,
            errors=errors,
            first_error=first_error[:300],
            cpu_seconds=cpu,
            timeline=timeline,
        )

    def _check_commit(self, run_id: int, result: dict[str, Any], ok: int) -> None:
        """One new commit in the store, holding the ``ok`` devices' files."""
        sha = result.get("commit")
        count = int(
            subprocess.run(
                ["git", "-C", str(self.repo), "rev-list", "--count", "HEAD"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        if not sha or count != self.commits + 1:
            raise BenchError(
                f"run {run_id}: expected one new git commit, found {count - self.commits} "
                f"(result commit {sha!r})"
            )
        files = subprocess.run(
            ["git", "-C", str(self.repo), "show", "--name-only", "--format=", sha],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        if len(files) != ok:
            raise BenchError(f"run {run_id}: commit {sha[:10]} holds {len(files)} files, not {ok}")
        self.commits = count

    def peak_rss_kb(self) -> float:
        assert self.worker is not None
        return proc_status_kb(self.worker.process.pid, "VmHWM")


# --------------------------------------------------------------------------- report


def figure(name: str, value: float) -> dict[str, Any]:
    rounded = round(value, 3)
    target = TARGETS[name]
    return {
        "bench": BENCH,
        "figure": name,
        "value": rounded,
        "target": target,
        "pass": rounded <= target,
    }


def _mib(kb: float | None) -> str:
    return "" if kb is None else f"{kb / 1024:.0f}"


def _failures(m: Measure) -> str:
    if not m.errors:
        return ""
    return ", ".join(f"{count} {name}" for name, count in sorted(m.errors.items()))


LABELS = {"bare": "bare netmiko", "nornir": "Nornir", "rookery": "Rookery"}


def report(
    args: argparse.Namespace,
    fakenos: dict[str, Measure],
    fast_rounds: list[dict[str, Measure]],
    worker_rss_kb: float,
    notes: dict[str, float],
) -> list[dict[str, Any]]:
    fast = {
        side: min((r[side] for r in fast_rounds), key=lambda m: m.seconds)
        for side in ("bare", "nornir", "rookery")
    }
    bare_rss = max(
        m.peak_rss_kb or 0.0 for m in [fakenos["bare"], *(r["bare"] for r in fast_rounds)]
    )
    nornir_rss = max(
        m.peak_rss_kb or 0.0 for m in [fakenos["nornir"], *(r["nornir"] for r in fast_rounds)]
    )
    figures = [
        figure(
            "rookery_vs_bare_wall_fakenos", fakenos["rookery"].seconds / fakenos["bare"].seconds
        ),
        figure(
            "rookery_vs_nornir_wall_fakenos", fakenos["rookery"].seconds / fakenos["nornir"].seconds
        ),
        figure("rookery_vs_bare_wall_fast", fast["rookery"].seconds / fast["bare"].seconds),
        figure("rookery_vs_nornir_wall_fast", fast["rookery"].seconds / fast["nornir"].seconds),
        figure("rookery_vs_bare_peak_rss", worker_rss_kb / bare_rss),
    ]
    n = args.devices
    rows: list[tuple[str, ...]] = [
        (
            "emulator",
            "side",
            "wall s",
            "ms/device",
            "backed up",
            "CPU s",
            "peak RSS MiB",
            "failures",
        )
    ]
    for emulator, measures, suffix in (
        ("fakenos", fakenos, "(once)"),
        ("fast", fast, f"(best of {len(fast_rounds)})"),
    ):
        for side in ("bare", "nornir", "rookery"):
            m = measures[side]
            rss = m.peak_rss_kb if side != "rookery" else None
            rows.append(
                (
                    f"{emulator} {suffix}" if side == "bare" else "",
                    LABELS[side],
                    f"{m.seconds:.2f}",
                    f"{1000 * m.seconds / n:.1f}",
                    f"{m.ok}/{m.total}",
                    "" if m.cpu_seconds is None else f"{m.cpu_seconds:.2f}",
                    _mib(rss) if rss else "",
                    _failures(m),
                )
            )
    say()
    say(
        f"  {n} devices, {args.concurrency} at a time; Rookery: one worker "
        f"(--concurrency {WORKER_CONCURRENCY}, ROOKERY_WORKER_DEVICE_LIMIT={args.concurrency}), "
        f"job max_parallel={args.concurrency}"
    )
    print_table(rows)
    if len(fast_rounds) > 1:
        say(
            "  fast emulator, each round (s): "
            + "; ".join(
                f"#{i} bare {r['bare'].seconds:.2f}, Nornir {r['nornir'].seconds:.2f}, "
                f"Rookery {r['rookery'].seconds:.2f}"
                for i, r in enumerate(fast_rounds, 1)
            )
        )
    say(
        f"  peak RSS: Rookery worker {_mib(worker_rss_kb)} MiB (VmHWM over all its runs), "
        f"bare script {_mib(bare_rss)} MiB, Nornir {_mib(nornir_rss)} MiB (largest VmHWM)"
    )
    say(
        f"  set-up: emulators started in {notes['fakenos_lab']:.1f}s (fakenos) and "
        f"{notes['fast_lab']:.1f}s (fast); worker registered {notes['worker_start']:.1f}s "
        f"after spawn; its untimed first run (1 device) took {notes['warmup']:.2f}s"
    )
    for emulator, measures in (
        ("fakenos", fakenos),
        *((f"fast #{i}", r) for i, r in enumerate(fast_rounds, 1)),
    ):
        for side in ("bare", "nornir", "rookery"):
            m = measures[side]
            if m.errors:
                say(f"  FAILURES {emulator} {LABELS[side]}: {_failures(m)}; first: {m.first_error}")
    say()
    say("  figure                            value  target")
    for item in figures:
        verdict = "pass" if item["pass"] else "MISS"
        say(f"  {item['figure']:<32} {item['value']:>6.3f}  <= {item['target']:<4}  {verdict}")
    say()
    return figures


# ----------------------------------------------------------------------------- main


def _dispose(app: Any) -> None:
    from app.extensions import db

    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def run(
    args: argparse.Namespace, tmp: Path, workers: Workers, processes: Processes
) -> list[dict[str, Any]]:
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db

    say(
        f"Rookery fan-out benchmark: {args.devices} devices, concurrency {args.concurrency}, "
        f"fakenos once, fast emulator best of {args.fast_rounds}"
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
        say(
            f"  database: {bench_db.kind} PostgreSQL, migrated in "
            f"{time.monotonic() - setup_started:.1f}s"
        )
        rookery = Rookery(args, tmp, bench_db.uri, app.config["ROOKERY_PG_DSN"], workers)
        rookery.start_worker()
        notes["worker_start"] = rookery.started_seconds

        # ---- FakeNOS: each side once
        say(f"  fakenos: starting {args.devices} devices ...")
        lab = processes.start_lab("fakenos", args.devices, tmp, args.timeout)
        notes["fakenos_lab"] = lab.started_seconds
        say("  fakenos: registering them in Rookery ...")
        warm_job = rookery.register(lab.rows[:1], "warmup")
        fakenos_job = rookery.register(lab.rows, "fakenos")
        say("  fakenos: Rookery's untimed first run (1 device) ...")
        warm = rookery.run(warm_job)
        if warm.ok != 1:
            raise BenchError(f"the worker's first run failed: {warm.first_error}")
        notes["warmup"] = warm.seconds
        fakenos: dict[str, Measure] = {}
        for side in ("bare", "nornir", "rookery"):
            say(f"  fakenos: {LABELS[side]} ...")
            if side == "rookery":
                fakenos[side] = rookery.run(fakenos_job)
            else:
                fakenos[side] = run_client(side, lab, tmp, "fakenos", args)
            say(f"    {fakenos[side].seconds:.2f}s, {fakenos[side].ok}/{args.devices} backed up")
        processes.stop_lab(lab)

        # ---- fast emulator: best of R, sides alternating order
        say(f"  fast: starting {args.devices} devices ...")
        lab = processes.start_lab("fast", args.devices, tmp, args.timeout)
        notes["fast_lab"] = lab.started_seconds
        say("  fast: registering them in Rookery (a fleet per round: one commit each) ...")
        fast_jobs = [rookery.register(lab.rows, f"fast{i}") for i in range(1, args.fast_rounds + 1)]
        fast_rounds: list[dict[str, Measure]] = []
        for number, job in enumerate(fast_jobs, 1):
            sides = ["bare", "nornir", "rookery"]
            if number % 2 == 0:
                sides.reverse()
            result: dict[str, Measure] = {}
            for side in sides:
                if side == "rookery":
                    result[side] = rookery.run(job)
                else:
                    result[side] = run_client(side, lab, tmp, f"fast{number}", args)
                say(
                    f"  fast round {number}: {LABELS[side]} {result[side].seconds:.2f}s, "
                    f"{result[side].ok}/{args.devices} backed up"
                    + (f" ({result[side].timeline})" if result[side].timeline else "")
                )
            fast_rounds.append(result)
        processes.stop_lab(lab)
        worker_rss = rookery.peak_rss_kb()
        assert rookery.worker is not None
        workers.stop(rookery.worker)
    return report(args, fakenos, fast_rounds, worker_rss, notes)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--client"]:
        return client_main(argv[1:])
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--devices",
        type=int,
        default=DEFAULT_DEVICES,
        help=f"fleet size (default {DEFAULT_DEVICES})",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"devices at once, for every side (default {DEFAULT_CONCURRENCY}, at most 64)",
    )
    parser.add_argument(
        "--fast-rounds",
        type=int,
        default=DEFAULT_FAST_ROUNDS,
        help=f"measurements on the fast emulator, best kept (default {DEFAULT_FAST_ROUNDS})",
    )
    parser.add_argument(
        "--read-timeout",
        type=float,
        default=DEFAULT_READ_TIMEOUT,
        help="seconds a device may take to answer a command, for every side "
        f"(ROOKERY_SSH_READ_TIMEOUT; default {DEFAULT_READ_TIMEOUT})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds a process may take to start, or a side to back the fleet up (default 120)",
    )
    args = parser.parse_args(argv)
    if min(args.devices, args.concurrency, args.fast_rounds) < 1:
        parser.error("--devices, --concurrency and --fast-rounds must be at least 1")
    if args.concurrency > 64:
        parser.error("--concurrency is at most 64 (a job's max_parallel)")

    import importlib.util

    missing = [
        name
        for name in ("netmiko", "nornir", "nornir_netmiko", "fakenos", "asyncssh")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        say(
            f"Benchmark failed: not installed: {', '.join(missing)} "
            f"(pip install {' '.join(missing)})"
        )
        return 1

    return run_guarded(
        "rookery-bench-fanout-",
        lambda tmp, stoppers: run(args, tmp, stoppers[0], stoppers[1]),
        [Workers(), Processes()],
    )


if __name__ == "__main__":
    sys.exit(main())
