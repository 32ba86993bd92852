"""Live updates: PostgreSQL NOTIFY → one LISTEN connection per web process → SSE clients.

Writers announce their rows from triggers, in the writer's transaction, ids only
(migrations/versions/0005_notify_triggers.py): ``rookery_run`` (a run was inserted or
its status or progress changed: run_id, status, done, total), ``rookery_event`` (id,
run_id, type) and ``rookery_log`` (id, run_id, level). NOTIFY payloads are capped at
8000 bytes, so listeners read the rows themselves.

:class:`LiveHub` is that listener, one per web process. Its thread holds the only
LISTEN connection, reads the rows a batch of notifications names in one query per
table *on that same connection*, and hands the row data to every subscriber that
watches the run. An SSE client therefore holds no database connection at all while
it waits: the process needs its pool plus one connection however many people watch.
A subscriber whose queue overflows, or every subscriber after the LISTEN connection
was lost, gets a ``resync`` message: its stream ends and the browser reconnects with
``Last-Event-ID``, which the stream answers from the database (see :class:`Cursor`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from flask import Flask
from psycopg.rows import dict_row

logger = logging.getLogger(__name__)

RUN_CHANNEL = "rookery_run"
EVENT_CHANNEL = "rookery_event"
LOG_CHANNEL = "rookery_log"
CHANNELS = (RUN_CHANNEL, EVENT_CHANNEL, LOG_CHANNEL)

#: how the hub's connection shows in pg_stat_activity
APPLICATION_NAME = "rookery-live"
#: messages a slow subscriber may have waiting before it is told to resync
QUEUE_LIMIT = 5000
#: how long the listener stays connected with nobody watching
IDLE_SECONDS = 30.0
#: kinds of message a subscriber can ask for
KINDS = frozenset({"run", "log", "event", "result"})


@dataclass(frozen=True)
class Cursor:
    """How far a stream has got, as the SSE ``id:`` field: ``<log>.<event>.<result>``.

    A reconnecting browser sends it back as ``Last-Event-ID``; the stream then reads
    every row with a larger id from the database before it goes live again.
    """

    log: int = 0
    event: int = 0
    result: int = 0

    def __str__(self) -> str:
        return f"{self.log}.{self.event}.{self.result}"

    @classmethod
    def parse(cls, text: str | None) -> Cursor | None:
        """The cursor a browser sent back, or None when it sent nothing usable."""
        if not text:
            return None
        try:
            log, event, result = (int(part) for part in text.strip().split("."))
        except ValueError:
            return None
        if min(log, event, result) < 0:
            return None
        return cls(log, event, result)

    def advanced(self, message: Message) -> Cursor:
        if message.kind == "log":
            return Cursor(max(self.log, message.id), self.event, self.result)
        if message.kind == "event":
            return Cursor(self.log, max(self.event, message.id), self.result)
        if message.kind == "result":
            return Cursor(self.log, self.event, max(self.result, message.id))
        return self

    def has_seen(self, message: Message) -> bool:
        """True for a row this cursor already covers (a live copy of a caught-up row)."""
        seen = {"log": self.log, "event": self.event, "result": self.result}.get(message.kind)
        return seen is not None and message.id <= seen


@dataclass
class Message:
    """One thing that happened: ``data`` is the row as a dict (or the run's new state)."""

    kind: str
    run_id: int | None
    id: int
    data: dict[str, Any]
    #: when the hub heard of it (time.monotonic), for latency figures
    heard_at: float = 0.0
    #: renderings shared by every subscriber (one HTML rendering for 200 viewers)
    cache: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def rendered(self, key: str, render: Any) -> Any:
        with self._lock:
            if key not in self.cache:
                self.cache[key] = render(self)
            return self.cache[key]


RESYNC = Message("resync", None, 0, {})


class Subscription:
    """One SSE client's mailbox: the hub puts, the client's thread takes."""

    def __init__(self, hub: LiveHub, run_id: int | None, kinds: Iterable[str]) -> None:
        self.hub = hub
        self.run_id = run_id
        self.kinds = frozenset(kinds) & KINDS
        #: the LISTEN session this mailbox started under (None: none was up yet)
        self.generation: int | None = None
        #: still waiting in subscribe() for the LISTEN: it reads the database after it
        self.waiting = True
        self._queue: deque[Message] = deque()
        self._cond = threading.Condition()
        self.closed = False

    def wants(self, message: Message) -> bool:
        if message.kind not in self.kinds:
            return False
        return self.run_id is None or message.run_id == self.run_id

    def put(self, message: Message) -> None:
        with self._cond:
            if len(self._queue) >= QUEUE_LIMIT:
                self._queue.clear()
                self._queue.append(RESYNC)
            else:
                self._queue.append(message)
            self._cond.notify()

    def get(self, timeout: float) -> list[Message]:
        """Every waiting message; waits up to ``timeout`` seconds for the first one."""
        with self._cond:
            if not self._queue:
                self._cond.wait(timeout)
            batch = list(self._queue)
            self._queue.clear()
            return batch

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.hub.unsubscribe(self)


class LiveHub:
    """The one LISTEN connection of this process, fanned out to its subscribers."""

    def __init__(self, dsn: str, *, reconnect_delay: float = 1.0) -> None:
        self.dsn = dsn
        self.reconnect_delay = reconnect_delay
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        #: per watched run, the largest device-result id already handed out
        self._result_cursor: dict[int, int] = {}
        self.connected = False
        self._lost = False
        #: counts LISTEN sessions; a reconnect resyncs mailboxes of older sessions
        self.generation = 0
        self.notifications = 0

    # -- subscribers ----------------------------------------------------------------

    def subscribe(
        self, run_id: int | None = None, kinds: Iterable[str] = KINDS, *, wait: float = 5.0
    ) -> Subscription:
        """Register a mailbox (``run_id`` None: every run); starts the listener if needed.

        Waits up to ``wait`` seconds for the LISTEN to be in place, so nothing committed
        after this call returns can be missed.
        """
        sub = Subscription(self, run_id, kinds)
        with self._lock:
            self._subs.add(sub)
            self._start_locked()
        ready = self._ready.wait(wait)
        with self._lock:
            sub.waiting = False
            sub.generation = self.generation if ready else None
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)
            watched = {s.run_id for s in self._subs}
            for run_id in list(self._result_cursor):
                if run_id not in watched:
                    del self._result_cursor[run_id]

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subs)

    def _start_locked(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._ready.clear()
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="rookery-live", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the listener thread --------------------------------------------------------

    def _run(self) -> None:
        delay = self.reconnect_delay
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self.dsn,
                    autocommit=True,
                    row_factory=dict_row,
                    application_name=APPLICATION_NAME,
                ) as conn:
                    for channel in CHANNELS:
                        conn.execute(f"LISTEN {channel}")
                    with self._lock:
                        self.generation += 1
                        stale = [
                            s
                            for s in self._subs
                            if not s.waiting and s.generation != self.generation
                        ]
                    if self._lost:
                        # Whoever read the database before this LISTEN may have missed rows.
                        for sub in stale:
                            sub.put(RESYNC)
                        self._lost = False
                    self.connected = True
                    self._ready.set()
                    delay = self.reconnect_delay
                    self._listen(conn)
            except psycopg.Error as exc:
                self.connected = False
                self._lost = True
                self._ready.clear()
                self._broadcast(RESYNC)
                logger.warning("Live updates: listener lost PostgreSQL (%s); reconnecting", exc)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
            if self._retire_if_idle():
                return
        self.connected = False

    def _retire_if_idle(self) -> bool:
        """Nobody watches: end the thread and free the connection (subscribe restarts it)."""
        with self._lock:
            if self._subs and not self._stop.is_set():
                return False
            self._thread = None
            self.connected = False
            self._ready.clear()
            return True

    def _listen(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        idle_since = time.monotonic()
        while not self._stop.is_set():
            batch = list(conn.notifies(timeout=1.0, stop_after=1))
            if self.subscriber_count == 0:
                if time.monotonic() - idle_since > IDLE_SECONDS:
                    return
                continue
            idle_since = time.monotonic()
            if not batch:
                continue
            heard = time.monotonic()
            self.notifications += len(batch)
            self._dispatch(conn, batch, heard)

    def _dispatch(self, conn: psycopg.Connection[Any], batch: list[Any], heard: float) -> None:
        with self._lock:
            subs = list(self._subs)
        watched = {s.run_id for s in subs}
        everything = None in watched
        log_ids: list[int] = []
        event_ids: list[int] = []
        runs: dict[int, dict[str, Any]] = {}
        for notify in batch:
            try:
                payload = json.loads(notify.payload)
            except ValueError:
                continue
            run_id = payload.get("run_id")
            if not everything and run_id not in watched:
                continue
            if notify.channel == LOG_CHANNEL:
                log_ids.append(int(payload["id"]))
            elif notify.channel == EVENT_CHANNEL:
                event_ids.append(int(payload["id"]))
            elif notify.channel == RUN_CHANNEL and run_id is not None:
                runs[int(run_id)] = payload
        # Logs and events first, the run's new state last: a final status ends an API
        # stream, which must have sent the rows of the same transaction before it.
        messages: list[Message] = []
        if log_ids:
            messages.extend(
                Message("log", row["run_id"], row["id"], row, heard)
                for row in conn.execute(LOG_ROWS, (log_ids,))
            )
        if event_ids:
            messages.extend(
                Message("event", row["run_id"], row["id"], row, heard)
                for row in conn.execute(EVENT_ROWS, (event_ids,))
            )
        if runs:
            messages.extend(self._run_messages(conn, runs, watched, heard))
        for message in messages:
            for sub in subs:
                if sub.wants(message):
                    sub.put(message)

    def _run_messages(
        self,
        conn: psycopg.Connection[Any],
        runs: dict[int, dict[str, Any]],
        watched: set[int | None],
        heard: float,
    ) -> list[Message]:
        ids = sorted(runs)
        rows = {row["id"]: row for row in conn.execute(RUN_ROWS, (ids,))}
        states = [Message("run", i, i, rows[i], heard) for i in ids if i in rows]
        messages: list[Message] = []
        # New device results: only for runs someone watches by id (run pages).
        detail = [i for i in ids if i in watched]
        if detail:
            with self._lock:
                after = [self._result_cursor.get(i, 0) for i in detail]
            for row in conn.execute(RESULT_ROWS, (detail, after)):
                messages.append(Message("result", row["run_id"], row["id"], row, heard))
                with self._lock:
                    if row["run_id"] in {s.run_id for s in self._subs}:
                        self._result_cursor[row["run_id"]] = max(
                            self._result_cursor.get(row["run_id"], 0), row["id"]
                        )
        return messages + states

    def _broadcast(self, message: Message) -> None:
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub.put(message)


LOG_ROWS = """
    SELECT l.id, l.at, l.level, l.log_type, l.source, l.message, l.meta, l.run_id,
           l.job_id, l.job_type, l.device_id, d.name AS device_name
    FROM job_logs l LEFT JOIN devices d ON d.id = l.device_id
    WHERE l.id = ANY(%s) ORDER BY l.id
"""
EVENT_ROWS = """
    SELECT id, at, type, status, message, run_id, job_id, actor, exception, data,
           pre_data, post_data, result, signal_id
    FROM events WHERE id = ANY(%s) ORDER BY id
"""
RUN_ROWS = """
    SELECT id, job_id, job_name, job_type, status, attempt, max_attempts, priority,
           progress_done, progress_total, created_at, queued_at, scheduled_at, started_at,
           finished_at, duration_ms, message, error, triggered_by, cancel_requested_at
    FROM job_runs WHERE id = ANY(%s)
"""
RESULT_ROWS = """
    SELECT r.id, r.run_id, r.device_id, r.device_name, r.status, r.message,
           r.credential_name, r.commit_sha, r.changed, r.duration_ms, r.finished_at
    FROM device_results r
    JOIN unnest(%s::int[], %s::bigint[]) AS w(run_id, after_id)
      ON r.run_id = w.run_id AND r.id > w.after_id
    ORDER BY r.id
"""

_hubs: dict[tuple[int, str], LiveHub] = {}
_hubs_lock = threading.Lock()


def hub_for(app: Flask) -> LiveHub:
    """This process's hub for ``app``'s database (a new one after a fork)."""
    dsn = app.config["ROOKERY_PG_DSN"]
    key = (os.getpid(), dsn)
    with _hubs_lock:
        hub = _hubs.get(key)
        if hub is None:
            hub = _hubs[key] = LiveHub(dsn)
        return hub
