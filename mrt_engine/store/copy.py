"""Moving a store: ``mrt-engine store copy --from URL --to URL``, SQLite or PostgreSQL on either
side, by one mechanism for every pair (a reader of the source, a writer of the target).

What it promises:

* The source is only read: a SQLite file is opened read-only, a PostgreSQL database read in one
  ``REPEATABLE READ, READ ONLY`` transaction; either way every table comes from one snapshot.
  A source an engine runs on is refused (what it wrote during the copy would be missing): on
  SQLite its engine lock is held for the copy, on PostgreSQL no engine may be live.
* The source must be at this mrt-engine's schema version (``mrt-engine migrate`` first); the
  target is created at it, or migrated when it is an empty store of an older one.
* Nothing is ever merged: a target that holds data is refused, and ``replace`` empties it first.
* The target is written in one transaction, so a copy that fails leaves it as it was. (A SQLite
  target is written with a rollback journal meanwhile: the file grows in place instead of a WAL
  the size of the store beside it. It is put back in WAL mode after.)
* Each table is copied in key order, in batches. ``event_search`` (the Events filter's index) is
  written from each event's title with :func:`~mrt_engine.store.search.indexed_text`, as the
  engine writes it: SQLite's contentless FTS5 index cannot give its rows back. The counters are
  recounted from the copied rows, and PostgreSQL's identity sequences are set past the highest
  ids, so the rows engines insert next do not collide.
* Before it commits, the target's row counts are compared with the source's; any difference
  rolls the copy back.
* Not copied: the engines that ran on the source and their source leases (``engine_instance``,
  ``source_lease``); engines on the copy register anew.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from mrt_engine.store import migrations
from mrt_engine.store.db import StoreError, open_store, prepare_folder, store_fault
from mrt_engine.store.location import StoreLocation
from mrt_engine.store.search import indexed_text
from mrt_engine.timeutil import to_store, utcnow


@dataclass(frozen=True)
class Table:
    """A table the copy carries, and the column it pages by (unique, in the source's order)."""

    name: str
    key: str = "id"


# In an order that inserts every row after the rows it refers to.
TABLES: tuple[Table, ...] = (
    Table("source_state", "source_key"),
    Table("event"),
    Table("rule_hit"),
    Table("alert"),
    Table("incident"),
    Table("incident_event", "event_id"),
    Table("incident_thread"),
    Table("silence"),
    Table("delivery"),
    Table("attempt"),
    Table("audit"),
    Table("poll_metric"),
    Table("quarantine"),
    Table("retention_mark", "job"),
    Table("notice_group"),
    Table("digest_schedule", "channel"),
    Table("ai_cache"),
    Table("ai_usage", "day"),
)
SEARCH = "event_search"
# Recounted from the copied rows (the triggers that keep them count one row at a time).
COUNTERS: dict[str, tuple[str, str]] = {
    "delivery_count": ("delivery", "channel, status"),
    "rule_hit_count": ("rule_hit", "rule"),
}
ENGINES = ("engine_instance", "source_lease")  # the source's engines: not copied
PROGRESS_SECONDS = 2.0  # a progress line at most this often within a table


class CopyError(StoreError):
    """The copy cannot be made, or was refused; nothing was written to the target."""


@dataclass
class TableCount:
    """One table's rows: in the source, copied, and in the target after the copy (``None``
    where the target cannot count them: SQLite's contentless search index)."""

    table: str
    source: int
    copied: int
    target: int | None


@dataclass
class CopyReport:
    source: str
    target: str
    tables: list[TableCount] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)  # rows recounted per counter table
    seconds: float = 0.0
    replaced: bool = False
    nul_replaced: int = 0  # texts with U+0000, which PostgreSQL cannot store (now U+FFFD)

    @property
    def rows(self) -> int:
        """Rows copied (the search index's rows are written, not copied: not counted here)."""
        return sum(t.copied for t in self.tables if t.table != SEARCH)


