"""The embedded PostgreSQL: shared between processes, and no orphan after a SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import psycopg
import pytest

from app import embedded_pg


def _postmasters(pgdata: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and str(pgdata) in cmdline:
            found.append(proc)
    return found


def _holder(pgdata: Path, then: str) -> subprocess.Popen[str]:
    code = textwrap.dedent(f"""
        import os, sys, time
        from pathlib import Path
        from app import embedded_pg
        print(embedded_pg.server_uri(Path({str(pgdata)!r})), flush=True)
        {then}
    """)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def _wait_gone(pgdata: Path, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _postmasters(pgdata):
            return True
        time.sleep(0.2)
    return False


@pytest.fixture
def pgdata(tmp_path):
    path = (tmp_path / "pgdata").resolve()
    yield path
    for proc in _postmasters(path):  # never leave a server behind, whatever failed
        proc.kill()


def test_second_process_reuses_the_running_server(pgdata):
    holder = _holder(pgdata, "sys.stdin and time.sleep(30)")
    try:
        uri = holder.stdout.readline().strip()
        assert uri.startswith("postgresql://")
        servers_before = _postmasters(pgdata)
        assert len(servers_before) == 1
        mine = embedded_pg.server_uri(pgdata)
        assert mine == uri
        assert [p.pid for p in _postmasters(pgdata)] == [servers_before[0].pid]
        with psycopg.connect(mine) as conn:
            conn.execute("CREATE TABLE kept (x int)")
    finally:
        holder.terminate()
        holder.wait(10)
        holder.stdout.close()
    # the holder exited; this process still holds the server, so it keeps running
    with psycopg.connect(mine) as conn:
        assert conn.execute("SELECT count(*) FROM kept").fetchone() == (0,)
    embedded_pg.stop(pgdata)
    assert _wait_gone(pgdata), "the last holder's exit must stop the server"


def test_sigkilled_holder_does_not_leave_an_orphan_forever(pgdata):
    holder = _holder(pgdata, "os.kill(os.getpid(), 9)")
    holder.stdout.readline()
    holder.wait(10)
    holder.stdout.close()
    assert holder.returncode == -signal.SIGKILL
    pids = json.loads((pgdata / ".handle_pids.json").read_text())
    assert holder.pid in pids, "pgserver keeps the dead pid: the trap this test is about"
    assert len(_postmasters(pgdata)) == 1, "the server outlives its killed holder"

    uri = embedded_pg.server_uri(pgdata)  # prunes the dead holder, reuses the server
    with psycopg.connect(uri) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert holder.pid not in json.loads((pgdata / ".handle_pids.json").read_text())
    embedded_pg.stop(pgdata)
    assert _wait_gone(pgdata), "with the dead pid pruned, the last live holder stops it"


def test_data_survives_a_restart(pgdata):
    uri = embedded_pg.server_uri(pgdata)
    with psycopg.connect(uri) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    embedded_pg.stop(pgdata)
    assert _wait_gone(pgdata)
    uri = embedded_pg.server_uri(pgdata)
    with psycopg.connect(uri) as conn:
        assert conn.execute("SELECT x FROM kept").fetchone() == (42,)
    embedded_pg.stop(pgdata)


def test_unusable_pgdata_is_a_clear_error(tmp_path):
    from app.errors import EmbeddedDatabaseError

    not_a_dir = tmp_path / "pgdata"
    not_a_dir.write_text("I am a file")
    with pytest.raises(EmbeddedDatabaseError) as info:
        embedded_pg.server_uri(not_a_dir)
    message = str(info.value)
    assert "Could not start the embedded PostgreSQL" in message
    assert "DATABASE_URL" in message
    assert os.fspath(not_a_dir) in message
