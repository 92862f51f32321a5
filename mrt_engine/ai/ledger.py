"""What the AI said and spent, in the store (tables ``ai_cache`` and ``ai_usage``).

An answer is kept by (task, model, content hash), so the same text is never paid for twice,
across restarts and across engines sharing a store. Tokens are counted per UTC day from the
answers' ``usage``, so the daily budget survives a restart.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from mrt_engine.store.db import Store
from mrt_engine.text import storable
from mrt_engine.timeutil import to_store


def content_hash(*parts: str) -> str:
    """The key of a text (several parts kept apart, so ("ab", "c") is not ("a", "bc"))."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def day_of(now: datetime) -> str:
    return now.strftime("%Y-%m-%d")


def cached(
    store: Store, task: str, model: str, key: str, now: datetime | None = None
) -> str | None:
    """The stored answer for (task, model, key), or ``None``. A use marks the answer as used
    at ``now`` (at most once a day: a read is not a write each time), so retention
    (``retention.ai_cache_days``) forgets only answers no one asked for in that long; without
    ``now`` the store is only read."""
    cursor = store.db.execute_sql(
        "SELECT id, result, used_at FROM ai_cache"
        " WHERE task = ? AND model = ? AND content_hash = ?",
        (task, model, key),
    )
    row = cursor.fetchone()
    if row is None:
        return None
    answer_id, result, used_at = row
    if now is None:
        return result
    stale = to_store(now - timedelta(days=1))
    if used_at < stale:
        with store.write():
            store.db.execute_sql(
                "UPDATE ai_cache SET used_at = ? WHERE id = ? AND used_at < ?",
                (to_store(now), answer_id, stale),
            )
    return result


def remember(
    store: Store, task: str, model: str, key: str, result: str, tokens: int, now: datetime
) -> None:
    """Keep an answer (a second engine's answer to the same text is kept once)."""
    at = to_store(now)
    with store.write():
        store.db.execute_sql(
            "INSERT INTO ai_cache (task, model, content_hash, result, tokens, created_at,"
            " used_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (task, model, content_hash) DO NOTHING",
            (task, model, key, storable(result), tokens, at, at),
        )


def spent(store: Store, now: datetime) -> int:
    """Tokens spent on the UTC day of ``now``."""
    cursor = store.db.execute_sql("SELECT tokens FROM ai_usage WHERE day = ?", (day_of(now),))
    row = cursor.fetchone()
    return int(row[0]) if row else 0


def count(
    store: Store, now: datetime, *, tokens: int = 0, requests: int = 0, fallback: str | None = None
) -> None:
    """Add a request's tokens, or a fallback and its reason, to the day's row."""
    fallbacks = 1 if fallback is not None else 0
    with store.write():
        store.db.execute_sql(
            "INSERT INTO ai_usage (day, tokens, requests, fallbacks, last_fallback, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (day) DO UPDATE SET"
            " tokens = ai_usage.tokens + excluded.tokens,"
            " requests = ai_usage.requests + excluded.requests,"
            " fallbacks = ai_usage.fallbacks + excluded.fallbacks,"
            " last_fallback = COALESCE(excluded.last_fallback, ai_usage.last_fallback),"
            " updated_at = excluded.updated_at",
            (day_of(now), tokens, requests, fallbacks, fallback, to_store(now)),
        )


def usage(store: Store, now: datetime) -> dict[str, object]:
    """The day's row as a dict (zeros when nothing was spent)."""
    cursor = store.db.execute_sql(
        "SELECT tokens, requests, fallbacks, last_fallback FROM ai_usage WHERE day = ?",
        (day_of(now),),
    )
    row = cursor.fetchone() or (0, 0, 0, None)
    return dict(zip(("tokens", "requests", "fallbacks", "last_fallback"), row, strict=True))