def copy_store(
    source: StoreLocation,
    target: StoreLocation,
    *,
    replace: bool = False,
    batch: int = 5000,
    lease_seconds: float = 30.0,
    progress: Callable[[str], None] = lambda line: None,
) -> CopyReport:
    """Copy the store at ``source`` into ``target`` (see the module's promises).

    ``lease_seconds``: how recent a PostgreSQL engine's heartbeat must be for it to count as
    running (``scheduler.engine_lease_seconds``). A :class:`CopyError` (a
    :class:`~mrt_engine.store.db.StoreError`) when the copy is refused or fails.
    """
    if _same(source, target):
        raise CopyError(f"cannot copy the store {source} onto itself: --to names the same store")
    started = time.perf_counter()
    report = CopyReport(str(source), str(target), replaced=replace)
    with _engine_lock(source, "source"), _engine_lock(target, "target"), _reader(source) as reader:
        _check_source(reader, source, lease_seconds)
        with _writer(target) as writer:
            writer.check_empty(replace, lease_seconds)
            writer.create()
            with writer.transaction():
                writer.clear(replace)
                _copy_tables(reader, writer, report, batch, progress)
                writer.finish(report)
                _verify(report, source, target)
    report.seconds = time.perf_counter() - started
    return report


# ---------------------------------------------------------------------- the copy itself
def _copy_tables(reader, writer, report: CopyReport, batch: int, progress) -> None:
    sizes = {t.name: reader.count(t.name) for t in TABLES}
    progress(
        f"copying {sum(sizes.values()):,} rows of {len(TABLES)} tables from {report.source}"
        f" to {report.target}"
    )
    for table in TABLES:
        columns = reader.columns(table.name)
        missing = set(columns) ^ set(writer.columns(table.name))
        if missing:  # same version, same columns: only a hand-altered schema gets here
            raise CopyError(
                f"cannot copy {table.name}: the stores' columns differ ({', '.join(sorted(missing))})"
            )
        title = columns.index("title") if table.name == "event" else None
        key = columns.index(table.key)
        select = (
            f"SELECT {', '.join(columns)} FROM {table.name} WHERE {table.key} > ?"
            f" ORDER BY {table.key} LIMIT {batch}"
        )
        first = f"SELECT {', '.join(columns)} FROM {table.name} ORDER BY {table.key} LIMIT {batch}"
        copied = searched = 0
        began = shown = time.perf_counter()
        rows = reader.rows(first, ())
        while rows:
            writer.insert(table.name, columns, rows)
            if title is not None:
                writer.insert(
                    SEARCH, ["rowid", "title"], [(r[0], indexed_text(r[title])) for r in rows]
                )
                searched += len(rows)
            copied += len(rows)
            if len(rows) < batch:
                break
            if time.perf_counter() - shown >= PROGRESS_SECONDS:
                shown = time.perf_counter()
                progress(f"{table.name}: {copied:,} of {sizes[table.name]:,} rows")
            rows = reader.rows(select, (rows[-1][key],))
        progress(f"{table.name}: {copied:,} rows in {time.perf_counter() - began:.1f} s")
        report.tables.append(TableCount(table.name, sizes[table.name], copied, None))
        if title is not None:
            report.tables.append(TableCount(SEARCH, sizes[table.name], searched, None))


def _verify(report: CopyReport, source: StoreLocation, target: StoreLocation) -> None:
    """Every table's rows: as many in the target as in the source (else the copy rolls back)."""
    wrong = [
        t
        for t in report.tables
        if t.copied != t.source or (t.target is not None and t.target != t.source)
    ]
    if wrong:
        said = ", ".join(
            f"{t.table}: {t.source:,} in the source, {t.copied:,} copied,"
            f" {'?' if t.target is None else f'{t.target:,}'} in the target"
            for t in wrong
        )
        raise CopyError(f"the copy from {source} to {target} does not match ({said}); rolled back")


def _check_source(reader, source: StoreLocation, lease_seconds: float) -> None:
    found = reader.version()
    if found > migrations.LATEST:
        raise CopyError(
            f"the source store {source} has schema version {found}, but this mrt-engine knows"
            f" versions up to {migrations.LATEST}; upgrade mrt-engine"
        )
    if found < migrations.LATEST:
        raise CopyError(
            f"the source store {source} has schema version {found} and the copy is made at"
            f" version {migrations.LATEST}: bring the source up to date first with"
            f" `mrt-engine migrate --db {source}` (nothing was copied)"
        )
    if source.is_postgresql:
        live = reader.live_engines(lease_seconds)
        if live:
            raise CopyError(
                f"{live} {'engine is' if live == 1 else 'engines are'} running on the source"
                f" store {source}: stop them first (what they write during the copy would be"
                " missing from it)"
            )


