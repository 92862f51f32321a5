"""Opening the store: Peewee on SQLite in WAL mode, migrated to the current schema.

A store that cannot be used is a :class:`StoreError`, one line naming the file and the cause:
at the edge (``mrt-engine``, ``mrt-tui``) it is a message and exit status 2, never a traceback.
:func:`store_fault` tells such a fault apart from other errors; a damaged file
(:class:`StoreDamaged`) is one no retry can fix.

Durability: WAL with ``synchronous = NORMAL``. A commit is appended to the WAL without an
fsync; the WAL is synced when it is checkpointed into the database file. That is why it is safe:

* A process crash (SIGKILL, an OOM kill, a bug) loses nothing: a commit is in the operating
  system's cache as soon as it returns, and the next open replays it from the WAL
  (``tests/test_crash.py`` kills the engine at random instants).
* A power failure or a kernel crash may lose the last commits (those since the last checkpoint
  reached the disk), never a part of one, and never an older commit while keeping a newer one:
  the WAL is replayed up to its last whole commit. What such a loss means here:
  - a poll's events, rule hits, alerts, outbox rows and its cursor commit together, so a lost
    poll is a poll not made: the cursor is back where it was and the next poll fetches the same
    items again (nothing lost);
  - a lost "sent" (or "dead") mark leaves the delivery due, so the message is sent once more: a
    duplicate, which at-least-once delivery allows; a lost poll whose alert was already sent is
    the same duplicate;
  - a lost operator action (resend, cursor reset, pause) is not done and not audited either:
    the console shows it as not done, and it can be done again.
  An item that an upstream lists only for moments (deleted, or pushed off a short feed, between
  the lost commit and the next poll) is the only thing that could be missed, and only then.
* What it buys: no fsync per commit. With ``FULL`` every commit synced the WAL (an idle poll
  once cost one fsync, 20 sources polled every second 20 a second); now a commit costs only its
  page writes, and the fsyncs come once per checkpoint (every ~1000 WAL pages).
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from peewee import Database, SqliteDatabase

from mrt_engine.store import migrations, search
from mrt_engine.store.location import SQLITE, StoreLocation, StoreUrlError, parse_location
from mrt_engine.store.models import ALL_MODELS, database

PRAGMAS = {
    "journal_mode": "wal",
    # NORMAL: a commit survives a process crash; a power cut may lose the last commits whole,
    # which re-polls or re-sends and loses nothing (the module's docstring says why).
    "synchronous": "normal",
    "foreign_keys": 1,
    "busy_timeout": 15000,
    "cache_size": -16000,
}

_open_lock = threading.Lock()
_current: Store | None = None


class StoreError(Exception):
    """The store cannot be opened or used (missing file, too new, locked, corrupt)."""


class StoreDamaged(StoreError):
    """The store file is damaged (SQLite: corrupt, or not a database): nothing can be committed
    to it until it is restored or replaced."""


# SQLite's primary result codes for a file that is not (or no longer) a valid database.
_DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
# Errors of the statement or of our code, not of the store: they stay what they are.
_NOT_STORE_FAULTS = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception behind it, once each: causes, contexts, and exceptions
    passed as arguments (Peewee re-raises a driver's error as its own, with the original as
    the first argument and as the context)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        cause = todo.pop()
        if id(cause) in seen:
            continue
        seen.add(id(cause))
        yield cause
        todo.extend(c for c in (cause.__cause__, cause.__context__) if c is not None)
        todo.extend(a for a in getattr(cause, "args", ()) if isinstance(a, BaseException))


def store_fault(exc: BaseException, path: Path | str) -> StoreError | None:
    """The store fault behind ``exc`` as a one-line :class:`StoreError` (a
    :class:`StoreDamaged` for a damaged file), or ``None`` when ``exc`` is not a store fault.

    Peewee re-raises SQLite's errors as its own, with the original as the first argument and
    as the context, so the whole chain is searched.
    """
    for cause in causes(exc):
        if isinstance(cause, StoreError):
            return cause
        if isinstance(cause, sqlite3.Error) and not isinstance(cause, _NOT_STORE_FAULTS):
            text = " ".join(str(cause).split()) or type(cause).__name__
            name = getattr(cause, "sqlite_errorname", "") or ""
            if name.startswith(_DAMAGED) or "malformed" in text or "not a database" in text:
                return StoreDamaged(
                    f"the store {path} is damaged ({text}): stop mrt-engine, move the file (and"
                    " its -wal and -shm files) aside to keep it for recovery (sqlite3 FILE"
                    " .recover), then restore a backup or let mrt-engine start a new store"
                )
            return StoreError(f"cannot use the store {path}: {text}")
    return None


def os_problem(exc: OSError) -> str:
    """An OS error as a short reason (``a file is in the way``, ``permission denied``, ...)."""
    if isinstance(exc, FileExistsError | NotADirectoryError):
        return "a file is in the way where a folder is needed"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    return exc.strerror or type(exc).__name__


def prepare_folder(path: Path) -> None:
    """Create the store's folder (and its parents) as ``run`` needs it; a :class:`StoreError`
    naming the folder when that is impossible."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the store's folder {folder}: {os_problem(exc)}"
            " (state.sqlite_path names a place that cannot hold the store)"
        ) from None
    if not folder.is_dir():  # mkdir(exist_ok) accepts a symlink to a file on some systems
        raise StoreError(f"cannot use {folder} as the store's folder: it is not a folder")


