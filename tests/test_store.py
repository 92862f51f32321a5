"""The store: WAL, schema versions and migrations, models matching the migrated schema, the lock."""

from __future__ import annotations

import sqlite3

import pytest

from mrt_engine.store import migrations
from mrt_engine.store.db import StoreError, open_store
from mrt_engine.store.lock import EngineAlreadyRunning, EngineLock
from mrt_engine.store.models import ALL_MODELS


def test_a_new_store_is_at_the_latest_version_in_wal_mode(tmp_path):
    store = open_store(tmp_path / "s.sqlite3")
    try:
        assert store.db.execute_sql("PRAGMA user_version").fetchone()[0] == migrations.LATEST
        assert store.db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.db.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
    finally:
        store.close()


def test_models_match_the_migrated_schema(tmp_path):
    store = open_store(tmp_path / "s.sqlite3")
    try:
        for model in ALL_MODELS:
            table = model._meta.table_name
            columns = {r[1] for r in store.db.execute_sql(f"PRAGMA table_info({table})").fetchall()}
            fields = {f.column_name for f in model._meta.sorted_fields}
            assert columns == fields, table
    finally:
        store.close()


def test_a_v0_state_file_is_upgraded_and_keeps_its_tables(tmp_path):
    path = tmp_path / "mrt_state.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE seen_events (fingerprint TEXT PRIMARY KEY, created_at TEXT)")
        conn.execute("CREATE TABLE alerts (id INTEGER PRIMARY KEY, fingerprint TEXT, content TEXT)")
        conn.execute("CREATE TABLE cursor (source_key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT INTO seen_events VALUES ('abc', '2026-01-01')")
    conn.close()
    store = open_store(path)
    try:
        assert store.found_version == 0
        tables = {
            r[0] for r in store.db.execute_sql("SELECT name FROM sqlite_master WHERE type='table'")
        }
        assert {
            "seen_events",
            "alerts",
            "cursor",
            "event",
            "alert",
            "delivery",
            "source_state",
        } <= tables
        assert store.db.execute_sql("SELECT COUNT(*) FROM seen_events").fetchone()[0] == 1
    finally:
        store.close()


def test_an_older_schema_is_upgraded_with_a_backup_kept(tmp_path, monkeypatch):
    path = tmp_path / "s.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    migrations.migrate(conn, path, target=1)
    conn.execute("INSERT INTO audit (at, actor, action, target) VALUES ('t', 'a', 'x', 'y')")
    conn.close()
    # A later version of the schema adds a table; opening the old file applies it.
    monkeypatch.setattr(
        migrations, "MIGRATIONS", [*migrations.MIGRATIONS, ["CREATE TABLE extra (id INTEGER)"]]
    )
    monkeypatch.setattr(migrations, "LATEST", len(migrations.MIGRATIONS))
    store = open_store(path)
    try:
        assert store.found_version == 1
        assert store.db.execute_sql("PRAGMA user_version").fetchone()[0] == migrations.LATEST
        assert store.db.execute_sql("SELECT COUNT(*) FROM extra").fetchone()[0] == 0
        assert store.db.execute_sql("SELECT COUNT(*) FROM audit").fetchone()[0] == 1
    finally:
        store.close()
    backup = tmp_path / "s.sqlite3.v1.bak"
    with sqlite3.connect(backup) as copy:
        assert copy.execute("PRAGMA user_version").fetchone()[0] == 1
        assert copy.execute("SELECT COUNT(*) FROM audit").fetchone()[0] == 1
    copy.close()


def test_a_store_from_a_newer_version_is_refused_untouched(tmp_path):
    path = tmp_path / "s.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {migrations.LATEST + 5}")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError) as info:
        open_store(path)
    assert f"schema version {migrations.LATEST + 5}" in str(info.value)
    assert "upgrade mrt-engine" in str(info.value)
    assert path.read_bytes() == before


def test_opening_a_missing_store_for_queries_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError) as info:
        open_store(tmp_path / "missing.sqlite3", create=False)
    assert "no store at" in str(info.value)


def test_the_engine_lock_is_exclusive_and_released(tmp_path):
    path = tmp_path / "s.sqlite3"
    first = EngineLock(path)
    first.acquire()
    with pytest.raises(EngineAlreadyRunning) as info:
        EngineLock(path).acquire()
    assert "pid" in str(info.value)
    first.release()
    again = EngineLock(path)
    again.acquire()
    again.release()


def test_a_held_lock_with_a_file_not_an_object_still_says_an_engine_runs(tmp_path):
    path = tmp_path / "s.sqlite3"
    first = EngineLock(path)
    first.acquire()
    path.with_name(path.name + ".lock").write_bytes(b"[1, 2]")  # damaged, or not ours
    try:
        with pytest.raises(EngineAlreadyRunning) as info:
            EngineLock(path).acquire()
    finally:
        first.release()
    assert "another mrt-engine is already running" in str(info.value)