def _same(a: StoreLocation, b: StoreLocation) -> bool:
    if a.is_sqlite and b.is_sqlite:
        return os.path.realpath(a.path) == os.path.realpath(b.path)

    def where(loc: StoreLocation) -> tuple:
        p = loc.params
        return (p.get("host", "localhost"), p.get("port", "5432"), p.get("dbname"))

    return a.is_postgresql and b.is_postgresql and where(a) == where(b)


@contextmanager
def _engine_lock(location: StoreLocation, side: str) -> Iterator[None]:
    """A SQLite store's engine lock, held for the copy: no engine starts on it meanwhile."""
    if not location.is_sqlite:
        yield
        return
    from mrt_engine.store.lock import EngineAlreadyRunning, EngineLock

    if side == "source" and not location.path.is_file():
        raise CopyError(f"no store at {location.path} to copy from")
    if side == "target":
        prepare_folder(location.path)
    lock = EngineLock(location.path)
    try:
        lock.acquire()
    except EngineAlreadyRunning as exc:
        raise CopyError(f"cannot copy: the {side}: {exc}") from None
    try:
        yield
    finally:
        lock.release()


# ---------------------------------------------------------------------- reading the source
def _reader(location: StoreLocation):
    return _PostgresReader(location) if location.is_postgresql else _SqliteReader(location)