def check_location(where: Path | StoreLocation) -> list[str]:
    """What opening the store for an engine would hit, found without creating the database:
    for SQLite its folder (created when missing, as ``run`` would), the engine's lock file next
    to it, and an existing file's health; for PostgreSQL that it answers and that its schema is
    not newer than this code. Problems as lines; none when ``run`` can go ahead."""
    from mrt_engine.store.lock import EngineLock

    if isinstance(where, StoreLocation) and where.is_postgresql:
        from mrt_engine.store import postgres

        try:
            postgres.pending(where)
        except StoreError as exc:
            return [str(exc)]
        return []
    path = where.path if isinstance(where, StoreLocation) else where

    try:
        prepare_folder(path)
        EngineLock(path).probe()
    except StoreError as exc:
        return [str(exc)]
    if not path.exists():
        return []
    if not path.is_file():
        return [f"the store {path} is not a file"]
    try:
        os.close(os.open(path, os.O_RDWR))
    except OSError as exc:
        return [f"cannot write the store {path}: {os_problem(exc)}"]
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=15)
    except sqlite3.Error as exc:
        return [f"cannot open the store {path}: {exc}"]
    try:
        migrations.check_version(conn, path)
        verdict = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
        if verdict != "ok":
            raise sqlite3.DatabaseError(f"database disk image is malformed: {verdict}")
    except migrations.StoreTooNew as exc:
        return [str(exc)]
    except sqlite3.Error as exc:
        return [str(store_fault(exc, path) or exc)]
    finally:
        conn.close()
    return []


