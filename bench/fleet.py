#!/usr/bin/env python
"""Fleet benchmark (issue 17): config backups of 1,000 to 10,000 devices with large configs.

    python bench/fleet.py [--sizes 1000,5000,10000] [--sessions 100] [--rounds 1] [--timeout S]

For each fleet size N, on the fast emulator (``bench/_fastssh.py --config-style fleet``:
every device prints its own 30-100 KB IOS config, the same to every client), in one run:

- bare: fanout.py's bare netmiko client (a ``ThreadPoolExecutor(--sessions)``, each
  config written to a file), in a process of its own, timed first device to last;
- Rookery: a fresh ``python -m app.cli worker --concurrency 2`` per size
  (``ROOKERY_WORKER_DEVICE_LIMIT=--sessions``, its own git store), one untimed
  one-device run, then a ``config_backup`` job over the N devices (imported with
  ``inventory.import_csv``, one credential for the fleet), timed from ``start_run``
  until the run is final; it must back up every device in one git commit of N files.
  Its CPU and peak RSS (VmHWM: a worker per size, so the peak is that size's).
- git: the run's N files committed again by ``GitConfigStore.commit_run`` in this
  process, into a fresh store holding one earlier commit (as the worker's after its
  warm-up run), timed alone.

The figures compare Rookery with the bare script at each size, and each size with 1,000
devices: the per-device cost of a run, the worker's peak RSS and the git commit per
file must not grow with the fleet. Prints a table, then one JSON line per figure. Exit
code 0 when the benchmark ran (a missed target is ``"pass": false``), 1 when it could
not (set-up failed, a process died, a run did not finish in time).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
for _path in (str(REPO), str(BENCH_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

# The database, worker handling and table helpers are pipeline.py's; the bare client,
# the emulator processes and the worker's side of a backup run are fanout.py's.
from _fastssh import FLEET_USERNAME, raise_open_files, shared_password  # noqa: E402
from fanout import (  # noqa: E402
    Lab,
    Measure,
    Processes,
    Rookery,
    RookeryJob,
    proc_status_kb,
    run_client,
)
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

from app.models import MAX_PARALLEL  # noqa: E402

BENCH = "fleet"
BASE_SIZE = 1000  # the size the others are compared with
RSS_SIZE = 10000  # the size rss_<RSS_SIZE>_vs_<BASE_SIZE> is measured at
#: figure name (``{n}`` = a fleet size) -> target; None: reported, no target
TARGETS: dict[str, float | None] = {
    "rookery_vs_bare_{n}": 1.10,
    "per_device_cost_{n}_vs_1000": 1.15,
    f"rss_{RSS_SIZE}_vs_{BASE_SIZE}": 1.5,
    "git_commit_seconds_{n}": None,
    "git_commit_per_file_{n}_vs_1000": 1.15,
}
DEFAULT_SIZES = (1000, 5000, 10000)
DEFAULT_SESSIONS = 100
DEFAULT_ROUNDS = 1
DEFAULT_TIMEOUT = 1800.0
DEFAULT_READ_TIMEOUT = 60
#: the most devices a job runs at once (app/services/jobs.py refuses more, and the
#: runner's units.parallelism caps at it)
JOB_MAX_PARALLEL = MAX_PARALLEL
SEED = "fleet"  # the emulator's configs and the fleet's one password derive from it
LOGIN_TAG = "fleet-login"
RSS_SAMPLE_SECONDS = 0.25


# --------------------------------------------------------------------- capacity


def check_capacity(largest: int, sessions: int) -> str:
    """Can this machine hold ``largest`` listening devices and the sessions to them?

    The emulator holds a listening socket per device (it raises its own soft limit of
    open files, as this process does here, to at most the hard limit) and each takes an
    ephemeral port of 127.0.0.1; the clients' connections take ports from the same range.
    """
    needed = largest + 4 * sessions + 1024
    raise_open_files(needed)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise BenchError(
            f"{largest} devices need about {needed} open files in the emulator, but the hard "
            f"limit is {hard} (ulimit -Hn): raise it, or pass smaller --sizes"
        )
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default
    ports = high - low + 1
    if ports < largest + 4 * sessions + 1000:
        raise BenchError(
            f"{largest} listening devices need as many ephemeral ports, and the sessions "
            f"more; net.ipv4.ip_local_port_range holds {ports} ({low}-{high}): widen it, "
            "or pass smaller --sizes"
        )
    shown = "unlimited" if soft == resource.RLIM_INFINITY else str(soft)
    return f"open files {shown} (hard {hard}), ephemeral ports {low}-{high} ({ports})"


# -------------------------------------------------------------------- emulator


class FleetProcesses(Processes):
    """fanout.py's emulator processes, plus the fast emulator serving large configs."""

    def start_fleet(self, devices: int, tmp: Path, timeout: float) -> Lab:
        inventory = tmp / "fleet-inventory.json"
        log_path = tmp / "fleet-lab.log"
        log_file = log_path.open("ab")
        cmd = [
            sys.executable,
            str(BENCH_DIR / "_fastssh.py"),
            "--devices",
            str(devices),
            "--config-style",
            "fleet",
            "--shared-credentials",
            "--seed",
            SEED,
            "--inventory",
            str(inventory),
        ]
        spawned = time.monotonic()
        process = subprocess.Popen(
            cmd,
            cwd=str(REPO),
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,  # a Ctrl-C reaches the bench only; it stops them
        )
        lab = Lab("fleet", process, log_path, log_file, [], inventory, 0.0)
        self.labs.append(lab)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BenchError(
                    f"the emulator exited with code {process.returncode}:\n"
                    + "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
                )
            try:
                rows = json.loads(inventory.read_text())
            except (OSError, ValueError):
                rows = None
            if isinstance(rows, list) and len(rows) == devices:
                lab.rows = rows
                lab.started_seconds = time.monotonic() - spawned
                return lab
            time.sleep(0.1)
        raise BenchError(f"the emulator did not start {devices} devices within {timeout:g}s")