class _Reader:
    """Rows of the source, all from one snapshot (statements with ``?`` marks)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def count(self, table: str) -> int:
        return self.rows(f"SELECT COUNT(*) FROM {table}", ())[0][0]

    def live_engines(self, lease_seconds: float) -> int:
        since = to_store(utcnow() - timedelta(seconds=lease_seconds))
        query = "SELECT COUNT(*) FROM engine_instance WHERE stopped_at IS NULL AND heartbeat_at > ?"
        return self.rows(query, (since,))[0][0]


class _SqliteReader(_Reader):
    def __init__(self, location: StoreLocation) -> None:
        self.location = location
        uri = f"{location.path.resolve().as_uri()}?mode=ro"
        try:
            self.conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=15)
            self.conn.execute("BEGIN")  # one snapshot, from the first read on
        except sqlite3.Error as exc:
            raise _sqlite_fault(exc, location) from None

    def version(self) -> int:
        return self.rows("PRAGMA user_version", ())[0][0]

    def rows(self, statement: str, params: Sequence[Any]) -> list[tuple]:
        try:
            return self.conn.execute(statement, params).fetchall()
        except sqlite3.Error as exc:
            raise _sqlite_fault(exc, self.location) from None

    def columns(self, table: str) -> list[str]:
        return [d[0] for d in self.conn.execute(f"SELECT * FROM {table} LIMIT 0").description]

    def close(self) -> None:
        self.conn.close()


class _PostgresReader(_Reader):
    def __init__(self, location: StoreLocation) -> None:
        from mrt_engine.store import postgres

        self.location = location
        self.conn = postgres.connect_raw(location)
        self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")

    def version(self) -> int:
        from mrt_engine.store import postgres

        return postgres.schema_version(self.conn)

    def rows(self, statement: str, params: Sequence[Any]) -> list[tuple]:
        with _pg_errors(self.location):
            return self.conn.execute(_pg(statement), params or None).fetchall()

    def columns(self, table: str) -> list[str]:
        return _pg_columns(self.conn, table)

    def close(self) -> None:
        self.conn.close()  # the read-only transaction ends with it


# ---------------------------------------------------------------------- writing the target
def _writer(location: StoreLocation):
    return _PostgresWriter(location) if location.is_postgresql else _SqliteWriter(location)


class _Writer:
    location: StoreLocation

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_empty(self, replace: bool, lease_seconds: float) -> None:
        """Refuse a target that holds data (before anything is written to it)."""
        found = self.version()
        if found > migrations.LATEST:
            raise CopyError(
                f"the target store {self.location} has schema version {found}, but this"
                f" mrt-engine knows versions up to {migrations.LATEST}; upgrade mrt-engine"
            )
        present = self.tables()
        held = [
            (name, n)
            for name in [*(t.name for t in TABLES), *ENGINES]
            if name in present and (n := self.count(name))
        ]
        if not held:
            return
        if replace:
            if "engine_instance" in present and self.location.is_postgresql:
                since = to_store(utcnow() - timedelta(seconds=lease_seconds))
                live = self.count(
                    "engine_instance WHERE stopped_at IS NULL AND heartbeat_at > ?", (since,)
                )
                if live:
                    raise CopyError(
                        f"engines are running on the target store {self.location}: stop them"
                        " before replacing what it holds"
                    )
            return
        said = ", ".join(f"{name} {n:,}" for name, n in held[:4])
        raise CopyError(
            f"the target store {self.location} holds data ({said} rows): nothing is merged;"
            " copy into an empty store, or give --replace to empty it first (its data is lost)"
        )


class _SqliteWriter(_Writer):
    def __init__(self, location: StoreLocation) -> None:
        self.location = location
        self.path = location.path
        self.conn: sqlite3.Connection | None = None

    def _read(self, statement: str, params: Sequence[Any] = ()) -> list[tuple]:
        conn = self.conn
        if conn is None:  # before create: a read-only look, nothing created
            if not self.path.exists():
                return []
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=15)
        try:
            return conn.execute(statement, params).fetchall()
        except sqlite3.Error as exc:
            raise _sqlite_fault(exc, self.location) from None
        finally:
            if conn is not self.conn:
                conn.close()

    def version(self) -> int:
        found = self._read("PRAGMA user_version")
        return found[0][0] if found else 0

    def tables(self) -> set[str]:
        return {r[0] for r in self._read("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def count(self, what: str, params: Sequence[Any] = ()) -> int:
        return self._read(f"SELECT COUNT(*) FROM {what}", params)[0][0]

    def columns(self, table: str) -> list[str]:
        return [r[1] for r in self._read(f"PRAGMA table_info({table})")]

    def create(self) -> None:
        open_store(self.location).close()  # the schema at the latest version, in WAL mode
        self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=15)
        self.conn.execute("PRAGMA foreign_keys = ON")
        # A rollback journal for the one big transaction (see the module's docstring); when
        # another connection has the file open this stays WAL, which is only slower.
        self.conn.execute("PRAGMA journal_mode = delete")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise _sqlite_fault(exc, self.location) from None
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def clear(self, replace: bool) -> None:
        # The search index and the counters are derived: emptied even when the store is (a
        # contentless FTS5 table is emptied by its 'delete-all' command).
        self.conn.execute(f"INSERT INTO {SEARCH} ({SEARCH}) VALUES ('delete-all')")
        if replace:
            for name in [*reversed([t.name for t in TABLES]), *ENGINES]:
                self.conn.execute(f"DELETE FROM {name}")
        for name in COUNTERS:
            self.conn.execute(f"DELETE FROM {name}")

    def insert(self, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        marks = ", ".join("?" * len(columns))
        self.conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def finish(self, report: CopyReport) -> None:
        _recount(self.count, self.conn.execute, report)
        for t in report.tables:
            t.target = None if t.table == SEARCH else self.count(t.table)

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.execute("PRAGMA journal_mode = wal")
            finally:
                self.conn.close()


class _PostgresWriter(_Writer):
    def __init__(self, location: StoreLocation) -> None:
        from mrt_engine.store import postgres

        self.location = location
        self.conn = postgres.connect_raw(location)
        self.triggers_off = False
        self.nul_replaced = 0

    def _read(self, statement: str, params: Sequence[Any] = ()) -> list[tuple]:
        with _pg_errors(self.location):
            return self.conn.execute(_pg(statement), params or None).fetchall()

    def version(self) -> int:
        from mrt_engine.store import postgres

        return postgres.schema_version(self.conn)

    def tables(self) -> set[str]:
        query = (
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
        return {r[0] for r in self._read(query)}

    def count(self, what: str, params: Sequence[Any] = ()) -> int:
        return self._read(f"SELECT COUNT(*) FROM {what}", params)[0][0]

    def columns(self, table: str) -> list[str]:
        return _pg_columns(self.conn, table)

    def create(self) -> None:
        from mrt_engine.store import postgres

        with _pg_errors(self.location):
            postgres.migrate(self.conn, self.location)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with _pg_errors(self.location), self.conn.transaction():
            yield

    def clear(self, replace: bool) -> None:
        import psycopg

        from mrt_engine.store.migrations_pg import COUNTER_DELTAS

        tables = [t.name for t in TABLES]
        # The per-row counter triggers would count every row one by one; the counters are
        # recounted at the end instead. Only the tables' owner may switch them off (taking
        # the tables for the copy's transaction): for anyone else they stay on.
        try:
            with self.conn.transaction():
                for name in tables:
                    self.conn.execute(f"ALTER TABLE {name} DISABLE TRIGGER USER")
            self.triggers_off = True
        except psycopg.errors.InsufficientPrivilege:
            self.triggers_off = False
        derived = [SEARCH, *(COUNTER_DELTAS[name][0] for name in COUNTERS)]
        emptied = [*tables, *ENGINES, *derived] if replace else derived
        self.conn.execute(f"TRUNCATE {', '.join(emptied)} RESTART IDENTITY")

    def insert(self, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        rows = self._storable(rows)
        statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        with self.conn.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)

    def _storable(self, rows: list[tuple]) -> list[tuple]:
        """PostgreSQL's text cannot hold U+0000 (SQLite's can): it becomes U+FFFD, counted."""
        out = rows
        for i, row in enumerate(rows):
            if any(type(v) is str and "\x00" in v for v in row):
                if out is rows:
                    out = list(rows)
                out[i] = tuple(v.replace("\x00", "\ufffd") if type(v) is str else v for v in row)
                self.nul_replaced += 1
        return out

    def finish(self, report: CopyReport) -> None:
        from mrt_engine.store import migrations_pg
        from mrt_engine.store.migrations_pg import COUNTER_DELTAS

        for table in TABLES:
            if table.key == "id":
                # Past the highest id: the next row an engine inserts takes the one after.
                self.conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'),"
                    f" COALESCE(MAX(id), 0) + 1, false) FROM {table.name}"
                )
        _recount(self.count, lambda sql: self.conn.execute(sql), report, COUNTER_DELTAS)
        for t in report.tables:
            t.target = self.count(t.table)
        if self.triggers_off:
            for table in TABLES:
                self.conn.execute(f"ALTER TABLE {table.name} ENABLE TRIGGER USER")
        # Consoles watching the target read it again (the change triggers were off).
        self.conn.execute(f"SELECT pg_notify('{migrations_pg.CHANGE_CHANNEL}', '')")
        report.nul_replaced = self.nul_replaced

    def close(self) -> None:
        self.conn.close()


def _recount(count, execute, report: CopyReport, deltas: dict | None = None) -> None:
    """The counter tables from the copied rows, checked against them. ``deltas``: on
    PostgreSQL a counter is a view over a table of deltas (migrations_pg), written instead."""
    for name, (table, columns) in COUNTERS.items():
        written = deltas[name][0] if deltas else name
        execute(f"DELETE FROM {written}")
        execute(
            f"INSERT INTO {written} ({columns}, n) SELECT {columns}, COUNT(*) FROM {table}"
            f" GROUP BY {columns}"
        )
        report.counters[name] = count(name)


# ---------------------------------------------------------------------- backend details
def _pg(statement: str) -> str:
    from mrt_engine.store.postgres import qmark_sql

    return qmark_sql(statement) if "?" in statement else statement


def _pg_columns(conn, table: str) -> list[str]:
    cursor = conn.execute(f"SELECT * FROM {table} LIMIT 0")
    return [d.name for d in cursor.description]


@contextmanager
def _pg_errors(location: StoreLocation) -> Iterator[None]:
    """A PostgreSQL error as one line naming the store (never its password: it is not in any
    message the driver makes, being a parameter of the connection, not of a statement)."""
    import psycopg

    try:
        yield
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise CopyError(f"cannot copy with the store {location}: {reason}") from None


def _sqlite_fault(exc: sqlite3.Error, location: StoreLocation) -> StoreError:
    return store_fault(exc, location.path) or CopyError(
        f"cannot copy with the store {location.path}: {exc}"
    )
