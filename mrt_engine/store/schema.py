"""The store's schema version: what ``mrt-engine migrate --check`` reports, touching nothing, and
what ``mrt-engine migrate`` applies (what opening the store for an engine does anyway).

Both backends share one version history (:data:`~mrt_engine.store.migrations.SUMMARIES` says
what each version brings). Reading the version opens a SQLite file read-only and a PostgreSQL
database with one query; a store that cannot be read, or that a newer mrt-engine wrote, is a
:class:`~mrt_engine.store.db.StoreError`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from mrt_engine.store import migrations
from mrt_engine.store.db import StoreError, open_store, store_fault
from mrt_engine.store.location import StoreLocation


@dataclass(frozen=True)
class SchemaState:
    """A store's schema version (0: no schema yet) and the latest this code knows."""

    location: StoreLocation
    version: int
    latest: int

    @property
    def pending(self) -> list[tuple[int, str]]:
        """The versions still to apply, each with what it brings."""
        return [(v, migrations.SUMMARIES[v - 1]) for v in range(self.version + 1, self.latest + 1)]


@dataclass(frozen=True)
class Migrated:
    """What :func:`upgrade` did: the state before, the version after, the SQLite backup."""

    before: SchemaState
    version: int
    backup: Path | None

    @property
    def applied(self) -> list[tuple[int, str]]:
        return [p for p in self.before.pending if p[0] <= self.version]


def inspect(location: StoreLocation) -> SchemaState:
    """The schema state of the store at ``location``, read without changing anything."""
    if location.is_postgresql:
        return SchemaState(location, _postgresql_version(location), migrations.LATEST)
    return SchemaState(location, _sqlite_version(location.path), migrations.LATEST)


def upgrade(location: StoreLocation) -> Migrated:
    """Apply the pending migrations. A SQLite store must exist (``run`` creates stores) and have
    no engine running on it (the engine's lock is held meanwhile: an engine of an older
    mrt-engine must not write a schema it does not know); an empty PostgreSQL database gets
    the whole schema (engines starting together migrate once, so none need stop)."""
    from mrt_engine.store.lock import EngineLock

    before = inspect(location)
    if not before.pending:
        return Migrated(before, before.version, None)
    lock = EngineLock(location.path) if location.is_sqlite else None
    if lock is not None:
        lock.acquire()
    try:
        store = open_store(location, create=location.is_postgresql)
        found = store.found_version
        store.close()
    finally:
        if lock is not None:
            lock.release()
    backup = None
    if location.is_sqlite and 0 < found < migrations.LATEST:
        kept = migrations.backup_path(location.path, found)
        backup = kept if kept.exists() else None
    return Migrated(SchemaState(location, found, migrations.LATEST), migrations.LATEST, backup)


def _sqlite_version(path: Path) -> int:
    if not path.exists():
        raise StoreError(f"no store at {path} (has mrt-engine run with this config yet?)")
    if not path.is_file():
        raise StoreError(f"the store {path} is not a file")
    try:
        # Read-only: nothing written, no WAL checkpointed. Without a WAL file (no engine has the
        # store open) the file is the whole store: read it as immutable, or SQLite would leave
        # the -wal and -shm files a WAL store's reader needs next to it.
        wal = path.with_name(path.name + "-wal").exists()
        mode = "mode=ro" if wal else "mode=ro&immutable=1"
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True, timeout=15)
        try:
            return migrations.check_version(conn, path)
        finally:
            conn.close()
    except migrations.StoreTooNew as exc:
        raise StoreError(str(exc)) from None
    except sqlite3.Error as exc:
        raise store_fault(exc, path) or StoreError(f"cannot read the store {path}: {exc}") from None


def _postgresql_version(location: StoreLocation) -> int:
    from mrt_engine.store import postgres

    conn = postgres.connect_raw(location)  # a StoreError when psycopg is not installed
    import psycopg

    try:
        return postgres.check_version(conn, location)
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise StoreError(f"cannot read the store {location}: {reason}") from None
    finally:
        conn.close()
