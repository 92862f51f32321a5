"""Has anything been committed to the store? One ``PRAGMA data_version``, no query.

(On PostgreSQL, :class:`PgStoreWatch`: the notifications the store's triggers send at every
commit that changed a watched table, counted without sending a query.)

SQLite changes a connection's ``data_version`` when another connection commits, never for the
connection's own writes. Peewee gives every thread its own connection, and the console reads on
a pool of worker threads, so there is no one reading connection whose number could be asked.
:class:`StoreWatch` keeps a connection of its own that never writes: every commit — by the
embedded engine's threads, the console's operations, another process, a hand-typed statement —
is then another connection's, and changes the number it reports.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# A watch must not hold up the console's UI thread: when the store is busy it says "don't know".
_BUSY_TIMEOUT_S = 0.05


class StoreWatch:
    """Tells whether the store changed since an earlier :meth:`version`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._opened = 0  # a reopened connection restarts its numbers: count the openings
        self._lock = threading.Lock()

    def version(self) -> tuple[int, int] | None:
        """A value that differs from every earlier one once anything has been committed since;
        ``None`` when the store cannot tell now (busy, gone), which callers take as changed."""
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = sqlite3.connect(
                        f"{self.path.resolve().as_uri()}?mode=rw",  # never create a file
                        uri=True,
                        timeout=_BUSY_TIMEOUT_S,
                        isolation_level=None,
                        check_same_thread=False,
                    )
                    self._opened += 1
                return self._opened, self._conn.execute("PRAGMA data_version").fetchone()[0]
            except sqlite3.Error as exc:
                log.debug("cannot read the store's data_version: %s", exc)
                self._close()
                return None

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PgStoreWatch:
    """:class:`StoreWatch` for PostgreSQL: a connection of its own that ``LISTEN``s on the
    channel every watched table's trigger notifies (migrations_pg), and counts what arrived.
    Asking reads the socket only: an unchanged store costs no query."""

    def __init__(self, location: Any) -> None:
        self.location = location
        self._conn: Any = None
        self._opened = 0
        self._seen = 0
        self._lock = threading.Lock()

    def version(self) -> tuple[int, int] | None:
        from mrt_engine.store import migrations_pg, postgres

        with self._lock:
            try:
                if self._conn is None:
                    self._conn = postgres.connect_raw(self.location, connect_timeout="2")
                    self._conn.execute(f"LISTEN {migrations_pg.CHANGE_CHANNEL}")
                    self._opened += 1
                    self._seen = 0
                pgconn = self._conn.pgconn
                pgconn.consume_input()
                while pgconn.notifies() is not None:
                    self._seen += 1
                return self._opened, self._seen
            except Exception as exc:  # a dead server, a broken socket: "cannot tell now"
                log.debug("cannot read the store's notifications: %s", exc)
                self._close()
                return None

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


def watch_store(store: Any) -> StoreWatch | PgStoreWatch:
    """The watch for ``store``'s backend."""
    if store.is_postgresql:
        return PgStoreWatch(store.location)
    return StoreWatch(store.path)