def sized_lab(lab: Lab, size: int, tmp: Path) -> Lab:
    """The emulator seen by the bare client: an inventory of its first ``size`` devices."""
    path = tmp / f"inventory-{size}.json"
    path.write_text(json.dumps(lab.rows[:size]))
    return dataclasses.replace(lab, inventory_path=path, rows=lab.rows[:size])


# --------------------------------------------------------------------- Rookery


class RssSampler:
    """The worker's VmRSS every RSS_SAMPLE_SECONDS, with wall-clock times, in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float]] = []  # (time.time(), kB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.time(), proc_status_kb(self.pid, "VmRSS")))
            except (OSError, BenchError):
                return
            self._stop.wait(RSS_SAMPLE_SECONDS)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak_between(self, start: float, end: float) -> float | None:
        inside = [kb for at, kb in self.samples if start <= at <= end]
        return max(inside) if inside else None


@dataclass
class Phases:
    """Where a Rookery run's time went (seconds after it was created) and its memory."""

    run_id: int
    running: float
    first_device: float
    last_device: float
    final: float
    committed: float | None  # the worker's "committed" log line (the git commit's end)
    parallel: str  # the runner's "Dispatching ..." line
    rss_devices_mib: float | None = None  # highest sampled VmRSS while devices ran
    rss_ending_mib: float | None = None  # ... after the last device (finalize, commit)


