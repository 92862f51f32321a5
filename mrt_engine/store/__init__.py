"""The store: Peewee models on SQLite (WAL), schema migrations, read queries for CLI and console."""

from mrt_engine.store.db import Store, StoreError, open_store

__all__ = ["Store", "StoreError", "open_store"]
