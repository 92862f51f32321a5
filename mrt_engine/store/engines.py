"""Engines on one store: who runs, and which engine polls which source.

Every engine has a row in ``engine_instance`` from its start (``register``) to its clean stop
(``stopped``). On a store several engines share (PostgreSQL), a live engine renews its
``heartbeat_at`` every few seconds and holds *leases* on the sources it polls:

* a lease is a ``source_lease`` row (source, engine, expiry). An engine polls a source only
  while it holds its lease. An engine that lost its lease while stuck (a pause longer than the
  lease) and commits a poll late cannot move the cursor back or alert twice: a poll's state
  update is conditional on the state's version (``pipeline.update_state``), and an event's
  fingerprint is unique, so a late commit fails as a concurrent change and is polled again;
* an engine renews its leases with its heartbeat; a dead engine's leases run out after one
  lease period and the others take them (no source forgotten);
* each live engine takes at most its share (the sources divided by the live engines, rounded
  up) and gives back what is over it, so a new engine gets work and a stopped one's sources
  are spread over the rest.

An engine is *live* while it has not stopped and its heartbeat is younger than the lease
period. A delivery claimed by an engine that is not live is taken back at once by the next
engine that starts or sweeps (``mrt_engine.delivery.outbox``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mrt_engine.timeutil import from_store, to_store


@dataclass(frozen=True)
class EngineView:
    id: str
    host: str
    pid: int
    version: str
    started_at: datetime | None
    heartbeat_at: datetime | None
    stopped_at: datetime | None
    live: bool
    sources: tuple[str, ...] = field(default=())


def register(
    store: Any, engine_id: str, *, host: str, pid: int, version: str, now: datetime
) -> None:
    now_s = to_store(now)
    with store.write():
        store.db.execute_sql(
            "INSERT INTO engine_instance (id, host, pid, version, started_at, heartbeat_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET heartbeat_at ="
            " excluded.heartbeat_at, stopped_at = NULL",
            (engine_id, host, pid, version, now_s, now_s),
        )


def heartbeat(store: Any, engine_id: str, now: datetime) -> None:
    with store.write():
        store.db.execute_sql(
            "UPDATE engine_instance SET heartbeat_at = ? WHERE id = ?", (to_store(now), engine_id)
        )


def stopped(store: Any, engine_id: str, now: datetime) -> None:
    """A clean stop: the engine is no longer live and its sources are free at once."""
    with store.write():
        store.db.execute_sql(
            "UPDATE engine_instance SET stopped_at = ?, heartbeat_at = ? WHERE id = ?",
            (to_store(now), to_store(now), engine_id),
        )
        store.db.execute_sql("DELETE FROM source_lease WHERE engine_id = ?", (engine_id,))


def _live_since(now: datetime, lease_seconds: float) -> str:
    return to_store(now - timedelta(seconds=lease_seconds))


def live_count(store: Any, now: datetime, lease_seconds: float) -> int:
    row = store.db.execute_sql(
        "SELECT COUNT(*) FROM engine_instance WHERE stopped_at IS NULL AND heartbeat_at > ?",
        (_live_since(now, lease_seconds),),
    ).fetchone()
    return row[0]


def take_leases(
    store: Any,
    engine_id: str,
    source_keys: Collection[str],
    *,
    now: datetime,
    lease_seconds: float,
    before_release: Callable[[list[str]], None] | None = None,
) -> set[str]:
    """Renew this engine's heartbeat and leases, give back what is over its share, take free
    ones up to it; the sources it holds now (until ``now + lease_seconds``).

    ``before_release`` is called with the sources about to be given back, before they are:
    the engine writes what it holds in memory about them (the times of idle polls), so the
    next engine knows when they were polled last."""
    keys = sorted(set(source_keys))
    now_s = to_store(now)
    until_s = to_store(now + timedelta(seconds=lease_seconds))
    with store.write():
        db = store.db
        db.execute_sql(
            "UPDATE engine_instance SET heartbeat_at = ?, stopped_at = NULL WHERE id = ?",
            (now_s, engine_id),
        )
        live = max(1, live_count(store, now, lease_seconds))
        share = math.ceil(len(keys) / live) if keys else 0
        current: dict[str, tuple[str, str]] = {}
        for chunk in _chunks(keys, 500):
            marks = ",".join("?" * len(chunk))
            for key, owner, expires in db.execute_sql(
                f"SELECT source_key, engine_id, expires_at FROM source_lease"
                f" WHERE source_key IN ({marks})",
                chunk,
            ).fetchall():
                current[key] = (owner, expires)
        mine = [k for k in keys if k in current and current[k][0] == engine_id]
        over = mine[share:]
        mine = mine[:share]
        if over and before_release is not None:
            before_release(over)
        for chunk in _chunks(over, 500):
            marks = ",".join("?" * len(chunk))
            db.execute_sql(
                f"DELETE FROM source_lease WHERE engine_id = ? AND source_key IN ({marks})",
                [engine_id, *chunk],
            )
        free = [k for k in keys if k not in current or current[k][1] <= now_s]
        wanted = [k for k in free if k not in mine][: max(0, share - len(mine))]
        held: set[str] = set()
        for key in [*mine, *wanted]:
            # Taken only if nobody else holds it now (re-checked on the row, under its lock).
            cursor = db.execute_sql(
                "INSERT INTO source_lease (source_key, engine_id, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (source_key) DO UPDATE SET engine_id = excluded.engine_id,"
                " expires_at = excluded.expires_at"
                " WHERE source_lease.engine_id = excluded.engine_id"
                " OR source_lease.expires_at <= ?",
                (key, engine_id, until_s, now_s),
            )
            if cursor.rowcount:
                held.add(key)
    return held


def engines(store: Any, now: datetime, lease_seconds: float) -> list[EngineView]:
    """Every engine that ran on the store, live ones first, with the sources each holds."""
    since = _live_since(now, lease_seconds)
    now_s = to_store(now)
    held: dict[str, list[str]] = {}
    for key, owner in store.db.execute_sql(
        "SELECT source_key, engine_id FROM source_lease WHERE expires_at > ? ORDER BY source_key",
        (now_s,),
    ).fetchall():
        held.setdefault(owner, []).append(key)
    views = []
    for row in store.db.execute_sql(
        "SELECT id, host, pid, version, started_at, heartbeat_at, stopped_at"
        " FROM engine_instance ORDER BY heartbeat_at DESC LIMIT 100"
    ).fetchall():
        engine_id, host, pid, version, started, beat, stop = row
        live = stop is None and beat > since
        views.append(
            EngineView(
                engine_id,
                host,
                pid,
                version,
                from_store(started),
                from_store(beat),
                from_store(stop),
                live,
                tuple(held.get(engine_id, ()) if live else ()),
            )
        )
    views.sort(key=lambda v: not v.live)
    return views


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