class FleetRookery(Rookery):
    """fanout.py's Rookery side, with a fleet imported in one go and a store per worker."""

    def use_repo(self, path: Path) -> None:
        """The git store of the next worker started (a fresh one per size)."""
        self.repo = path
        self.commits = 0

    def register_fleet(self, rows: list[dict[str, Any]], prefix: str) -> RookeryJob:
        """Devices ``<prefix>-<name>`` imported as a CSV (tagged for the job and the
        fleet's credential), and a backup job over them."""
        from app.extensions import db
        from app.services import inventory, jobs

        fleet_tag = f"bench-{prefix}"
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["name", "host", "port", "platform", "tags"])
        for row in rows:
            writer.writerow(
                [
                    f"{prefix}-{row['name']}",
                    row["host"],
                    row["port"],
                    row["platform"],
                    f"{fleet_tag};{LOGIN_TAG}",
                ]
            )
        report = inventory.import_csv(out.getvalue(), actor="bench")
        if not report.ok or report.created != len(rows):
            first = report.errors[0] if report.errors else None
            raise BenchError(
                f"importing {len(rows)} devices created {report.created}"
                + (f"; first error: {first}" if first else "")
            )
        job = jobs.create_job(
            name=f"bench-backup-{prefix}",
            job_type="config_backup",
            target_tags=[fleet_tag],
            max_parallel=min(self.args.concurrency, JOB_MAX_PARALLEL),
            max_retries=0,
            timeout_seconds=int(self.args.timeout),
            actor="bench",
        )
        registered = RookeryJob(job.id, len(rows))
        db.session.remove()
        return registered

    def run_sampled(self, job: RookeryJob) -> tuple[Measure, Phases]:
        """``run`` with the worker's RSS sampled; the run's phases from its rows and log."""
        assert self.worker is not None
        with RssSampler(self.worker.process.pid) as sampler:
            measure = self.run(job)
        phases = self.phases(job)
        created = self._created_at(phases.run_id)
        last = created + phases.last_device
        peak_devices = sampler.peak_between(created, last)
        peak_ending = sampler.peak_between(last, created + phases.final + 1)
        phases.rss_devices_mib = None if peak_devices is None else peak_devices / 1024
        phases.rss_ending_mib = None if peak_ending is None else peak_ending / 1024
        return measure, phases

    def _created_at(self, run_id: int) -> float:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return float(
                conn.execute(
                    "SELECT extract(epoch FROM created_at) FROM job_runs WHERE id = %s", (run_id,)
                ).fetchone()[0]
            )

    def phases(self, job: RookeryJob) -> Phases:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT r.id, extract(epoch FROM r.created_at),"
                " extract(epoch FROM r.started_at - r.created_at),"
                " extract(epoch FROM min(d.started_at) - r.created_at),"
                " extract(epoch FROM max(d.finished_at) - r.created_at),"
                " extract(epoch FROM r.finished_at - r.created_at)"
                " FROM job_runs r JOIN device_results d ON d.run_id = r.id"
                " WHERE r.id = (SELECT max(id) FROM job_runs WHERE job_id = %s)"
                " GROUP BY r.id",
                (job.job_id,),
            ).fetchone()
            if row is None or None in row:
                raise BenchError(f"job {job.job_id}'s run has no timestamps")
            run_id = int(row[0])
            dispatching = conn.execute(
                "SELECT message FROM job_logs WHERE run_id = %s AND message LIKE 'Dispatching %%'"
                " ORDER BY id LIMIT 1",
                (run_id,),
            ).fetchone()
        created = float(row[1])
        running, first, last, final = (float(v) for v in row[2:])
        committed = self._committed_at(run_id)
        return Phases(
            run_id=run_id,
            running=running,
            first_device=first,
            last_device=last,
            final=final,
            committed=None if committed is None else committed - created,
            parallel=dispatching[0] if dispatching else "",
        )

    def _committed_at(self, run_id: int) -> float | None:
        """When the worker logged "run <id> committed" (config_store's INFO line)."""
        assert self.worker is not None
        marker = f": run {run_id} committed "
        try:
            lines = self.worker.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return None
        for line in lines:
            if marker in line:
                stamp = " ".join(line.split()[:2])  # "2024-03-04 10:15:03,123"
                try:
                    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
                except ValueError:
                    return None
        return None

    def commit_files(self) -> list[str]:
        """The files of the store's last commit (the measured run's)."""
        return subprocess.run(
            ["git", "-C", str(self.repo), "show", "--name-only", "--format=", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()


# ------------------------------------------------------------------------- git


@dataclass
class GitTiming:
    seconds: float
    files: int
    megabytes: float


def time_git_commit(source: Path, files: list[str], store_path: Path) -> GitTiming:
    """Commit ``files`` (read from ``source``'s working tree) in one ``commit_run`` of a
    fresh store that already holds one commit, in this process; the commit alone timed."""
    from app.config_store import SUFFIX, GitConfigStore

    configs = {name.removesuffix(SUFFIX): (source / name).read_text() for name in files}
    store = GitConfigStore(store_path)
    store.commit_run(run_id=1, job_name="warm-up", configs={"warm-up": "hostname warm-up\n"})
    started = time.perf_counter()
    result = store.commit_run(run_id=2, job_name="bench-fleet", configs=configs)
    seconds = time.perf_counter() - started
    if result.sha is None or len(result.changed) != len(configs):
        raise BenchError(
            f"the git timing's commit changed {len(result.changed)} of {len(configs)} files"
        )
    size = sum(len(text.encode()) for text in configs.values()) / 1e6
    return GitTiming(seconds, len(configs), size)


# --------------------------------------------------------------------- per size


@dataclass
class SizeResult:
    size: int
    bare: list[Measure] = field(default_factory=list)
    rookery: list[Measure] = field(default_factory=list)
    phases: list[Phases] = field(default_factory=list)
    git: list[GitTiming] = field(default_factory=list)
    register_seconds: float = 0.0
    worker_start_seconds: float = 0.0
    warmup_seconds: float = 0.0
    warm_rss_kb: float = 0.0  # VmHWM after the worker's warm-up run
    peak_rss_kb: float = 0.0  # VmHWM after all its runs

    @staticmethod
    def best(measures: list[Measure]) -> Measure:
        return min(measures, key=lambda m: m.seconds)


def measure_size(
    size: int,
    args: argparse.Namespace,
    tmp: Path,
    lab: Lab,
    rookery: FleetRookery,
    workers: Workers,
) -> SizeResult:
    result = SizeResult(size)
    started = time.monotonic()
    warm_job = rookery.register_fleet(lab.rows[:1], f"warm{size}")
    fleets = [
        rookery.register_fleet(lab.rows[:size], f"n{size}r{number}")
        for number in range(1, args.rounds + 1)
    ]
    result.register_seconds = time.monotonic() - started
    say(f"  {size}: {args.rounds} fleet(s) of {size} imported in {result.register_seconds:.1f}s")
    rookery.use_repo(tmp / f"configs-{size}")
    rookery.start_worker()
    result.worker_start_seconds = rookery.started_seconds
    assert rookery.worker is not None
    warm = rookery.run(warm_job)
    if warm.ok != 1:
        raise BenchError(f"the worker's first run failed: {warm.first_error}")
    result.warmup_seconds = warm.seconds
    result.warm_rss_kb = rookery.peak_rss_kb()
    bare_lab = sized_lab(lab, size, tmp)
    for number, job in enumerate(fleets, 1):
        sides = ["bare", "rookery"] if number % 2 else ["rookery", "bare"]
        for side in sides:
            if side == "bare":
                measure = run_client("bare", bare_lab, tmp, f"{size}-{number}", rookery.args)
                shutil.rmtree(tmp / f"bare-{size}-{number}", ignore_errors=True)
                result.bare.append(measure)
                say(
                    f"  {size} round {number}: bare netmiko {measure.seconds:.1f}s, "
                    f"{measure.ok}/{size} backed up"
                )
            else:
                measure, phases = rookery.run_sampled(job)
                result.rookery.append(measure)
                result.phases.append(phases)
                say(
                    f"  {size} round {number}: Rookery {measure.seconds:.1f}s, "
                    f"{measure.ok}/{size} backed up ({describe_phases(phases)})"
                )
                if measure.ok:
                    files = rookery.commit_files()
                    store = tmp / f"git-{size}-{number}"
                    result.git.append(time_git_commit(rookery.repo, files, store))
                    shutil.rmtree(store, ignore_errors=True)
    result.peak_rss_kb = rookery.peak_rss_kb()
    workers.stop(rookery.worker)
    shutil.rmtree(rookery.repo, ignore_errors=True)
    return result


def describe_phases(p: Phases) -> str:
    committed = "" if p.committed is None else f", committed +{p.committed:.1f}"
    return (
        f"running +{p.running:.2f}, first device +{p.first_device:.2f}, "
        f"last device done +{p.last_device:.1f}{committed}, final +{p.final:.1f} s"
    )


# ---------------------------------------------------------------------- report


def figure(name: str, value: float, pattern: str) -> dict[str, Any]:
    rounded = round(value, 3)
    target = TARGETS[pattern]
    return {
        "bench": BENCH,
        "figure": name,
        "value": rounded,
        "target": target,
        "pass": True if target is None else rounded <= target,
    }


def _mib(kb: float | None) -> str:
    return "" if kb is None else f"{kb / 1024:.0f}"


def figures_of(results: dict[int, SizeResult]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    base = results.get(BASE_SIZE)
    for size, r in results.items():
        if r.bare and r.rookery:
            ratio = SizeResult.best(r.rookery).seconds / SizeResult.best(r.bare).seconds
            out.append(figure(f"rookery_vs_bare_{size}", ratio, "rookery_vs_bare_{n}"))
    if base is not None and base.rookery:
        base_cost = SizeResult.best(base.rookery).seconds / BASE_SIZE
        for size, r in results.items():
            if size > BASE_SIZE and r.rookery:
                cost = SizeResult.best(r.rookery).seconds / size
                out.append(
                    figure(
                        f"per_device_cost_{size}_vs_1000",
                        cost / base_cost,
                        "per_device_cost_{n}_vs_1000",
                    )
                )
    if base is not None and RSS_SIZE in results:
        name = f"rss_{RSS_SIZE}_vs_{BASE_SIZE}"
        out.append(figure(name, results[RSS_SIZE].peak_rss_kb / base.peak_rss_kb, name))
    largest = max(results)
    if results[largest].git:
        seconds = min(g.seconds for g in results[largest].git)
        out.append(figure(f"git_commit_seconds_{largest}", seconds, "git_commit_seconds_{n}"))
    if base is not None and base.git:
        base_file = min(g.seconds for g in base.git) / BASE_SIZE
        for size, r in results.items():
            if size > BASE_SIZE and r.git:
                per_file = min(g.seconds for g in r.git) / size
                out.append(
                    figure(
                        f"git_commit_per_file_{size}_vs_1000",
                        per_file / base_file,
                        "git_commit_per_file_{n}_vs_1000",
                    )
                )
    return out


def report(
    args: argparse.Namespace, results: dict[int, SizeResult], notes: dict[str, Any]
) -> list[dict[str, Any]]:
    rows: list[tuple[str, ...]] = [
        ("devices", "side", "wall s", "ms/device", "backed up", "CPU s", "peak RSS MiB", "failures")
    ]
    for size, r in results.items():
        for side, measures in (("bare netmiko", r.bare), ("Rookery", r.rookery)):
            if not measures:
                continue
            m = SizeResult.best(measures)
            rss = m.peak_rss_kb if side != "Rookery" else r.peak_rss_kb
            rows.append(
                (
                    str(size) if side == "bare netmiko" else "",
                    side,
                    f"{m.seconds:.1f}",
                    f"{1000 * m.seconds / size:.2f}",
                    f"{m.ok}/{m.total}",
                    "" if m.cpu_seconds is None else f"{m.cpu_seconds:.1f}",
                    _mib(rss),
                    ", ".join(f"{c} {n}" for n, c in sorted(m.errors.items())),
                )
            )
    say()
    rounds = f"best of {args.rounds} round(s)" if args.rounds > 1 else "one round"
    say(
        f"  fast emulator, configs {notes['config_sizes']}; {args.sessions} sessions at once "
        f"for the bare script; Rookery: a worker per size (--concurrency 2, "
        f"ROOKERY_WORKER_DEVICE_LIMIT={args.sessions}), job max_parallel "
        f"{min(args.sessions, JOB_MAX_PARALLEL)}; {rounds}"
    )
    print_table(rows)
    say()
    git_rows: list[tuple[str, ...]] = [
        (
            "devices",
            "devices s",
            "last device → committed s",
            "→ final s",
            "RSS devices / ending MiB",
            "git commit s",
            "ms/file",
            "MB",
        )
    ]
    for size, r in results.items():
        if not r.phases:
            continue
        p = min(r.phases, key=lambda x: x.final)
        g = min(r.git, key=lambda x: x.seconds) if r.git else None
        git_rows.append(
            (
                str(size),
                f"{p.last_device - p.first_device:.1f}",
                "" if p.committed is None else f"{p.committed - p.last_device:.2f}",
                f"{p.final - (p.committed or p.last_device):.2f}",
                f"{p.rss_devices_mib or 0:.0f} / {p.rss_ending_mib or 0:.0f}",
                "" if g is None else f"{g.seconds:.2f}",
                "" if g is None else f"{1000 * g.seconds / g.files:.3f}",
                "" if g is None else f"{g.megabytes:.0f}",
            )
        )
    say("  Rookery's run, phase by phase (its rows and the worker's log), and the git commit")
    say("  of its files timed alone (GitConfigStore.commit_run in this process, fresh store):")
    print_table(git_rows)
    for size, r in results.items():
        say(
            f"  {size}: imported in {r.register_seconds:.1f}s; worker registered "
            f"{r.worker_start_seconds:.1f}s after spawn, untimed first run "
            f"{r.warmup_seconds:.2f}s, VmHWM after it {_mib(r.warm_rss_kb)} MiB; "
            + (f"runner: {r.phases[0].parallel}" if r.phases else "")
        )
        for side, measures in (("bare", r.bare), ("Rookery", r.rookery)):
            for m in measures:
                if m.errors:
                    say(f"  FAILURES {size} {side}: {m.errors}; first: {m.first_error}")
    say(
        f"  set-up: {notes['capacity']}; emulator with {notes['devices']} devices started "
        f"in {notes['lab_seconds']:.1f}s; database {notes['database']}"
    )
    figures = figures_of(results)
    say()
    say("  figure                              value  target")
    for item in figures:
        if item["target"] is None:
            say(f"  {item['figure']:<34} {item['value']:>7.3f}  (reported)")
        else:
            verdict = "pass" if item["pass"] else "MISS"
            say(f"  {item['figure']:<34} {item['value']:>7.3f}  <= {item['target']:<4}  {verdict}")
    say()
    return figures


# ------------------------------------------------------------------------ main


def _dispose(app: Any) -> None:
    from app.extensions import db

    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def config_sizes(rows: list[dict[str, Any]], sizes: list[int]) -> str:
    """What the largest fleet's devices print (made here as the emulator makes them)."""
    from _fastssh import FleetConfigs

    configs = FleetConfigs(SEED)
    lengths = sorted(len(configs.config(row["name"])) for row in rows[: max(sizes)])
    lines = sum(configs.config(row["name"]).count("\n") for row in rows[:200]) / min(200, len(rows))
    mean = sum(lengths) / len(lengths)
    return (
        f"{lengths[0] / 1000:.0f}-{lengths[-1] / 1000:.0f} KB, mean {mean / 1000:.0f} KB "
        f"(~{lines:.0f} lines), {sum(lengths) / 1e6:.0f} MB for {len(lengths)} devices"
    )


def run(
    args: argparse.Namespace, tmp: Path, workers: Workers, processes: FleetProcesses
) -> list[dict[str, Any]]:
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db
    from app.services import credentials

    sizes: list[int] = args.sizes
    largest = max(sizes)
    say(
        f"Rookery fleet benchmark: {', '.join(map(str, sizes))} devices, {args.sessions} "
        f"sessions, {args.rounds} round(s)"
    )
    notes: dict[str, Any] = {"devices": largest, "capacity": check_capacity(largest, args.sessions)}
    setup_started = time.monotonic()
    app_log_to_file(tmp / "bench-app.log")
    bench_db = open_database(tmp)
    cleanup.append(bench_db.drop)
    app = create_app({"DATABASE_URL": bench_db.uri, "ROOKERY_INSTANCE": str(tmp / "instance")})
    cleanup.append(lambda: _dispose(app))
    results: dict[int, SizeResult] = {}
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
        db.session.remove()
        notes["database"] = (
            f"{bench_db.kind} PostgreSQL, migrated in {time.monotonic() - setup_started:.1f}s"
        )
        say(f"  database: {notes['database']}")
        say(f"  emulator: starting {largest} devices ...")
        lab = processes.start_fleet(largest, tmp, args.timeout)
        notes["lab_seconds"] = lab.started_seconds
        notes["config_sizes"] = config_sizes(lab.rows, sizes)
        say(f"  emulator: {largest} devices in {lab.started_seconds:.1f}s; {notes['config_sizes']}")
        credentials.create_credential(
            name="fleet-login",
            username=FLEET_USERNAME,
            password=shared_password(SEED),
            tags=[LOGIN_TAG],
            actor="bench",
        )
        db.session.remove()
        rookery = FleetRookery(
            argparse.Namespace(
                concurrency=args.sessions, read_timeout=args.read_timeout, timeout=args.timeout
            ),
            tmp,
            bench_db.uri,
            app.config["ROOKERY_PG_DSN"],
            workers,
        )
        for size in sizes:
            results[size] = measure_size(size, args, tmp, lab, rookery, workers)
        processes.stop_lab(lab)
    return report(args, results, notes)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes must be at least 1")
    return sorted(set(sizes))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=list(DEFAULT_SIZES),
        help="fleet sizes, comma-separated (default 1000,5000,10000); the figures compare "
        "each with 1000",
    )
    parser.add_argument(
        "--sessions",
        type=int,
        default=DEFAULT_SESSIONS,
        help=f"devices at once (default {DEFAULT_SESSIONS}): the bare script's threads and "
        f"the worker's device limit; a job takes at most {JOB_MAX_PARALLEL}",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        help=f"measurements per size, best kept (default {DEFAULT_ROUNDS})",
    )
    parser.add_argument(
        "--read-timeout",
        type=float,
        default=DEFAULT_READ_TIMEOUT,
        help=f"seconds a device may take to answer, both sides (default {DEFAULT_READ_TIMEOUT})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds a process may take to start, or a side to back a fleet up "
        f"(default {DEFAULT_TIMEOUT:g}; at most 7200, a job's longest timeout)",
    )
    args = parser.parse_args(argv)
    if min(args.sessions, args.rounds) < 1:
        parser.error("--sessions and --rounds must be at least 1")
    if not 1 <= args.timeout <= 7200:
        parser.error("--timeout is between 1 and 7200 seconds")

    import importlib.util

    missing = [name for name in ("netmiko", "asyncssh") if importlib.util.find_spec(name) is None]
    if missing:
        say(
            f"Benchmark failed: not installed: {', '.join(missing)} "
            f"(pip install {' '.join(missing)})"
        )
        return 1
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return run_guarded(
        "rookery-bench-fleet-",
        lambda tmp, stoppers: run(args, tmp, stoppers[0], stoppers[1]),
        [Workers(), FleetProcesses()],
    )


if __name__ == "__main__":
    sys.exit(main())
