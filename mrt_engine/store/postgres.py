"""Opening a store on PostgreSQL: psycopg (3) through Peewee, migrated to the current schema.

Imported only when ``state.url`` names PostgreSQL, so the SQLite default needs no driver.
Schema versions are :mod:`mrt_engine.store.migrations_pg`'s, held in ``mrt_schema``; engines
that start together migrate once (an advisory lock around the migration, which PostgreSQL
applies in one transaction: all of a version or none of it).

Errors are :class:`~mrt_engine.store.db.StoreError` lines naming the store by its URL without
the password (the driver's messages never hold it: it is passed as a parameter, not in a DSN).
"""

from __future__ import annotations

import contextlib
from typing import Any

from mrt_engine.store import migrations_pg
from mrt_engine.store.db import StoreError, causes
from mrt_engine.store.location import StoreLocation, StoreUrlError

INSTALL_HINT = "pip install 'model-release-tracker[postgresql]'"


def _driver() -> Any:
    try:
        import psycopg
    except ImportError:
        raise StoreError(
            f"the store is on PostgreSQL, but its driver psycopg is not installed: {INSTALL_HINT}"
        ) from None
    return psycopg


def qmark_sql(statement: str) -> str:
    """A statement written with SQLite's ``?`` marks in psycopg's words (``%s``; a literal
    ``%`` doubled). Our statements hold no ``?`` or ``%`` inside string literals."""
    return statement.replace("%", "%%").replace("?", "%s")


class QmarkCursor:
    """A psycopg cursor that takes the store's raw statements as written for SQLite.

    The code above ``store/`` writes its few raw statements once, with ``?`` marks; Peewee's own
    statements for PostgreSQL use ``%s`` and hold no ``?``, so they pass through unchanged. One
    translation at the driver, instead of a variant of every statement at every call site.
    """

    __slots__ = ("_cursor",)

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, statement: str, params: Any = None) -> Any:
        if "?" in statement:
            statement = qmark_sql(statement)
        self._cursor.execute(statement, params or None)
        return self

    def executemany(self, statement: str, rows: Any) -> Any:
        if "?" in statement:
            statement = qmark_sql(statement)
        self._cursor.executemany(statement, rows)
        return self

    def __iter__(self) -> Any:
        return iter(self._cursor)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


def database_class() -> Any:
    """Peewee's PostgreSQL database on psycopg 3 (Peewee 4: built in; 3.17+: playhouse), its
    cursors taking ``?`` marks (:class:`QmarkCursor`)."""
    import peewee

    if hasattr(peewee, "Psycopg3Adapter"):

        class Base(peewee.PostgresqlDatabase):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, prefer_psycopg3=True, **kwargs)

    else:
        from playhouse.psycopg3_ext import Psycopg3Database as Base

    class Psycopg3(Base):
        def cursor(self, *args: Any, **kwargs: Any) -> Any:
            self._drop_broken()
            return QmarkCursor(super().cursor(*args, **kwargs))

        def _drop_broken(self) -> None:
            """A connection the server dropped (a restart, a failover, an idle timeout) is
            closed here, between transactions, so this thread's next statement connects
            again: the statement that met the break failed (a poll or a send recorded as
            failed, retried later), every later one works once the server is back."""
            if self.is_closed() or self.transaction_depth():
                return
            conn = self._state.conn
            if conn is not None and (conn.closed or conn.broken):
                with contextlib.suppress(Exception):
                    self.close()

    return Psycopg3


def connect_raw(location: StoreLocation, **extra: Any) -> Any:
    """A psycopg connection of its own (autocommit), for migrations and the console's watch."""
    psycopg = _driver()
    try:
        params = location.connect_params()
    except StoreUrlError as exc:
        raise StoreError(f"cannot use the store {location}: {exc}") from None
    params.setdefault("connect_timeout", "15")
    params.update(extra)
    try:
        return psycopg.connect(autocommit=True, **params)
    except psycopg.Error as exc:
        raise StoreError(f"cannot open the store {location}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


def store_fault(exc: BaseException, location: StoreLocation) -> StoreError | None:
    """The store fault behind ``exc`` as a one-line error, or ``None`` when it is not one
    (a constraint or a programming error stays what it is)."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - a PostgreSQL store was opened, so it is there
        return None
    for cause in causes(exc):
        if isinstance(cause, StoreError):
            return cause
        if isinstance(cause, psycopg.OperationalError | psycopg.InternalError):
            return StoreError(f"cannot use the store {location}: {_reason(cause)}")
    return None


def schema_version(conn: Any) -> int:
    row = conn.execute("SELECT to_regclass('mrt_schema') IS NOT NULL").fetchone()
    if not row[0]:
        return 0
    found = conn.execute("SELECT version FROM mrt_schema").fetchone()
    return found[0] if found else 0


def check_version(conn: Any, location: StoreLocation) -> int:
    from mrt_engine.store.migrations import LATEST

    found = schema_version(conn)
    if found > LATEST:
        raise StoreError(
            f"the store {location} has schema version {found}, but this mrt-engine knows "
            f"versions up to {LATEST}; upgrade mrt-engine (the store was not modified)"
        )
    return found


def migrate(conn: Any, location: StoreLocation, target: int | None = None) -> int:
    """Bring the schema to ``target`` (default: the latest); the version found before."""
    from mrt_engine.store.migrations import LATEST

    target = LATEST if target is None else target
    found = check_version(conn, location)
    if found >= target:
        return found
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (migrations_pg.MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS mrt_schema (version INTEGER NOT NULL)")
        current = check_version(conn, location)  # another engine may have migrated meanwhile
        for version in range(current + 1, target + 1):
            for statement in migrations_pg.MIGRATIONS[version - 1]:
                conn.execute(statement)
        conn.execute("DELETE FROM mrt_schema")
        conn.execute("INSERT INTO mrt_schema (version) VALUES (%s)", (max(current, target),))
    return current


def pending(location: StoreLocation) -> tuple[int, int]:
    """(the store's version, the latest this code knows), touching nothing."""
    from mrt_engine.store.migrations import LATEST

    conn = connect_raw(location)
    try:
        return check_version(conn, location), LATEST
    finally:
        conn.close()


def open_database(location: StoreLocation, *, create: bool = True) -> tuple[Any, int]:
    """A migrated Peewee database for ``location`` and the schema version found."""
    psycopg = _driver()
    conn = connect_raw(location)
    try:
        if not create and schema_version(conn) == 0:
            raise StoreError(f"no store at {location} (has mrt-engine run with this config yet?)")
        found = migrate(conn, location)
    except psycopg.Error as exc:
        raise StoreError(f"cannot use the store {location}: {_reason(exc)}") from None
    finally:
        conn.close()
    params = location.connect_params()
    dbname = params.pop("dbname")
    params.setdefault("connect_timeout", "15")
    db = database_class()(dbname, autorollback=False, **params)
    return db, found
