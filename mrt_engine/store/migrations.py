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

from mrt_engine.store import search

# The counters a poll_metric row gained in schema 7 (a poll's answers by status class, retries).
POLL_METRIC_COUNTS = ("http_2xx", "http_304", "http_4xx", "http_5xx", "http_retries")

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
    # 3: indexes that match what is asked of a year of history (issue 9). Each helper's block
    # below is its own; tests/test_query_plans.py checks every query's plan against them.
    [
        # ---- query shapes (issue 9 item 5) ----
        # The outbox by status and channel, newest first (queries.deliveries): with both
        # columns equal the rows come in id order, so a page is read off the index, never
        # sorted. A status or a channel alone is read as one such range per (status, channel)
        # pair, merged by id. Also finds the dead ones to requeue, and the channels (a few
        # index seeks). It replaces delivery_due, which no query uses any more: every delivery
        # is still in one index besides its unique key (and a smaller one: 20 MB, not 48 MB, for
        # a million deliveries).
        "CREATE INDEX delivery_status_channel ON delivery (status, channel)",
        "DROP INDEX delivery_due",
        # The queue a worker claims from (Outbox.claim: a channel's due rows, highest priority
        # first, in the order of its ORDER BY) and the time its next row is due
        # (Outbox.next_due: the first entry). Partial: only rows still to send are in them, so
        # they stay the size of the queue, not of the history, and a sent row leaves them. With
        # delivery_leased below they add ~3 us of CPU to a delivery's life (insert, claim, send:
        # 4.1 -> 7.2 us on a year's store), against 0.2 s saved on each claim of a long queue.
        "CREATE INDEX delivery_queue ON delivery (channel, priority DESC, next_attempt_at)"
        " WHERE status IN ('pending', 'retrying')",
        "CREATE INDEX delivery_queue_due ON delivery (channel, next_attempt_at)"
        " WHERE status IN ('pending', 'retrying')",
        # The claims an engine holds (Outbox.release at stop, Outbox.recover at start): only
        # rows being sent are in it, for the moment of the send.
        "CREATE INDEX delivery_leased ON delivery (lease_owner) WHERE lease_owner IS NOT NULL",
        # -- retention (mrt_engine/store/retention.py): how far the pruning of events has come.
        # Every event up to ``through_id`` is decided (its raw cleared, or kept because a rule
        # matched it), so a daily prune reads only the events that aged since the last one.
        """CREATE TABLE retention_mark (
            job TEXT PRIMARY KEY NOT NULL,
            through_id INTEGER NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        # -- end of retention
        # --- Events search (mrt_engine.store.search): words through a trigram index, fields
        # through indexes whose rowid order lists a value's events newest first.
        # The index holds search.indexed_text(title) (shown text, case-folded, padded), written
        # with each event by batch.write_batch. Contentless: the title is already in event, and
        # the folded copy is never read back. Titles only: with summaries the index of a year of
        # events (1M) was 1.28 GB, not 133 MB. This migration takes about 10 s of CPU on such a
        # store (plus the copy of the old file open_store keeps), once; it adds 208 MB (7%).
        "CREATE VIRTUAL TABLE event_search USING fts5(title, content='', columnsize=0,"
        " tokenize='trigram case_sensitive 1')",
        f"INSERT INTO event_search (rowid, title) SELECT id, {search.SEARCH_FUNCTION}(title)"
        f" || '{search.PAD}' FROM event",
        # Its trigrams, for words shorter than a trigram (search._terms).
        "CREATE VIRTUAL TABLE event_search_terms USING fts5vocab(event_search, instance)",
        "CREATE INDEX event_event_type ON event (event_type)",
        "CREATE INDEX event_source ON event (source)",
        "CREATE INDEX event_source_key ON event (source_key, source)",
        # --- end of Events search
        # --- idle polls (issue 9, item 3) ---
        # A poll that changed nothing is not committed on its own: the idle polls of a source
        # are written as one row per flush interval (mrt_engine/idle_polls.py). ``polls``: how
        # many polls the row stands for (1 for every other row); ``duration_ms`` is then their
        # total and ``max_duration_ms`` the longest (NULL on rows written before schema 3, each
        # of one poll: its duration_ms).
        "ALTER TABLE poll_metric ADD COLUMN polls INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE poll_metric ADD COLUMN max_duration_ms INTEGER",
        # --- end of idle polls ---
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
    # 4: engines that share a store (issue 10). Written on every backend (a SQLite store has
    # its one engine's row), used for sharing on PostgreSQL: mrt_engine/store/engines.py.
    [
        # Who runs on the store: an engine's row from its start; ``heartbeat_at`` renewed while
        # it lives on a shared store; ``stopped_at`` set at a clean stop.
        """CREATE TABLE engine_instance (
            id TEXT PRIMARY KEY NOT NULL,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            version TEXT NOT NULL,
            started_at TEXT NOT NULL,
            heartbeat_at TEXT NOT NULL,
            stopped_at TEXT
        )""",
        # Which engine polls a source, until when: one live engine per source.
        """CREATE TABLE source_lease (
            source_key TEXT PRIMARY KEY NOT NULL,
            engine_id TEXT NOT NULL,
            expires_at TEXT NOT NULL
        )""",
        "CREATE INDEX source_lease_engine ON source_lease (engine_id)",
    ],
    # 5: less noise (issue 11): bundles of deliveries (groups, digests, rate-limit folds).
    # A delivery may carry others of its channel: the carrier is claimed and sent like any
    # delivery, its members wait in status 'bundled' (out of the queue) and follow it to
    # 'sent' or 'dead'. mrt_engine/delivery/bundles.py.
    [
        # The key hits share when they may go out as one message (NULL: never grouped: a
        # protected hit, an operator's resend, a rule with ``group_by = []``).
        "ALTER TABLE delivery ADD COLUMN group_key TEXT",
        # The delivery whose message carries this one (no REFERENCES: a copy inserts rows in
        # id order, and a carrier may have a larger id than its members).
        "ALTER TABLE delivery ADD COLUMN bundle_id INTEGER",
        # What the row's message is: 'single', or the bundle it carries: 'group', 'digest',
        # 'fold'. Set when the carrier takes its members; a retry re-sends the same members.
        "ALTER TABLE delivery ADD COLUMN kind TEXT NOT NULL DEFAULT 'single'",
        # The queued rows of one group of a channel (a carrier takes them, a window defers
        # them): partial like the queue's indexes, so it stays the size of the queue.
        "CREATE INDEX delivery_queue_group ON delivery (channel, group_key)"
        " WHERE status IN ('pending', 'retrying')",
        # A carrier's members (its message, and the status they follow).
        "CREATE INDEX delivery_bundle ON delivery (bundle_id) WHERE bundle_id IS NOT NULL",
        # The sends of the last minute (a channel's rate limit counts them from the store, so
        # a restart or a second engine counts them too).
        "CREATE INDEX attempt_started ON attempt (started_at)",
        # A group's window per channel: opened by its first hit, flushed after group_wait,
        # then at most every group_interval while hits keep coming.
        """CREATE TABLE notice_group (
            id INTEGER PRIMARY KEY NOT NULL,
            channel TEXT NOT NULL,
            group_key TEXT NOT NULL,
            first_at TEXT NOT NULL,
            last_sent_at TEXT,
            UNIQUE (channel, group_key)
        )""",
        "CREATE INDEX notice_group_sent ON notice_group (last_sent_at)",
        # The last digest slot a channel's digest was taken for: a restart neither loses nor
        # repeats a digest.
        """CREATE TABLE digest_schedule (
            channel TEXT PRIMARY KEY NOT NULL,
            last_slot_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
    ],
    # 6: silences (issue 11). A silence
    # stops the deliveries of the hits its matchers match while it is active (mrt_engine/
    # silence.py); they are stored as ``silenced`` with the silence's id, never dropped.
    [
        # ``matchers``: JSON [{"field", "op", "value"}]; ``created_by``: the audit's actor.
        """CREATE TABLE silence (
            id INTEGER PRIMARY KEY NOT NULL,
            matchers TEXT NOT NULL,
            starts_at TEXT NOT NULL,
            ends_at TEXT NOT NULL,
            author TEXT NOT NULL,
            comment TEXT NOT NULL,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            expired_at TEXT,
            expired_by TEXT
        )""",
        # The silences still to end (what the engine reads when the store changed): the table
        # keeps every silence ever made, for the record.
        "CREATE INDEX silence_current ON silence (ends_at) WHERE expired_at IS NULL",
        # The silence that stopped a delivery (status 'silenced', outside the queue's partial
        # indexes); kept when an operator lets it out again, for the record.
        "ALTER TABLE delivery ADD COLUMN silence_id INTEGER REFERENCES silence (id)",
        # The deliveries of each silence (its count in the Silences view, trace): only the
        # silenced ones are in it.
        "CREATE INDEX delivery_silence ON delivery (silence_id) WHERE silence_id IS NOT NULL",
    ],
    # 7: metrics (issue 12): what a poll's and a send's figures lacked (mrt_engine/metrics.py
    # sums them, mrt_engine/prometheus.py exports them).
    [
        # A poll's answers by status class (every try, retried ones too), the retries among its
        # requests, and the rate-limit budget left after it (NULL: the upstream gave none). An
        # idle-polls row sums its polls' answers and keeps the latest budget.
        *(
            f"ALTER TABLE poll_metric ADD COLUMN {name} INTEGER NOT NULL DEFAULT 0"
            for name in POLL_METRIC_COUNTS
        ),
        "ALTER TABLE poll_metric ADD COLUMN rate_limit_remaining INTEGER",
        # What a failed send was ('temporary': retried; 'permanent': the channel refused it for
        # good) and the status it left its delivery in ('sent', 'retrying', 'dead': a dead
        # letter). NULL on attempts recorded before schema 7 and on those still in flight.
        "ALTER TABLE attempt ADD COLUMN failure TEXT",
        "ALTER TABLE attempt ADD COLUMN delivery_status TEXT",
        # A channel's oldest queued delivery (its age is a gauge every scrape reads): the first
        # entry, where the queue's other indexes would have every queued row read. Partial like
        # them: it holds the queue, not the history.
        "CREATE INDEX delivery_queue_age ON delivery (channel, created_at)"
        " WHERE status IN ('pending', 'retrying')",
    ],
    # 8: incidents (issue 13). An incident is
    # one model family's alerted events within a window, across sources (mrt_engine/
    # incidents.py), written in the poll's transaction with the alerts it links.
    [
        # ``family``: the model family's key (mrt_engine/model_names.py), ``name`` as shown.
        # ``events``, ``sources``: how many so far (the next event's "Nth source").
        """CREATE TABLE incident (
            id INTEGER PRIMARY KEY NOT NULL,
            family TEXT NOT NULL,
            name TEXT NOT NULL,
            first_event_id INTEGER NOT NULL,
            first_source TEXT NOT NULL,
            first_seen_at TEXT NOT NULL,
            last_seen_at TEXT NOT NULL,
            events INTEGER NOT NULL DEFAULT 1,
            sources INTEGER NOT NULL DEFAULT 1
        )""",
        # The open incident of a family (the newest within the window).
        "CREATE INDEX incident_family ON incident (family, first_seen_at)",
        # The Incidents view and ``mrt-engine incidents``: the latest activity first.
        "CREATE INDEX incident_last_seen ON incident (last_seen_at)",
        # An event's place in its incident's timeline (one incident per event): ``position``
        # is its number among the incident's events, ``source_position`` among its sources,
        # ``new_source`` whether it brought a source the incident had not seen.
        """CREATE TABLE incident_event (
            event_id INTEGER PRIMARY KEY NOT NULL REFERENCES event (id),
            incident_id INTEGER NOT NULL REFERENCES incident (id),
            alert_id INTEGER,
            source TEXT NOT NULL,
            seen_at TEXT NOT NULL,
            position INTEGER NOT NULL,
            source_position INTEGER NOT NULL,
            new_source INTEGER NOT NULL
        )""",
        # A timeline in order, and whether an incident has seen a source.
        "CREATE INDEX incident_event_timeline ON incident_event (incident_id, position)",
        "CREATE INDEX incident_event_source ON incident_event (incident_id, source)",
    ],
    # 9: the optional AI's (issue 13) answers and spending
    # (mrt_engine/ai/). An answer is kept by (task, model, content hash): the same text is
    # never paid for twice, across restarts and engines sharing the store.
    [
        """CREATE TABLE ai_cache (
            id INTEGER PRIMARY KEY NOT NULL,
            task TEXT NOT NULL,
            model TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            result TEXT NOT NULL,
            tokens INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            used_at TEXT NOT NULL,
            UNIQUE (task, model, content_hash)
        )""",
        # Answers not used for retention's ``ai_cache_days`` are forgotten, oldest use first.
        "CREATE INDEX ai_cache_used ON ai_cache (used_at)",
        # Tokens spent a UTC day (from the answers' ``usage``), requests and fallbacks: the
        # daily budget survives a restart.
        """CREATE TABLE ai_usage (
            day TEXT PRIMARY KEY NOT NULL,
            tokens INTEGER NOT NULL DEFAULT 0,
            requests INTEGER NOT NULL DEFAULT 0,
            fallbacks INTEGER NOT NULL DEFAULT 0,
            last_fallback TEXT,
            updated_at TEXT NOT NULL
        )""",
    ],
    # 10: the threads of incidents on channels that thread by the platform's id of a message
    # (Slack's Web API: the ``ts`` of the incident's first message there, which later ones
    # name as ``thread_ts``). Written with the send that started the thread (the outbox's
    # recording of it); the first one recorded wins.
    [
        """CREATE TABLE incident_thread (
            id INTEGER PRIMARY KEY NOT NULL,
            incident_id INTEGER NOT NULL REFERENCES incident (id),
            channel TEXT NOT NULL,
            thread_ts TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (incident_id, channel)
        )""",
    ],
]

