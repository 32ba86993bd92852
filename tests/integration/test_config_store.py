"""GitConfigStore on real git repositories (and a bare remote); the advisory lock on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path

import pytest
from flask import Flask

from app import config_store
from app.config_store import (
    ConfigStoreError,
    DiffRow,
    GitConfigStore,
    device_file_name,
    device_name_from_file,
)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return done.stdout


def changed_files(repo: Path, sha: str) -> list[str]:
    return sorted(git(repo, "show", "--name-only", "--format=", sha).split())


def commit_count(repo: Path, ref: str = "HEAD") -> int:
    return int(git(repo, "rev-list", "--count", ref).strip())


CONFIGS = {"r1": "hostname r1\n", "r2": "hostname r2\n", "sw3": "hostname sw3\n"}


@pytest.fixture
def store(tmp_path: Path) -> GitConfigStore:
    return GitConfigStore(tmp_path / "configs")


def test_first_commit_holds_one_file_per_device(store: GitConfigStore) -> None:
    result = store.commit_run(run_id=12, job_name="nightly", configs=CONFIGS)

    assert result.sha and result.changed == ["r1", "r2", "sw3"] and result.unchanged == []
    assert commit_count(store.path) == 1
    assert changed_files(store.path, result.sha) == ["r1.cfg", "r2.cfg", "sw3.cfg"]
    assert git(store.path, "log", "-1", "--format=%s%n%an <%ae>") == (
        "Backup run #12 (nightly): 3 changed: r1, r2, sw3\nRookery <rookery@localhost>\n"
    )
    assert store.devices() == ["r1", "r2", "sw3"]
    assert store.read("r2") == "hostname r2\n"


def test_the_same_configs_again_make_no_commit(store: GitConfigStore) -> None:
    first = store.commit_run(run_id=1, job_name="nightly", configs=CONFIGS)
    again = store.commit_run(run_id=2, job_name="nightly", configs=CONFIGS)

    assert again.sha is None and again.changed == [] and again.unchanged == ["r1", "r2", "sw3"]
    assert git(store.path, "rev-parse", "HEAD").strip() == first.sha
    assert git(store.path, "status", "--porcelain") == ""


def test_one_changed_config_makes_a_commit_of_that_file_only(store: GitConfigStore) -> None:
    store.commit_run(run_id=1, job_name="nightly", configs=CONFIGS)
    result = store.commit_run(
        run_id=2, job_name="nightly", configs={**CONFIGS, "r2": "hostname r2\nip domain lab\n"}
    )

    assert result.changed == ["r2"] and result.unchanged == ["r1", "sw3"]
    assert changed_files(store.path, result.sha or "") == ["r2.cfg"]
    assert git(store.path, "log", "-1", "--format=%s").strip() == (
        "Backup run #2 (nightly): 1 changed: r2"
    )
    assert commit_count(store.path) == 2


def test_many_changed_devices_are_listed_in_the_body(store: GitConfigStore) -> None:
    configs = {f"d{i:02}": f"hostname d{i}\n" for i in range(12)}
    store.commit_run(run_id=3, job_name="all", configs=configs)

    message = git(store.path, "log", "-1", "--format=%B")
    subject, _, rest = message.partition("\n")
    assert subject.endswith(
        ": 12 changed: d00, d01, d02, d03, d04, d05, d06, d07, d08, d09 and 2 more"
    )
    assert rest.split() == sorted(configs)


def test_commits_leave_a_sound_repository_and_a_clean_working_tree(
    store: GitConfigStore,
) -> None:
    store.commit_run(run_id=1, job_name="n", configs=CONFIGS)
    store.commit_run(run_id=2, job_name="n", configs={**CONFIGS, "r1": "hostname r1\nv2\n"})
    store.rename("r2", "r2-new")
    last = store.commit_run(run_id=3, job_name="n", configs={"r2-new": "v3\n", "sw4": "x \n"})

    assert commit_count(store.path) == 4
    assert git(store.path, "fsck", "--strict", "--no-dangling") == ""
    assert git(store.path, "status", "--porcelain", "--untracked-files=all") == ""
    assert (store.path / "r2-new.cfg").read_text() == "v3\n"
    assert (store.path / "sw4.cfg").read_text() == "x \n"
    assert git(store.path, "show", "HEAD:sw4.cfg") == "x \n"
    assert git(store.path, "log", "-1", "--format=%an <%ae>|%cn <%ce>|%B") == (
        "Rookery <rookery@localhost>|Rookery <rookery@localhost>|"
        "Backup run #3 (n): 2 changed: r2-new, sw4\n\n"
    )
    # every move of the branch is in its reflog: three runs (git fast-import) and the rename
    moves = git(store.path, "reflog", "--format=%gs", "main").split("\n")
    assert [m for m in moves if m] == ["fast-import", "commit: Rename device r2 -> r2-new"] + [
        "fast-import"
    ] * 2
    assert git(store.path, "rev-parse", "HEAD").strip() == last.sha


def test_the_packs_of_many_commits_are_merged_by_gc(
    store: GitConfigStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config_store, "GC_PACKS", 3)
    git(store.path, "config", "gc.autoPackLimit", "3")
    git(store.path, "config", "gc.autoDetach", "false")  # the test waits for it
    for run_id in range(1, 7):
        store.commit_run(run_id=run_id, job_name="n", configs={"r1": f"v{run_id}\n"})

    packs = list((store.path / ".git" / "objects" / "pack").glob("*.idx"))
    assert 1 <= len(packs) <= 3  # 6 commits wrote 6 packs; gc merged the first 4
    assert commit_count(store.path) == 6 and store.read("r1") == "v6\n"
    assert git(store.path, "fsck", "--strict", "--no-dangling") == ""


def test_a_commit_interrupted_by_a_dead_process_is_cleaned_up(tmp_path: Path) -> None:
    first = GitConfigStore(tmp_path / "configs")
    first.commit_run(run_id=1, job_name="n", configs=CONFIGS)
    # What a process that died inside a commit leaves: its marker, a file written but
    # not committed, a staged entry.
    (first.path / ".git" / config_store.COMMIT_MARKER).write_bytes(b"")
    (first.path / "r1.cfg").write_text("half written\n")
    (first.path / "ghost.cfg").write_text("ghost\n")
    git(first.path, "add", "ghost.cfg")

    result = first.commit_run(run_id=2, job_name="n", configs={"r2": "hostname r2\nv2\n"})

    assert result.changed == ["r2"] and changed_files(first.path, result.sha or "") == ["r2.cfg"]
    assert git(first.path, "status", "--porcelain", "--untracked-files=all") == ""
    assert (first.path / "r1.cfg").read_text() == "hostname r1\n"
    assert not (first.path / ".git" / config_store.COMMIT_MARKER).exists()
    # A new store object (a restarted worker) cleans up whatever it finds.
    (first.path / "stray.cfg").write_text("stray\n")
    again = GitConfigStore(tmp_path / "configs")
    again.commit_run(run_id=3, job_name="n", configs={"r3": "hostname r3\n"})
    assert git(first.path, "status", "--porcelain", "--untracked-files=all") == ""
    assert git(first.path, "fsck", "--strict", "--no-dangling") == ""


def test_the_branch_moves_only_from_the_commit_the_tree_was_built_on(
    store: GitConfigStore,
) -> None:
    store.commit_run(run_id=1, job_name="n", configs=CONFIGS)
    # Someone commits behind the store's back: the store builds on the new HEAD.
    (store.path / "r1.cfg").write_text("by hand\n")
    git(store.path, "commit", "-q", "-am", "by hand")
    result = store.commit_run(run_id=2, job_name="n", configs={"sw3": "hostname sw3\nv2\n"})

    assert commit_count(store.path) == 3 and result.changed == ["sw3"]
    assert store.read("r1") == "by hand\n" and store.read("sw3") == "hostname sw3\nv2\n"
    assert git(store.path, "status", "--porcelain") == ""


def test_a_subset_of_devices_leaves_the_others_alone(store: GitConfigStore) -> None:
    store.commit_run(run_id=1, job_name="nightly", configs=CONFIGS)
    result = store.commit_run(run_id=2, job_name="one", configs={"r1": "hostname r1\n"})

    assert result.sha is None and result.unchanged == ["r1"]
    assert store.devices() == ["r1", "r2", "sw3"]


def test_history_is_newest_first_and_read_gives_old_versions(store: GitConfigStore) -> None:
    first = store.commit_run(run_id=1, job_name="nightly", configs={"r1": "v1\n", "r2": "a\n"})
    second = store.commit_run(run_id=2, job_name="nightly", configs={"r1": "v2\n", "r2": "a\n"})
    store.commit_run(run_id=3, job_name="nightly", configs={"r1": "v2\n", "r2": "b\n"})

    history = store.history("r1")
    assert [v.sha for v in history] == [second.sha, first.sha]
    assert history[0].message == "Backup run #2 (nightly): 1 changed: r1"
    assert history[0].author == "Rookery"
    assert history[0].committed_at.tzinfo == UTC
    assert history[0].committed_at >= history[1].committed_at
    assert len(store.history("r2")) == 2
    assert store.history("r1", limit=1) == history[:1]
    assert store.history("never-seen") == []

    assert store.read("r1", first.sha) == "v1\n"
    assert store.read("r1", (first.sha or "")[:10]) == "v1\n"
    assert store.read("r1") == "v2\n"
    assert store.read("never-seen") is None


def test_empty_store_reads_nothing(store: GitConfigStore) -> None:
    assert store.devices() == []
    assert store.history("r1") == []
    assert store.read("r1") is None


def test_unknown_or_malformed_versions_are_clear_errors(store: GitConfigStore) -> None:
    store.commit_run(run_id=1, job_name="nightly", configs=CONFIGS)

    with pytest.raises(ConfigStoreError, match="Config version deadbeef does not exist"):
        store.read("r1", "deadbeef")
    with pytest.raises(ConfigStoreError, match="is not a config version"):
        store.read("r1", "--output=/tmp/x")


def test_side_by_side_diff_of_a_one_line_change(store: GitConfigStore) -> None:
    old = store.commit_run(
        run_id=1, job_name="n", configs={"r1": "hostname r1\nip domain a\nend\n"}
    )
    new = store.commit_run(
        run_id=2, job_name="n", configs={"r1": "hostname r1\nip domain b\nend\n"}
    )

    assert store.diff("r1", old.sha or "", new.sha or "") == [
        DiffRow("equal", 1, "hostname r1", 1, "hostname r1"),
        DiffRow("changed", 2, "ip domain a", 2, "ip domain b"),
        DiffRow("equal", 3, "end", 3, "end"),
    ]
    unified = store.unified_diff("r1", old.sha or "", new.sha or "")
    assert "-ip domain a\n+ip domain b\n" in unified
    assert store.unified_diff("r1", old.sha or "", old.sha or "") == ""


def test_side_by_side_rows_for_added_and_removed_lines() -> None:
    rows = config_store.side_by_side(["a", "b", "c"], ["a", "c", "d", "e"])
    assert rows == [
        DiffRow("equal", 1, "a", 1, "a"),
        DiffRow("removed", 2, "b", None, ""),
        DiffRow("equal", 3, "c", 2, "c"),
        DiffRow("added", None, "", 3, "d"),
        DiffRow("added", None, "", 4, "e"),
    ]


def test_rename_keeps_history_and_diff_works_across_it(store: GitConfigStore) -> None:
    before = store.commit_run(run_id=1, job_name="n", configs={"old": "hostname x\nend\n"})
    sha = store.rename("old", "new")

    assert sha and git(store.path, "log", "-1", "--format=%s").strip() == (
        "Rename device old -> new"
    )
    assert store.devices() == ["new"]
    after = store.commit_run(run_id=2, job_name="n", configs={"new": "hostname y\nend\n"})

    assert [v.sha for v in store.history("new")] == [after.sha, sha, before.sha]
    assert store.read("new", before.sha) == "hostname x\nend\n"
    assert store.read("old", before.sha) == "hostname x\nend\n"
    assert store.read("old") is None
    assert store.diff("new", before.sha or "", after.sha or "") == [
        DiffRow("changed", 1, "hostname x", 1, "hostname y"),
        DiffRow("equal", 2, "end", 2, "end"),
    ]


def test_rename_of_an_unknown_device_does_nothing(store: GitConfigStore) -> None:
    assert store.rename("ghost", "spirit") is None
    store.commit_run(run_id=1, job_name="n", configs=CONFIGS)
    assert store.rename("ghost", "spirit") is None
    assert store.rename("r1", "r1") is None
    assert commit_count(store.path) == 1


def test_rename_onto_a_stored_device_is_refused(store: GitConfigStore) -> None:
    store.commit_run(run_id=1, job_name="n", configs=CONFIGS)

    with pytest.raises(ConfigStoreError, match="'r2' already has stored configs"):
        store.rename("r1", "r2")
    assert store.read("r1") == "hostname r1\n" and store.read("r2") == "hostname r2\n"
    assert commit_count(store.path) == 1


def test_a_deleted_device_stays_readable(store: GitConfigStore) -> None:
    store.commit_run(run_id=1, job_name="n", configs=CONFIGS)
    store.commit_run(run_id=2, job_name="n", configs={"r1": "hostname r1\nv2\n"})

    assert "sw3" in store.devices()
    assert store.read("sw3") == "hostname sw3\n" and len(store.history("sw3")) == 1


@pytest.mark.parametrize(
    "name",
    ("../../etc/passwd", "core/sw1", "..", ".", ".git", "-rf", "a b:c*?[x]", "ünï\\cødé", "x~y"),
)
def test_device_names_are_stored_safely_inside_the_repo(store: GitConfigStore, name: str) -> None:
    result = store.commit_run(run_id=1, job_name="n", configs={name: f"hostname {name}\n"})

    (file_name,) = changed_files(store.path, result.sha or "")
    assert "/" not in file_name and not file_name.startswith((".", "-"))
    assert (store.path / file_name).resolve().parent == store.path
    assert file_name == device_file_name(name) and device_name_from_file(file_name) == name
    assert store.devices() == [name]
    assert store.read(name) == f"hostname {name}\n"
    assert len(store.history(name)) == 1
    assert not (store.path.parent / "etc").exists()


def test_file_names_are_a_stable_one_to_one_mapping() -> None:
    names = ["r1", "R1", "a/b", "a%2Fb", "a_b", ".hidden", "%2Ehidden", "x" * 128, "é" * 128]
    files = [device_file_name(n) for n in names]
    assert len(set(files)) == len(files)
    assert files == [device_file_name(n) for n in names]
    assert device_file_name("core-sw1.dc1") == "core-sw1.dc1.cfg"
    assert all(len(f.encode()) < 255 for f in files)
    with pytest.raises(ConfigStoreError):
        device_file_name("")


def test_commit_runs_inside_the_given_lock(store: GitConfigStore) -> None:
    seen: list[str] = []

    @contextmanager
    def lock() -> Iterator[None]:
        seen.append("enter")
        yield
        seen.append("exit")

    store.commit_run(run_id=1, job_name="n", configs=CONFIGS, lock=lock())
    store.rename("r1", "r9", lock=lock())
    assert seen == ["enter", "exit", "enter", "exit"]


def test_threads_committing_to_one_store_serialise(tmp_path: Path) -> None:
    stores = [GitConfigStore(tmp_path / "configs") for _ in range(4)]
    errors: list[BaseException] = []

    def commit(i: int) -> None:
        try:
            for n in range(3):
                stores[i].commit_run(run_id=i * 10 + n, job_name="t", configs={f"d{i}": f"{n}\n"})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=commit, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert commit_count(tmp_path / "configs") == 12
    assert stores[0].devices() == ["d0", "d1", "d2", "d3"]


# ------------------------------------------------------------------ remotes


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    return remote


def test_commit_is_pushed_to_the_remote(tmp_path: Path, bare: Path) -> None:
    store = GitConfigStore(tmp_path / "host-a", remote=str(bare))
    result = store.commit_run(run_id=1, job_name="n", configs=CONFIGS)

    assert git(bare, "rev-parse", "main").strip() == result.sha
    assert git(store.path, "remote", "get-url", "origin").strip() == str(bare)


def test_two_hosts_share_one_linear_history(tmp_path: Path, bare: Path) -> None:
    host_a = GitConfigStore(tmp_path / "host-a", remote=str(bare))
    host_b = GitConfigStore(tmp_path / "host-b", remote=str(bare))

    a1 = host_a.commit_run(run_id=1, job_name="n", configs={"r1": "a1\n", "r2": "x\n"})
    b1 = host_b.commit_run(run_id=2, job_name="n", configs={"r1": "a1\n", "r3": "b1\n"})
    a2 = host_a.commit_run(run_id=3, job_name="n", configs={"r1": "a2\n"})
    b2 = host_b.commit_run(run_id=4, job_name="n", configs={"r3": "b2\n", "r1": "a2\n"})

    # host B caught up before comparing: r1 (already stored by A) was not "changed" again
    assert b1.changed == ["r3"] and b1.unchanged == ["r1"]
    assert b2.changed == ["r3"] and b2.unchanged == ["r1"]
    assert all(r.sha for r in (a1, b1, a2, b2))
    assert git(bare, "rev-list", "--min-parents=2", "main") == ""
    assert commit_count(bare, "main") == 4
    assert git(bare, "rev-parse", "main").strip() == b2.sha
    assert git(bare, "log", "--format=%s", "main").splitlines() == [
        "Backup run #4 (n): 1 changed: r3",
        "Backup run #3 (n): 1 changed: r1",
        "Backup run #2 (n): 1 changed: r3",
        "Backup run #1 (n): 2 changed: r1, r2",
    ]
    host_a.sync()
    assert host_a.read("r3") == "b2\n" and host_a.devices() == ["r1", "r2", "r3"]
    assert [v.sha for v in host_a.history("r1")] == [a2.sha, a1.sha]


def test_a_host_that_was_offline_rebases_its_commits(tmp_path: Path, bare: Path) -> None:
    host_a = GitConfigStore(tmp_path / "host-a", remote=str(bare))
    host_a.commit_run(run_id=1, job_name="n", configs={"r1": "one\n"})
    offline = GitConfigStore(tmp_path / "host-b", remote=str(tmp_path / "down.git"))
    kept = offline.commit_run(run_id=2, job_name="n", configs={"r1": "two\n", "r2": "x\n"})
    assert kept.sha and kept.push_error
    host_a.commit_run(run_id=3, job_name="n", configs={"r1": "three\n"})

    back = GitConfigStore(tmp_path / "host-b", remote=str(bare))  # the remote is back
    result = back.commit_run(run_id=4, job_name="n", configs={"r3": "y\n"})

    assert result.changed == ["r3"]
    assert git(bare, "rev-list", "--min-parents=2", "main") == ""
    assert git(bare, "log", "--format=%s", "main").splitlines() == [
        "Backup run #4 (n): 1 changed: r3",
        "Backup run #2 (n): 2 changed: r1, r2",
        "Backup run #3 (n): 1 changed: r1",
        "Backup run #1 (n): 1 changed: r1",
    ]
    # the conflicting r1 keeps the replayed (local) version; the next backup corrects it
    assert back.read("r1") == "two\n"


def test_an_unreachable_remote_is_a_clear_warning_and_the_commit_stays(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.git"
    store = GitConfigStore(tmp_path / "configs", remote=str(missing))

    result = store.commit_run(run_id=1, job_name="n", configs=CONFIGS)

    message = result.push_error
    assert message is not None and message.startswith(f"git push to {missing} failed: ")
    assert "\n" not in message and "Traceback" not in message
    assert result.changed == ["r1", "r2", "sw3"]
    assert git(store.path, "rev-parse", "HEAD").strip() == result.sha
    assert store.read("r1") == "hostname r1\n"


def test_remote_credentials_never_appear_in_messages(tmp_path: Path) -> None:
    store = GitConfigStore(
        tmp_path / "configs", remote="https://rookery:hunter2@127.0.0.1:9/configs.git"
    )

    result = store.commit_run(run_id=1, job_name="n", configs=CONFIGS)

    assert result.push_error is not None and "hunter2" not in result.push_error
    assert result.push_error.startswith("git push to https://127.0.0.1:9/configs.git failed: ")


def test_unpushed_commits_are_pushed_by_the_next_run(tmp_path: Path, bare: Path) -> None:
    down = GitConfigStore(tmp_path / "configs", remote=str(tmp_path / "down.git"))
    assert down.commit_run(run_id=1, job_name="n", configs=CONFIGS).push_error

    up = GitConfigStore(tmp_path / "configs", remote=str(bare))
    result = up.commit_run(run_id=2, job_name="n", configs=CONFIGS)

    assert result.sha is None
    assert git(bare, "rev-parse", "main") == git(up.path, "rev-parse", "HEAD")


def test_a_store_path_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigStoreError, match="is a file, not a folder"):
        GitConfigStore(tmp_path / "file")


# ------------------------------------------------------------------ the app


def test_store_for_uses_the_instance_folder_and_is_cached(app: Flask) -> None:
    store = config_store.store_for(app)

    assert store.path == Path(app.config["ROOKERY_INSTANCE"]) / "configs"
    assert store.remote is None
    assert config_store.store_for(app) is store
    assert (store.path / ".git").is_dir()


def test_advisory_lock_is_held_by_one_session_at_a_time(app: Flask) -> None:
    from app.extensions import db

    events: list[str] = []
    first_holds = threading.Event()
    release_first = threading.Event()
    errors: list[BaseException] = []

    def hold(name: str, started: threading.Event | None, wait: threading.Event | None) -> None:
        try:
            with app.app_context():
                try:
                    with config_store.advisory_lock(db.session):
                        events.append(f"{name} acquired")
                        if started:
                            started.set()
                        if wait:
                            wait.wait(10)
                        events.append(f"{name} released")
                    db.session.commit()
                finally:
                    db.session.remove()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    first = threading.Thread(target=hold, args=("first", first_holds, release_first))
    second = threading.Thread(target=hold, args=("second", None, None))
    first.start()
    assert first_holds.wait(10)
    second.start()
    time.sleep(0.5)
    assert events == ["first acquired"]  # the second blocks while the first holds it
    release_first.set()
    first.join(10)
    second.join(10)

    assert errors == []
    assert events == ["first acquired", "first released", "second acquired", "second released"]
    with app.app_context():
        held = db.session.execute(
            db.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        ).scalar()
        db.session.remove()
    assert held == 0


def test_advisory_lock_serialises_commits_of_two_sessions(app: Flask) -> None:
    from app.extensions import db

    store = config_store.store_for(app)
    errors: list[BaseException] = []

    def commit(i: int) -> None:
        try:
            with app.app_context():
                try:
                    store.commit_run(
                        run_id=i,
                        job_name="n",
                        configs={f"d{i}": "x\n"},
                        lock=config_store.advisory_lock(db.session),
                    )
                    db.session.commit()
                finally:
                    db.session.remove()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=commit, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert store.devices() == ["d0", "d1", "d2"]


def test_a_stale_index_lock_left_by_a_dead_process_is_removed(store: GitConfigStore) -> None:
    store.commit_run(run_id=1, job_name="n", configs=CONFIGS)
    index_lock = store.path / ".git" / "index.lock"
    index_lock.write_text("")
    old = time.time() - config_store.STALE_LOCK_SECONDS - 60
    os.utime(index_lock, (old, old))

    result = store.commit_run(run_id=2, job_name="n", configs={"r1": "changed\n"})

    assert result.changed == ["r1"] and not index_lock.exists()


def test_processes_creating_the_store_at_once_all_succeed(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from app.config_store import GitConfigStore; "
        "GitConfigStore(Path(sys.argv[1]))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "configs")], cwd=Path.cwd())
        for _ in range(4)
    ]
    assert [p.wait(60) for p in procs] == [0] * 4
    assert git(tmp_path / "configs", "config", "--local", "user.name") == "Rookery\n"


def test_push_pending_pushes_what_a_failed_push_left(tmp_path: Path, bare: Path) -> None:
    down = GitConfigStore(tmp_path / "configs", remote=str(tmp_path / "down.git"))
    assert down.commit_run(run_id=1, job_name="n", configs=CONFIGS).push_error
    assert down.push_pending() is not None, "still unreachable: the reason again"

    up = GitConfigStore(tmp_path / "configs", remote=str(bare))
    assert up.push_pending() is None
    assert git(bare, "rev-parse", "main") == git(up.path, "rev-parse", "HEAD")


def test_configs_stream_in_as_pairs_and_a_clash_commits_nothing(store: GitConfigStore) -> None:
    given: list[str] = []

    def pairs() -> Iterator[tuple[str, str]]:
        for name, text in CONFIGS.items():
            given.append(name)  # taken one by one: a run's configs never all in memory
            yield name, text

    first = store.commit_run(run_id=1, job_name="n", configs=pairs())
    assert first.changed == ["r1", "r2", "sw3"] and given == ["r1", "r2", "sw3"]
    head = git(store.path, "rev-parse", "HEAD").strip()

    # two names that map to one file, the second after a changed config was sent to git
    clash = iter([("r1", "hostname r1\nv2\n"), ("r4", "x\n"), ("r4", "y\n")])
    with pytest.raises(ConfigStoreError, match=r"map to one file r4\.cfg"):
        store.commit_run(run_id=2, job_name="n", configs=clash)
    assert git(store.path, "rev-parse", "HEAD").strip() == head
    assert git(store.path, "status", "--porcelain", "--untracked-files=all") == ""
    assert store.commit_run(run_id=3, job_name="n", configs={"r1": "v3\n"}).changed == ["r1"]


def test_a_sha256_store_commits_through_the_same_path(tmp_path: Path) -> None:
    path = tmp_path / "sha256"
    path.mkdir()
    git(path, "init", "-q", "--object-format=sha256", "-b", "main")
    store = GitConfigStore(path)

    first = store.commit_run(run_id=1, job_name="n", configs=CONFIGS)
    again = store.commit_run(run_id=2, job_name="n", configs=CONFIGS)
    third = store.commit_run(run_id=3, job_name="n", configs={**CONFIGS, "r2": "v3\n"})

    assert first.sha is not None and len(first.sha) == 64
    assert again.sha is None and again.unchanged == ["r1", "r2", "sw3"]
    assert third.changed == ["r2"] and changed_files(path, third.sha or "") == ["r2.cfg"]
    assert store.read("r2") == "v3\n" and (path / "r2.cfg").read_text() == "v3\n"
    assert git(path, "fsck", "--strict", "--no-dangling") == ""
    assert git(path, "status", "--porcelain", "--untracked-files=all") == ""
