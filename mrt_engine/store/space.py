"""How big the store is, and giving its free space back: ``mrt-engine store stats|vacuum``.

Retention (:mod:`mrt_engine.store.retention`) deletes rows; SQLite keeps their pages as free
pages and fills them with new rows, so a store under retention stops growing but does not
shrink. The store is not created with ``auto_vacuum``: it would move pages and fsync daily for
space the next days fill again. After the first prune of an old store, :func:`vacuum` rewrites
the file without its free pages, once, with no engine running.

On PostgreSQL the sizes are the server's (``pg_table_size``, ``pg_indexes_size``,
``pg_database_size``); its autovacuum makes pruned rows' space reusable, and giving it back to
the disk (``VACUUM FULL``) locks each table while it is rewritten: an operator's choice, not
``store vacuum``'s.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrt_engine.store.db import Store


@dataclass
class TableStats:
    """One table: its rows, and the bytes of its pages and of its indexes' pages."""

    table: str
    rows: int
    bytes: int | None  # None: this SQLite has no dbstat table to tell
    index_bytes: int | None


@dataclass
class FileStats:
    """The store's file: its bytes, its write-ahead log's, and those of its free pages (deleted
    rows' pages, which new rows reuse)."""

    bytes: int
    wal_bytes: int
    free_bytes: int
    page_size: int
    pages: int


@dataclass
class StoreStats:
    """The store's file (SQLite) or database (PostgreSQL: ``database_bytes``) and tables.
    ``path`` is the store as messages show it (a file, or a URL without its password)."""

    path: str
    file: FileStats | None
    tables: list[TableStats]
    database_bytes: int | None = None


def store_stats(store: Store) -> StoreStats:
    """Rows and bytes per table (bytes from SQLite's ``dbstat`` table when it is compiled in),
    with the sizes of the file, its WAL and its free pages. Reads every page: seconds on a
    store of gigabytes. (PostgreSQL: :func:`_postgresql_stats`.)"""
    if store.is_postgresql:
        return _postgresql_stats(store)
    db = store.db
    with store.read():
        names = [
            r[0]
            for r in db.execute_sql(
                # A virtual table (the FTS5 search index) is stored in its shadow tables, which
                # are listed; a contentless one cannot even be counted.
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND sql NOT LIKE 'CREATE VIRTUAL TABLE%' ORDER BY name"
            ).fetchall()
        ]
        rows = {name: _count(db, name) for name in names}
        rows["sqlite_schema"] = _count(db, "sqlite_master")  # its newer name (SQLite 3.33)
        sizes = _page_bytes(db)
        page_size = db.execute_sql("PRAGMA page_size").fetchone()[0]
        pages = db.execute_sql("PRAGMA page_count").fetchone()[0]
        free = db.execute_sql("PRAGMA freelist_count").fetchone()[0]
    tables = [
        TableStats(
            name,
            count,
            sizes.get(name, [0, 0])[0] if sizes is not None else None,
            sizes.get(name, [0, 0])[1] if sizes is not None else None,
        )
        for name, count in rows.items()
    ]
    wal = Path(f"{store.path}-wal")
    file = FileStats(
        bytes=store.path.stat().st_size,
        wal_bytes=wal.stat().st_size if wal.exists() else 0,
        free_bytes=free * page_size,
        page_size=page_size,
        pages=pages,
    )
    return StoreStats(str(store.path), file, tables)


def _count(db: Any, table: str) -> int:
    quoted = '"' + table.replace('"', '""') + '"'
    return db.execute_sql(f"SELECT COUNT(*) FROM {quoted}").fetchone()[0]


def _page_bytes(db: Any) -> dict[str, list[int]] | None:
    """Per table, the bytes of its own pages and of its indexes' pages; None without dbstat."""
    try:
        found = db.execute_sql(
            "SELECT COALESCE(m.tbl_name, s.name), m.type = 'index', SUM(s.pgsize)"
            " FROM dbstat AS s LEFT JOIN sqlite_master AS m ON m.name = s.name"
            " GROUP BY 1, 2"
        ).fetchall()
    except sqlite3.OperationalError:  # SQLite built without SQLITE_ENABLE_DBSTAT_VTAB
        return None
    sizes: dict[str, list[int]] = {}
    for table, is_index, size in found:
        table = "sqlite_schema" if table == "sqlite_master" else table  # dbstat before 3.33
        sizes.setdefault(table, [0, 0])[1 if is_index else 0] += size
    return sizes


def _postgresql_stats(store: Store) -> StoreStats:
    """:func:`store_stats` on PostgreSQL: exact row counts (as on SQLite: every row is read),
    each table's bytes (its heap and TOAST, ``pg_table_size``) and its indexes' bytes, and the
    database's size. The tables are those of the store's schema (the first on the search path)."""
    db = store.db
    with store.read():
        found = db.execute_sql(
            "SELECT c.relname, pg_table_size(c.oid), pg_indexes_size(c.oid)"
            " FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') ORDER BY c.relname"
        ).fetchall()
        tables = [
            TableStats(name, _count(db, name), table_bytes, index_bytes)
            for name, table_bytes, index_bytes in found
        ]
        database = db.execute_sql("SELECT pg_database_size(current_database())").fetchone()[0]
    return StoreStats(str(store), None, tables, database_bytes=database)


def vacuum(store: Store) -> tuple[int, int]:
    """Rewrite the store without its free pages (``VACUUM``); the file's bytes before and after.

    It writes the whole database once and needs up to that much free disk space; no other
    connection may write meanwhile (the caller holds the engine's lock).
    """
    before = _file_bytes(store.path)
    store.db.execute_sql("VACUUM")
    store.db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return before, _file_bytes(store.path)


def _file_bytes(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return os.path.getsize(path) + (os.path.getsize(wal) if wal.exists() else 0)
