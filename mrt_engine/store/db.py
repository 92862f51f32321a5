"""Opening the store: Peewee on SQLite in WAL mode, migrated to the current schema."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from peewee import SqliteDatabase

from mrt_engine.store import migrations
from mrt_engine.store.models import ALL_MODELS, database

PRAGMAS = {
    "journal_mode": "wal",
    # FULL: a committed poll survives a power cut, not only a process crash.
    "synchronous": "full",
    "foreign_keys": 1,
    "busy_timeout": 15000,
    "cache_size": -16000,
}

_open_lock = threading.Lock()
_current: Store | None = None


class StoreError(Exception):
    """The store cannot be opened or used (missing file, too new, locked, corrupt)."""


class Store:
    """The single source of truth shared by engine, CLI and console."""

    def __init__(self, path: Path, db: SqliteDatabase, found_version: int) -> None:
        self.path = path
        self.db = db
        self.found_version = found_version
        self._write_lock = threading.RLock()

    @contextmanager
    def write(self) -> Iterator[None]:
        """A write transaction that takes the write lock at once (BEGIN IMMEDIATE).

        Taking it up front avoids the SQLITE_BUSY that a deferred transaction gets when it
        tries to upgrade from reading to writing while another connection writes.
        """
        # Threads of this process queue on a mutex (instant hand-over) rather than on SQLite's
        # busy handler, which sleeps and retries; other processes still meet BEGIN IMMEDIATE.
        with self._write_lock, self.db.atomic(lock_type="IMMEDIATE"):
            yield

    @contextmanager
    def read(self) -> Iterator[None]:
        """A consistent snapshot for several reads."""
        with self.db.atomic(lock_type="DEFERRED"):
            yield

    def close(self) -> None:
        """Close this thread's connection and release the model binding."""
        global _current
        with _open_lock:
            if not self.db.is_closed():
                self.db.close()
            if _current is self:
                _current = None
                database.initialize(None)


def open_store(path: str | Path, *, create: bool = True) -> Store:
    """Open (creating if allowed) and migrate the store at ``path``.

    One store per process: the Peewee models are bound to it until :meth:`Store.close`.
    """
    global _current
    file = Path(path).expanduser()
    if not create and not file.exists():
        raise StoreError(f"no store at {file} (has mrt-engine run with this config yet?)")
    if create:
        file.parent.mkdir(parents=True, exist_ok=True)
    with _open_lock:
        if _current is not None:
            raise StoreError(f"a store is already open in this process: {_current.path}")
        try:
            raw = sqlite3.connect(file, isolation_level=None, timeout=15)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open store {file}: {exc}") from None
        try:
            raw.execute("PRAGMA busy_timeout = 15000")
            migrations.check_version(raw, file)  # before anything writes to the file
            raw.execute("PRAGMA journal_mode = wal")
            found = migrations.migrate(raw, file)
        except migrations.StoreTooNew as exc:
            raise StoreError(str(exc)) from None
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot use store {file}: {exc}") from None
        finally:
            raw.close()
        db = SqliteDatabase(str(file), pragmas=PRAGMAS, timeout=15)
        database.initialize(db)
        db.bind(ALL_MODELS)
        store = Store(file, db, found)
        _current = store
        return store
