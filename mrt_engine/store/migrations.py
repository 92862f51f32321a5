"""Schema versions. ``PRAGMA user_version`` holds the version of a store file.

Each migration is a list of SQL statements applied in one exclusive transaction at start. A file
with a newer version than this code knows is refused: an old engine must not write a schema it
does not understand. Before upgrading an existing file a copy is kept next to it.

Table names do not collide with the v0 tool's (``cursor``, ``seen_events``, ``alerts``,
``notify_failures``), so a v0 state file upgrades in place and keeps its old tables untouched.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

MIGRATIONS: list[list[str]] = [
    # 1: the engine core
    [
        """CREATE TABLE source_state (
            source_key TEXT PRIMARY KEY NOT NULL,
            platform TEXT NOT NULL,
            cursor TEXT,
            etag TEXT,
            last_modified TEXT,
            validated_url TEXT,
            baseline_done INTEGER NOT NULL DEFAULT 0,
            paused INTEGER NOT NULL DEFAULT 0,
            poll_requested_at TEXT,
            last_poll_at TEXT,
            last_success_at TEXT,
            last_error TEXT,
            last_error_at TEXT,
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            backoff_until TEXT,
            next_poll_at TEXT,
            rate_limit_remaining INTEGER,
            rate_limit_reset_at TEXT,
            version INTEGER NOT NULL DEFAULT 0,
            updated_at TEXT NOT NULL
        )""",
        """CREATE TABLE event (
            id INTEGER PRIMARY KEY NOT NULL,
            fingerprint TEXT NOT NULL UNIQUE,
            source TEXT NOT NULL,
            source_key TEXT NOT NULL,
            resource_type TEXT NOT NULL,
            resource_id TEXT NOT NULL,
            event_type TEXT NOT NULL,
            event_id TEXT NOT NULL,
            title TEXT NOT NULL,
            summary TEXT NOT NULL DEFAULT '',
            url TEXT NOT NULL DEFAULT '',
            author TEXT NOT NULL DEFAULT '',
            labels TEXT NOT NULL DEFAULT '[]',
            occurred_at TEXT,
            observed_at TEXT NOT NULL,
            raw TEXT,
            baseline INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX event_source_key_occurred ON event (source_key, occurred_at)",
        "CREATE INDEX event_occurred ON event (occurred_at)",
        "CREATE INDEX event_url ON event (url)",
        """CREATE TABLE rule_hit (
            id INTEGER PRIMARY KEY NOT NULL,
            event_id INTEGER NOT NULL REFERENCES event (id),
            rule TEXT NOT NULL,
            action TEXT NOT NULL,
            priority INTEGER NOT NULL DEFAULT 0,
            reason TEXT NOT NULL,
            suppressed INTEGER NOT NULL DEFAULT 0,
            origin TEXT NOT NULL DEFAULT 'poll',
            evaluated_at TEXT NOT NULL
        )""",
        "CREATE INDEX rule_hit_event ON rule_hit (event_id)",
        "CREATE INDEX rule_hit_rule ON rule_hit (rule, evaluated_at)",
        """CREATE TABLE alert (
            id INTEGER PRIMARY KEY NOT NULL,
            event_id INTEGER NOT NULL UNIQUE REFERENCES event (id),
            rules TEXT NOT NULL DEFAULT '[]',
            priority INTEGER NOT NULL DEFAULT 0,
            tags TEXT NOT NULL DEFAULT '[]',
            origin TEXT NOT NULL DEFAULT 'poll',
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE delivery (
            id INTEGER PRIMARY KEY NOT NULL,
            alert_id INTEGER NOT NULL REFERENCES alert (id),
            channel TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            priority INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            lease_owner TEXT,
            lease_expires_at TEXT,
            last_error TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            sent_at TEXT,
            UNIQUE (alert_id, channel)
        )""",
        "CREATE INDEX delivery_due ON delivery (status, next_attempt_at)",
        """CREATE TABLE attempt (
            id INTEGER PRIMARY KEY NOT NULL,
            delivery_id INTEGER NOT NULL REFERENCES delivery (id),
            started_at TEXT NOT NULL,
            finished_at TEXT,
            duration_ms INTEGER,
            outcome TEXT NOT NULL,
            http_status INTEGER,
            reply TEXT,
            error TEXT,
            worker TEXT
        )""",
        "CREATE INDEX attempt_delivery ON attempt (delivery_id)",
        "CREATE INDEX attempt_outcome ON attempt (outcome)",
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY NOT NULL,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            before TEXT,
            after TEXT,
            detail TEXT
        )""",
        """CREATE TABLE poll_metric (
            id INTEGER PRIMARY KEY NOT NULL,
            source_key TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT NOT NULL,
            duration_ms INTEGER NOT NULL,
            outcome TEXT NOT NULL,
            http_requests INTEGER NOT NULL DEFAULT 0,
            events_fetched INTEGER NOT NULL DEFAULT 0,
            events_new INTEGER NOT NULL DEFAULT 0,
            events_matched INTEGER NOT NULL DEFAULT 0,
            alerts_created INTEGER NOT NULL DEFAULT 0,
            error TEXT
        )""",
        "CREATE INDEX poll_metric_source ON poll_metric (source_key, started_at)",
    ],
    # 2: history before the baseline, rules over the whole body, quarantined items
    [
        # When the source's baseline was taken: an event that happened before it is history.
        "ALTER TABLE source_state ADD COLUMN baseline_at TEXT",
        # A source baselined by schema 1 took its baseline at its first poll: the first event it
        # stored (lowest id: the baseline's) or its first poll metric, whichever is earlier.
        # Both are index lookups (event: a covering scan of the source's index entries), so a
        # store of a million events upgrades in about a second. Unknown stays NULL: no history.
        """UPDATE source_state SET baseline_at = (
            SELECT MIN(t) FROM (
                SELECT observed_at AS t FROM event WHERE id = (
                    SELECT MIN(id) FROM event WHERE source_key = source_state.source_key)
                UNION ALL
                SELECT MIN(started_at) FROM poll_metric
                    WHERE source_key = source_state.source_key))
        WHERE baseline_done = 1 AND baseline_at IS NULL""",
        # The text rules match (bounded), when longer than the summary excerpt.
        "ALTER TABLE event ADD COLUMN body TEXT",
        # An upstream item that could not be turned into events; the rest of its page went on.
        """CREATE TABLE quarantine (
            id INTEGER PRIMARY KEY NOT NULL,
            source_key TEXT NOT NULL,
            item_key TEXT NOT NULL,
            error TEXT NOT NULL,
            excerpt TEXT NOT NULL DEFAULT '',
            url TEXT NOT NULL DEFAULT '',
            first_seen_at TEXT NOT NULL,
            last_seen_at TEXT NOT NULL,
            times INTEGER NOT NULL DEFAULT 1,
            UNIQUE (source_key, item_key)
        )""",
    ],
    # 3: a year of history stays fast
    [
        # -- Counters the console and `status` read instead of counting the big tables. SQLite
        # triggers keep them, so every writer keeps them right: the engine, operations, the
        # delivery workers, another process, a hand-typed statement. Backfilled once here.
        # Outbox: rows per (channel, status).
        """CREATE TABLE delivery_count (
            channel TEXT NOT NULL,
            status TEXT NOT NULL,
            n INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (channel, status)
        ) WITHOUT ROWID""",
        """INSERT INTO delivery_count (channel, status, n)
            SELECT channel, status, COUNT(*) FROM delivery GROUP BY channel, status""",
        """CREATE TRIGGER delivery_count_insert AFTER INSERT ON delivery BEGIN
            INSERT INTO delivery_count (channel, status, n) VALUES (NEW.channel, NEW.status, 1)
                ON CONFLICT (channel, status) DO UPDATE SET n = n + 1;
        END""",
        """CREATE TRIGGER delivery_count_delete AFTER DELETE ON delivery BEGIN
            UPDATE delivery_count SET n = n - 1
                WHERE channel = OLD.channel AND status = OLD.status;
        END""",
        """CREATE TRIGGER delivery_count_update AFTER UPDATE OF channel, status ON delivery
            WHEN OLD.channel IS NOT NEW.channel OR OLD.status IS NOT NEW.status BEGIN
            UPDATE delivery_count SET n = n - 1
                WHERE channel = OLD.channel AND status = OLD.status;
            INSERT INTO delivery_count (channel, status, n) VALUES (NEW.channel, NEW.status, 1)
                ON CONFLICT (channel, status) DO UPDATE SET n = n + 1;
        END""",
        # Rule hits ever, per rule (last hour / day are ranges of the index rule_hit_rule).
        """CREATE TABLE rule_hit_count (
            rule TEXT PRIMARY KEY NOT NULL,
            n INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID""",
        """INSERT INTO rule_hit_count (rule, n) SELECT rule, COUNT(*) FROM rule_hit GROUP BY rule""",
        """CREATE TRIGGER rule_hit_count_insert AFTER INSERT ON rule_hit BEGIN
            INSERT INTO rule_hit_count (rule, n) VALUES (NEW.rule, 1)
                ON CONFLICT (rule) DO UPDATE SET n = n + 1;
        END""",
        """CREATE TRIGGER rule_hit_count_delete AFTER DELETE ON rule_hit BEGIN
            UPDATE rule_hit_count SET n = n - 1 WHERE rule = OLD.rule;
        END""",
        """CREATE TRIGGER rule_hit_count_update AFTER UPDATE OF rule ON rule_hit
            WHEN OLD.rule IS NOT NEW.rule BEGIN
            UPDATE rule_hit_count SET n = n - 1 WHERE rule = OLD.rule;
            INSERT INTO rule_hit_count (rule, n) VALUES (NEW.rule, 1)
                ON CONFLICT (rule) DO UPDATE SET n = n + 1;
        END""",
        # -- end of the counters
    ],
]

LATEST = len(MIGRATIONS)


class StoreTooNew(Exception):
    """The store was written by a newer version of the tracker."""


def schema_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def check_version(conn: sqlite3.Connection, path: Path | None = None) -> int:
    """The file's schema version; :class:`StoreTooNew` if this code does not know it."""
    found = schema_version(conn)
    if found > LATEST:
        raise StoreTooNew(
            f"the store {path or ''} has schema version {found}, but this mrt-engine knows "
            f"versions up to {LATEST}; upgrade mrt-engine (the store was not modified)"
        )
    return found


def migrate(conn: sqlite3.Connection, path: Path | None = None, target: int | None = None) -> int:
    """Bring the schema to ``target`` (default: the latest); returns the version found before.
    Raises StoreTooNew."""
    target = LATEST if target is None else target
    found = check_version(conn, path)
    if found >= target:
        return found
    if found > 0 and path is not None and path.exists():
        backup = path.with_name(f"{path.name}.v{found}.bak")
        if not backup.exists():
            with sqlite3.connect(backup) as copy:
                conn.backup(copy)
            copy.close()
    conn.execute("BEGIN EXCLUSIVE")
    try:
        # Re-read inside the lock: another process may have migrated meanwhile.
        current = schema_version(conn)
        for version in range(current + 1, target + 1):
            for statement in MIGRATIONS[version - 1]:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {max(current, target)}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found
