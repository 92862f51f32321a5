"""``mrt-engine migrate [--check]``: what the store's schema version is, what is pending, and
applying it; on a SQLite file and on a PostgreSQL database left at older versions."""

from __future__ import annotations

import json
import sqlite3

import pytest

from mrt_engine.store import migrations, postgres
from mrt_engine.store.db import open_store
from mrt_engine.store.lock import EngineLock

pytestmark = pytest.mark.both_backends


def older_store(tracker, version: int) -> None:
    """The tracker's store at schema ``version``, with one audit row (the way an older
    mrt-engine left it)."""
    location = tracker.location
    if location.is_postgresql:
        with postgres.connect_raw(location) as conn:
            postgres.migrate(conn, location, target=version)
            conn.execute(
                "INSERT INTO audit (at, actor, action, target) VALUES ('t', 'a', 'x', 'y')"
            )
        return
    conn = sqlite3.connect(location.path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = wal")
    migrations.migrate(conn, location.path, target=version)
    conn.execute("INSERT INTO audit (at, actor, action, target) VALUES ('t', 'a', 'x', 'y')")
    conn.close()


def snapshot(tracker) -> object:
    """Everything a command could have changed: the store folder's files (SQLite), or the
    schema version, tables and rows (PostgreSQL)."""
    location = tracker.location
    if location.is_postgresql:
        with postgres.connect_raw(location) as conn:
            tables = conn.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = 'public' ORDER BY table_name"
            ).fetchall()
            return (
                postgres.schema_version(conn),
                tables,
                conn.execute("SELECT * FROM audit ORDER BY id").fetchall(),
            )
    folder = location.path.parent
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix != ".json"}


def schema_version(tracker) -> int:
    location = tracker.location
    if location.is_postgresql:
        with postgres.connect_raw(location) as conn:
            return postgres.schema_version(conn)
    conn = sqlite3.connect(location.path)
    try:
        return migrations.schema_version(conn)
    finally:
        conn.close()


def test_migrate_check_lists_the_pending_migrations_and_changes_nothing(make_tracker):
    tracker = make_tracker({})
    older_store(tracker, 2)
    before = snapshot(tracker)

    result = tracker.cli("migrate", "--check")

    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert f"schema version 2, this mrt-engine knows up to {migrations.LATEST}" in out
    for version in range(3, migrations.LATEST + 1):
        assert f"  {version}  {migrations.SUMMARIES[version - 1]}" in out
    assert "mrt-engine migrate" in out
    assert snapshot(tracker) == before

    as_json = json.loads(tracker.cli("migrate", "--check", "--json").stdout)
    assert as_json["version"] == 2 and as_json["latest"] == migrations.LATEST
    assert [m["version"] for m in as_json["pending"]] == list(range(3, migrations.LATEST + 1))
    assert snapshot(tracker) == before


def test_migrate_applies_the_pending_migrations_and_says_what_it_did(make_tracker):
    tracker = make_tracker({})
    older_store(tracker, 1)

    result = tracker.cli("migrate")

    assert result.returncode == 0, result.stderr
    assert f"migrated from schema version 1 to {migrations.LATEST}" in result.stdout
    assert migrations.SUMMARIES[1] in result.stdout
    assert schema_version(tracker) == migrations.LATEST
    assert tracker.sql("SELECT actor FROM audit") == [("a",)]
    if tracker.location.is_sqlite:
        backup = tracker.location.path.with_name(tracker.location.path.name + ".v1.bak")
        assert backup.exists() and f"kept a copy of the store as it was: {backup}" in result.stdout

    again = tracker.cli("migrate", "--check")
    assert again.returncode == 0, again.stdout
    assert f"schema version {migrations.LATEST}, up to date" in again.stdout
    nothing = tracker.cli("migrate")
    assert nothing.returncode == 0 and "up to date: nothing to do" in nothing.stdout


def test_migrate_check_of_a_store_from_a_newer_mrt_engine_is_exit_2_untouched(make_tracker):
    tracker = make_tracker({})
    open_store(tracker.location).close()
    newer = migrations.LATEST + 1
    if tracker.location.is_postgresql:
        with postgres.connect_raw(tracker.location) as conn:
            conn.execute("UPDATE mrt_schema SET version = %s", (newer,))
    else:
        with sqlite3.connect(tracker.location.path) as conn:
            conn.execute(f"PRAGMA user_version = {newer}")
        conn.close()
    before = snapshot(tracker)
    for argv in (["migrate", "--check"], ["migrate"]):
        result = tracker.cli(*argv)
        assert result.returncode == 2
        assert f"schema version {newer}" in result.stderr and "upgrade mrt-engine" in result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert snapshot(tracker) == before


def test_migrate_check_of_a_store_that_cannot_be_read_is_exit_2(make_tracker, tmp_path, backend):
    if backend == "postgresql":
        tracker = make_tracker({"state": {"url": "postgresql://mrt@127.0.0.1:9/none"}})
        where = "postgresql://mrt@127.0.0.1:9/none"
    else:
        tracker = make_tracker({})
        where = str(tracker.location.path)
    for argv in (["migrate", "--check"], ["migrate"]):
        result = tracker.cli(*argv)
        assert result.returncode == 2, result.stdout
        assert where in result.stderr and "Traceback" not in result.stderr
        assert result.stderr.count("\n") == 1
    if backend == "sqlite":
        assert "no store at" in result.stderr
        assert not tracker.location.path.exists()  # migrate creates no store: run does


@pytest.mark.postgresql_only
def test_migrate_creates_the_schema_in_an_empty_postgresql_database(make_tracker):
    tracker = make_tracker({})
    check = tracker.cli("migrate", "--check")
    assert check.returncode == 1
    assert "no schema yet" in check.stdout and "  1  " in check.stdout
    result = tracker.cli("migrate")
    assert result.returncode == 0, result.stderr
    assert f"created the schema at version {migrations.LATEST}" in result.stdout
    assert schema_version(tracker) == migrations.LATEST


@pytest.mark.sqlite_only
def test_migrate_refuses_a_sqlite_store_an_engine_runs_on_and_check_still_answers(make_tracker):
    tracker = make_tracker({})
    older_store(tracker, 2)
    lock = EngineLock(tracker.location.path)
    lock.acquire()
    try:
        before = snapshot(tracker)
        result = tracker.cli("migrate")
        assert result.returncode == 2
        assert "already running" in result.stderr and "Traceback" not in result.stderr
        assert tracker.cli("migrate", "--check").returncode == 1
        assert snapshot(tracker) == before
    finally:
        lock.release()


@pytest.mark.sqlite_only
def test_migrate_check_takes_a_store_url_in_db(make_tracker, tmp_path):
    tracker = make_tracker({})
    other = tmp_path / "other" / "s.sqlite3"
    other.parent.mkdir()
    conn = sqlite3.connect(other, isolation_level=None)
    migrations.migrate(conn, other, target=3)
    conn.close()
    result = tracker.cli("migrate", "--check", "--db", f"sqlite:///{other}")
    assert result.returncode == 1 and str(other) in result.stdout
    assert f"  {migrations.LATEST}  " in result.stdout


def test_every_migration_has_a_summary():
    assert len(migrations.SUMMARIES) == migrations.LATEST == len(postgres.migrations_pg.MIGRATIONS)
    assert all(s and "\n" not in s for s in migrations.SUMMARIES)
