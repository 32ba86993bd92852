"""Prometheus metrics, computed from PostgreSQL at scrape time.

Every figure is read from the database when ``/metrics`` is scraped, by a custom
collector: nothing is counted in process memory, so any web process answers for the
whole cluster (all web processes, all workers) and a restart loses nothing. Each
scrape costs a handful of set-based queries; scrape every 15 s or slower.

Families (all gauges describe the rows present now, so retention bounds them):

- ``rookery_runs{job_type,status}`` — runs by job type and status;
- ``rookery_run_duration_seconds{job_type}`` — histogram of finished runs' durations
  (buckets counted in SQL);
- ``rookery_queue_depth{priority}`` — due queue entries (procrastinate 'todo') by priority,
  and ``rookery_queue_lag_seconds`` — how long the oldest due entry has waited;
- ``rookery_workers_alive`` and ``rookery_workers_concurrency`` — live workers (recent
  heartbeat) and the run slots they offer;
- ``rookery_device_results{status}`` — per-device results by outcome;
- ``rookery_credential_failures_total`` / ``rookery_credential_successes_total`` —
  authentication outcomes summed over all credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import text

from app.engine import reconciler
from app.extensions import db
from app.models import ACTIVE_STATUSES
from app.services import stats

logger = logging.getLogger(__name__)

#: upper bounds (seconds) of the run duration histogram's buckets
DURATION_BUCKETS: tuple[float, ...] = (
    0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200,
)  # fmt: skip

_FINISHED = "status NOT IN ({})".format(
    ", ".join(f"'{status.value}'" for status in sorted(ACTIVE_STATUSES))
)


def _duration_query() -> str:
    buckets = ", ".join(
        f"count(*) FILTER (WHERE duration_ms <= {int(bound * 1000)}) AS b{i}"
        for i, bound in enumerate(DURATION_BUCKETS)
    )
    return (
        f"SELECT job_type, {buckets}, count(*) AS total, "
        "coalesce(sum(duration_ms), 0) AS sum_ms FROM job_runs "
        f"WHERE duration_ms IS NOT NULL AND {_FINISHED} GROUP BY job_type ORDER BY job_type"
    )


_DURATIONS = text(_duration_query())
_RUNS = text(
    "SELECT job_type, status, count(*) AS runs FROM job_runs "
    "GROUP BY job_type, status ORDER BY job_type, status"
)
_RESULTS = text(
    "SELECT status, count(*) AS results FROM device_results GROUP BY status ORDER BY status"
)
_CREDENTIALS = text(
    "SELECT coalesce(sum(failure_count), 0) AS failures, "
    "coalesce(sum(success_count), 0) AS successes FROM credentials"
)


def _bound(value: float) -> str:
    return f"{value:g}" if value != int(value) else f"{int(value)}.0"


class RookeryCollector(Collector):
    """Reads every figure from the database on each ``collect()`` (in an app context)."""

    def collect(self) -> Iterator[Metric]:
        session = db.session
        runs = GaugeMetricFamily(
            "rookery_runs", "Runs by job type and status.", labels=["job_type", "status"]
        )
        for row in session.execute(_RUNS):
            runs.add_metric([row.job_type, row.status], row.runs)
        yield runs

        durations = HistogramMetricFamily(
            "rookery_run_duration_seconds",
            "Durations of finished runs (first start to final status).",
            labels=["job_type"],
        )
        for row in session.execute(_DURATIONS):
            counts = [getattr(row, f"b{i}") for i in range(len(DURATION_BUCKETS))]
            buckets = [(_bound(b), c) for b, c in zip(DURATION_BUCKETS, counts, strict=True)]
            buckets.append(("+Inf", row.total))
            durations.add_metric([row.job_type], buckets, float(row.sum_ms) / 1000.0)
        yield durations

        now = stats.db_now()
        queue = stats.queue_summary(now)
        depth = GaugeMetricFamily(
            "rookery_queue_depth",
            "Queue entries due and waiting for a worker, by priority.",
            labels=["priority"],
        )
        for item in queue["by_priority"]:
            depth.add_metric([str(item["priority"])], item["jobs"])
        yield depth
        yield GaugeMetricFamily(
            "rookery_queue_lag_seconds",
            "How long the oldest due queue entry has waited.",
            value=queue["lag_seconds"],
        )

        workers = stats.workers_alive()
        yield GaugeMetricFamily(
            "rookery_workers_alive", "Workers with a recent heartbeat.", value=workers["alive"]
        )
        yield GaugeMetricFamily(
            "rookery_workers_concurrency",
            "Run slots offered by the live workers.",
            value=workers["concurrency"],
        )

        results = GaugeMetricFamily(
            "rookery_device_results", "Per-device results by outcome.", labels=["status"]
        )
        for row in session.execute(_RESULTS):
            results.add_metric([row.status], row.results)
        yield results

        credentials = session.execute(_CREDENTIALS).one()
        yield CounterMetricFamily(
            "rookery_credential_failures",
            "Authentication failures, summed over all credentials.",
            value=credentials.failures,
        )
        yield CounterMetricFamily(
            "rookery_credential_successes",
            "Successful logins, summed over all credentials.",
            value=credentials.successes,
        )
        repairs = CounterMetricFamily(
            "rookery_reconciler_repairs",
            "Divergences between runs and their queue jobs or workers the reconciler "
            "repaired, by kind.",
            labels=["repair"],
        )
        state = reconciler.state()
        for kind, count in sorted(state["repairs"].items()):
            repairs.add_metric([kind], int(count))
        yield repairs
        last = state["last_run_at"]
        yield GaugeMetricFamily(
            "rookery_reconciler_last_run_timestamp_seconds",
            "When the reconciler last went over the runs (Unix time; 0: never).",
            value=last.timestamp() if last else 0.0,
        )
        failing = GaugeMetricFamily(
            "rookery_compliance_failing_devices",
            "Devices failing each compliance rule, by rule and severity.",
            labels=["rule", "severity"],
        )
        # here, not at the top: a worker serves metrics too and loads the rule engine
        # (hier_config, pydantic) only when its first backup checks a config
        from app.services import compliance

        for rule, severity, count in compliance.failing_counts():
            failing.add_metric([rule, severity], count)
        yield failing
        session.rollback()  # end the read-only transaction


def render() -> bytes:
    """The Prometheus text exposition of every Rookery metric (needs an app context)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RookeryCollector())
    return generate_latest(registry)