LATEST = len(MIGRATIONS)

# What each version brings, in a line (``mrt-engine migrate --check`` lists the pending ones).
SUMMARIES: tuple[str, ...] = (
    "the engine core: sources, events, rule hits, alerts, outbox, attempts, audit, metrics",
    "history before the baseline, rules over the whole body, quarantined items",
    "indexes for a year of history, the search index, idle-poll rows, outbox and rule counters",
    "engines that share a store: engine registry and source leases",
    "less noise: bundled deliveries (groups, digests, folds), group windows, digest schedules",
    "silences: matchers that stop deliveries for a time, stored as silenced",
    "metrics: answers by status class, retries and budget per poll; kinds of failed sends; queue age",
    "incidents: one model family's alerted events across sources, with their timeline",
    "optional AI: answers cached by task, model and text; tokens spent a day",
    "incident threads: the first message of an incident on a channel that threads (Slack's ts)",
)


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


def backup_path(path: Path, version: int) -> Path:
    """Where the copy of a store file at schema ``version`` is kept before it is upgraded."""
    return path.with_name(f"{path.name}.v{version}.bak")


def migrate(conn: sqlite3.Connection, path: Path | None = None, target: int | None = None) -> int:
    """Bring the schema to ``target`` (default: the latest); returns the version found before.
    Raises StoreTooNew."""
    target = LATEST if target is None else target
    found = check_version(conn, path)
    if found >= target:
        return found
    if found > 0 and path is not None and path.exists():
        backup = backup_path(path, found)
        if not backup.exists():
            with sqlite3.connect(backup) as copy:
                conn.backup(copy)
            copy.close()
    search.register(conn)  # migration 3 fills the search index with search_text of titles
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