class Store:
    """The single source of truth shared by engine, CLI and console.

    ``location`` says where it is (:mod:`mrt_engine.store.location`); ``path`` is the SQLite
    file, ``None`` on PostgreSQL. Code above ``store/`` never asks which backend it is: raw SQL
    is written with ``?`` marks and goes through :meth:`sql`, which gives each backend its own.
    """

    def __init__(self, location: StoreLocation | Path, db: Database, found_version: int) -> None:
        if not isinstance(location, StoreLocation):
            location = StoreLocation(SQLITE, path=Path(location))
        self.location = location
        self.path = location.path
        self.db = db
        self.found_version = found_version
        self.damage: StoreDamaged | None = None  # set once a damaged file was met
        self._write_lock = threading.RLock()
        self.is_postgresql = location.is_postgresql

    def __str__(self) -> str:
        return self.location.display()

    @property
    def shared(self) -> bool:
        """Whether several engines may run on this store at once (PostgreSQL): sources are
        then leased (:mod:`mrt_engine.store.engines`) and outbox claims skip locked rows."""
        return self.is_postgresql

    def sql(self, statement: str) -> str:
        """``statement`` as written for SQLite (``?`` marks) for this backend's own driver.
        (``db.execute_sql`` and ``db.cursor()`` take such statements on either backend; this
        is for a connection of one's own.)"""
        if self.is_postgresql:
            from mrt_engine.store.postgres import qmark_sql

            return qmark_sql(statement)
        return statement

    # ---- the few places where the two backends' SQL differs, named by what they do
    def indexed_by(self, index: str) -> str:
        """`` INDEXED BY index`` on SQLite (a query whose plan must not change); PostgreSQL
        has no such hint (its planner is checked by the plan tests instead)."""
        return "" if self.is_postgresql else f" INDEXED BY {index}"

    @property
    def skip_locked(self) -> str:
        """What a claim query ends with so that engines sharing the store never take the same
        rows: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL; nothing on SQLite, whose write lock
        already lets one writer claim at a time."""
        return " FOR UPDATE SKIP LOCKED" if self.is_postgresql else ""

    def new_ids(self, cursor: Any, table: str, n: int) -> Sequence[int]:
        """``n`` ids for new rows of ``table``, inside a write transaction. SQLite: the next
        ``n`` after the highest (the write lock keeps them ours); PostgreSQL: from the table's
        sequence, since other engines insert at the same time."""
        if n <= 0:
            return ()
        if self.is_postgresql:
            cursor.execute(
                f"SELECT nextval(pg_get_serial_sequence('{table}', 'id'))"
                " FROM generate_series(1, ?)",
                (n,),
            )
            return [row[0] for row in cursor.fetchall()]
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {table}")
        first = cursor.fetchone()[0]
        return range(first, first + n)

    @contextmanager
    def only_one(self, job: str) -> Iterator[bool]:
        """Whether this engine is the one to run ``job`` now: always on a store of one engine;
        on a shared store, True for one engine at a time (a session advisory lock of this
        thread's connection, let go at the end, or by the server when the engine dies)."""
        if not self.is_postgresql:
            yield True
            return
        key = zlib.crc32(f"mrt job {job}".encode())
        got = self.db.execute_sql("SELECT pg_try_advisory_lock(?)", (key,)).fetchone()[0]
        try:
            yield bool(got)
        finally:
            if got:
                self.db.execute_sql("SELECT pg_advisory_unlock(?)", (key,))

    def fold_counters(self) -> None:
        """Sum the counters' appended deltas back into one row per key (PostgreSQL, where the
        counters are deltas: migrations_pg, migration 3); nothing on SQLite, whose triggers
        keep one row per key. Safe at any time, from any engine, several at once."""
        if not self.is_postgresql:
            return
        from mrt_engine.store.migrations_pg import FOLD_COUNTERS

        with self.write():
            for statement in FOLD_COUNTERS:
                self.db.execute_sql(statement)

    def checkpoint(self) -> None:
        """Copy what the WAL holds into the SQLite file now, waiting for no reader (a passive
        checkpoint), so that no later commit has to do it while it holds the write lock.
        PostgreSQL's own checkpointer does that work in the background: nothing to do."""
        if not self.is_postgresql:
            self.db.execute_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def insert_id(self, cursor: Any, statement: str, params: Sequence[Any]) -> int:
        """Run an ``INSERT`` of one row and return its id."""
        if self.is_postgresql:
            cursor.execute(statement + " RETURNING id", params)
            return cursor.fetchone()[0]
        cursor.execute(statement, params)
        return cursor.lastrowid

    def fault(self, exc: BaseException) -> StoreError | None:
        """:func:`store_fault` for this store; a damaged file is remembered in :attr:`damage`
        (whoever runs the engine stops it: no retry can fix that)."""
        if self.is_postgresql:
            from mrt_engine.store import postgres

            return postgres.store_fault(exc, self.location)
        found = store_fault(exc, self.path)
        if isinstance(found, StoreDamaged) and self.damage is None:
            self.damage = found
        return found

    @contextmanager
    def write(self) -> Iterator[None]:
        """A write transaction that takes the write lock at once (BEGIN IMMEDIATE).

        Taking it up front avoids the SQLITE_BUSY that a deferred transaction gets when it
        tries to upgrade from reading to writing while another connection writes. On
        PostgreSQL writers do not exclude each other: rows are locked as they are written.
        """
        # Threads of this process queue on a mutex (instant hand-over) rather than on SQLite's
        # busy handler, which sleeps and retries; other processes still meet BEGIN IMMEDIATE.
        if self.is_postgresql:
            with self.db.atomic():
                yield
            return
        with self._write_lock, self.db.atomic(lock_type="IMMEDIATE"):
            yield

    @contextmanager
    def read(self) -> Iterator[None]:
        """A consistent snapshot for several reads."""
        if self.is_postgresql:
            with self.db.atomic():
                if self.db.transaction_depth() == 1:
                    self.db.execute_sql(
                        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
                    )
                yield
            return
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


def open_store(where: str | Path | StoreLocation, *, create: bool = True) -> Store:
    """Open (creating if allowed) and migrate the store ``where`` names: a
    :class:`~mrt_engine.store.location.StoreLocation`, a SQLite path, or a store URL.

    One store per process: the Peewee models are bound to it until :meth:`Store.close`.
    """
    location = where if isinstance(where, StoreLocation) else _location(where)
    if location.is_postgresql:
        from mrt_engine.store import postgres

        return _bind(lambda: postgres.open_database(location, create=create), location)
    return _bind(lambda: _open_sqlite(location.path, create=create), location)


def _location(where: str | Path) -> StoreLocation:
    try:
        return parse_location(where)
    except StoreUrlError as exc:
        raise StoreError(f"cannot use the store URL: {exc}") from None


def _bind(opener, location: StoreLocation) -> Store:
    global _current
    with _open_lock:
        if _current is not None:
            raise StoreError(f"a store is already open in this process: {_current}")
        db, found = opener()
        database.initialize(db)
        db.bind(ALL_MODELS)
        store = Store(location, db, found)
        _current = store
        return store


def _open_sqlite(path: Path, *, create: bool) -> tuple[Database, int]:
    file = Path(path).expanduser()
    if not create and not file.exists():
        raise StoreError(f"no store at {file} (has mrt-engine run with this config yet?)")
    if create:
        prepare_folder(file)
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
        raise store_fault(exc, file) or StoreError(f"cannot use store {file}: {exc}") from None
    finally:
        raw.close()
    db = SqliteDatabase(str(file), pragmas=PRAGMAS, timeout=15)
    # The Events filter's words are matched by this function (on the rows the index finds).
    # (Peewee 3.14, our lower bound, takes no ``deterministic``; nothing here needs it.)
    db.register_function(search.search_text, search.SEARCH_FUNCTION, 1)
    return db, found
