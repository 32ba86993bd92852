"""A worker process: procrastinate's worker, kept alive across PostgreSQL restarts.

procrastinate's worker stops when its database goes away (a failed heartbeat or
listener ends it). ``serve`` runs it again once PostgreSQL answers, with backoff,
until a signal asks it to stop. On the first SIGINT/SIGTERM the worker stops taking
runs, lets those in flight finish within the grace period, then aborts them (an
abort at shutdown is retried by another worker); a second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import signal
import time
from typing import Any

import psycopg

from app.engine import queue

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 30
HEALTHY_LIFE_SECONDS = 60
#: seconds between the worker's own full garbage collections, at least
GC_SECONDS = 5.0
#: ... and at least this many times as long as the last collection took
GC_SHARE = 50


async def _database_answers() -> bool:
    try:
        conn = await psycopg.AsyncConnection.connect(queue.conninfo(), connect_timeout=5)
    except (psycopg.Error, OSError):
        return False
    await conn.close()
    return True


async def _one_life(options: dict[str, Any]) -> None:
    try:
        await queue.queue_app.open_async()
        await queue.queue_app.run_worker_async(install_signal_handlers=False, **options)
    finally:
        # Also when a stop signal lands while the pool is still opening: an unclosed
        # pool would keep the process from exiting.
        await queue.queue_app.close_async()


async def serve(**options: Any) -> int:
    """Run the worker until a signal; return the process exit code."""
    # What start-up built (modules, the app, the job registry) lives as long as the
    # process: out of the collector's sight, a full collection stays cheap and comes
    # soon enough to return each run's garbage (SSH sessions, sessions' rows form
    # cycles), instead of letting it pile up behind ~half a million old objects.
    gc.freeze()
    _few_malloc_arenas()
    collector = asyncio.create_task(_collect_garbage())
    pusher = asyncio.create_task(_retry_failed_pushes())
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    current: dict[str, asyncio.Task[None] | None] = {"task": None}

    def on_signal(signum: int) -> None:
        if stopping.is_set():
            logger.warning("Second stop signal: exiting now without waiting for runs")
            os._exit(128 + signum)
        logger.info("Stop requested (%s): finishing runs in flight", signal.Signals(signum).name)
        stopping.set()
        task = current["task"]
        if task is not None:
            task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)

    backoff = 1.0
    while not stopping.is_set():
        born = loop.time()
        task = asyncio.create_task(_one_life(options))
        current["task"] = task
        try:
            await task
            failure = "the worker stopped"
        except asyncio.CancelledError:
            if stopping.is_set():
                break
            raise
        except Exception as exc:
            failure = f"{type(exc).__name__}: {exc}"
        finally:
            current["task"] = None
        if stopping.is_set():
            break
        if loop.time() - born > HEALTHY_LIFE_SECONDS:
            backoff = 1.0  # it ran well for a while: this is a new trouble
        logger.warning("Worker lost PostgreSQL (%s); reconnecting in %gs", failure, backoff)
        # Always wait before the next life, even if PostgreSQL answers: a worker that
        # keeps failing for another reason must not spin.
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            if await _database_answers():
                break
    collector.cancel()
    pusher.cancel()
    logger.info("Worker stopped")
    return 0


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols: libc's among them
    except OSError:
        return None
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
        return None  # not glibc
    return libc


_LIBC = _glibc()
#: glibc's mallopt parameter M_ARENA_MAX
_M_ARENA_MAX = -8
MALLOC_ARENAS = 2


def _few_malloc_arenas() -> None:
    """At most MALLOC_ARENAS malloc arenas (glibc; elsewhere nothing changes).

    glibc gives threads that allocate at once arenas of their own, up to eight per
    core. A run's device threads each read a config of tens of KB (a malloc'd bytes
    object, too big for Python's own allocator): freed, those blocks stay scattered
    over many arenas, and the worker's resident memory grew with the fleet (about
    35 KB per device of a 10,000-device run). Python holds the GIL while it allocates,
    so more arenas buy no speed here.
    """
    if _LIBC is not None:
        _LIBC.mallopt(_M_ARENA_MAX, MALLOC_ARENAS)


async def _collect_garbage() -> None:
    """A full collection every few seconds: each run's cyclic garbage goes back soon.

    Left to the interpreter's thresholds, a worker's peak memory crept up by a few MiB
    per run over its first runs. With start-up frozen, a collection walks only what
    the runs in flight built: a few ms under the GIL for a run of a hundred devices,
    but a run of 10,000 builds millions of objects, and a collection every 5 s then
    took a third of the worker's time. So the pause after a collection grows with what
    it cost: the collector never holds the GIL more than 1/GC_SHARE of the time.
    """
    while True:
        started = time.perf_counter()
        found = gc.collect()
        if _LIBC is not None:
            _LIBC.malloc_trim(0)  # what the runs freed goes back to the system
        took = time.perf_counter() - started
        logger.debug("gc: %d unreachable in %.1f ms", found, 1000 * took)
        await asyncio.sleep(max(GC_SECONDS, took * GC_SHARE))


async def _retry_failed_pushes() -> None:
    """Every ROOKERY_CONFIG_PUSH_RETRY_SECONDS: push the config store's commits that a
    failed push left behind (a warning on the run; /health shows it until then)."""
    app = queue.flask_app()
    if not app.config.get("ROOKERY_CONFIG_REMOTE"):
        return
    while True:
        await asyncio.sleep(app.config["ROOKERY_CONFIG_PUSH_RETRY_SECONDS"])
        try:
            await asyncio.to_thread(_retry_push_once, app)
        except Exception as exc:  # the database is away, say: the next round may work
            logger.warning("Retrying the config store's push failed: %s", exc)


def _retry_push_once(app: Any) -> None:
    from app import config_store
    from app.extensions import db

    with app.app_context():
        try:
            config_store.retry_failed_push(app, db.session)
        finally:
            db.session.remove()
