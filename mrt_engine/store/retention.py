"""Retention: what the store forgets, and when (config ``retention``).

Kept whatever their age:

* every event row. Its fingerprint is what makes an item already seen: without it an old item
  listed again (a cursor moved back, a model list swept) would be news again. Its columns are
  what rules, replays, messages, export and diff read, ``body`` included, so a replay of a new
  rule over old events finds what it would have found when they came;
* rule hits, alerts, deliveries (status, attempt count, sent time, last error), the audit log,
  and all of an event a rule matched or an alert was made for, raw JSON included.

Forgotten after their retention:

* poll metrics of polls started ``poll_metrics_days`` ago;
* the raw JSON of events no rule matched and no alert was made for, ``unmatched_raw_days``
  after they were observed (only trace shows raw JSON; nothing decides by it);
* the attempts of deliveries sent ``sent_attempts_days`` ago (by the delivery's ``sent_at``),
  all of them at once, so a trace never shows half a history. A delivery not sent (pending,
  retrying, dead) keeps every attempt whatever its age: they say why it is not sent yet, and
  they are what an operator reads before requeueing a dead one.
* the optional AI's answers (``ai_cache``) no one asked for in ``ai_cache_days`` (a use marks
  an answer at most once a day): asked again, the text is paid for once more.

How, without stalling polls: rows are found by short reads (in WAL mode a reader blocks no
writer) and changed by primary key in write transactions of at most ``batch_rows`` rows, each
re-checking its condition (a replay may have matched an event in between). Batches start at
:data:`FIRST_BATCH_ROWS` rows and double while quick; one that held the write lock longer than
half of :data:`BATCH_TARGET_SECONDS` halves the next. Between two batches the pruner pauses
``pause_seconds`` so polls and deliveries commit; a set ``stop`` ends it there.

Events are walked from a mark (table ``retention_mark``) below which every event is old and
decided, so a daily prune reads about ``unmatched_raw_days`` of events, not a year of history.
Poll metrics are found per source key through their ``(source_key, started_at)`` index, attempts
by a walk of the attempt table, which retention keeps to about ``sent_attempts_days`` of sends.

Space: SQLite reuses the pages of deleted rows for new rows, so a pruned store stops growing
but does not shrink; :func:`mrt_engine.store.space.vacuum` gives the free pages back. On
PostgreSQL (where several engines may prune at once: each batch re-checks, the mark never goes
back) autovacuum makes the dead rows' space reusable, and its own checkpointer writes the WAL.
"""

from __future__ import annotations

import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mrt_engine.store.db import Store
from mrt_engine.timeutil import to_store, utcnow

BATCH_TARGET_SECONDS = 0.05
"""The most one batch should hold the write lock: a poll waiting behind it waits no longer."""
FIRST_BATCH_ROWS = 100
"""The rows of a kind's first batch; later ones grow up to ``batch_rows`` while they are quick."""
READ_ROWS = 2000
"""Rows one read looks at: short reads keep no snapshot open for long (a WAL checkpoint waits
for the oldest snapshot)."""
_PARAMS = 900  # ids per statement: within SQLite's oldest limit on bound parameters (999)


@dataclass(frozen=True)
class RetentionPolicy:
    """How long each kind of row is kept, and how big a batch may be."""

    poll_metrics_days: float = 30.0
    unmatched_raw_days: float = 30.0
    sent_attempts_days: float = 90.0
    ai_cache_days: float = 30.0
    batch_rows: int = 2000
    pause_seconds: float = 0.05

    @classmethod
    def of(cls, config: Any) -> RetentionPolicy:
        """The policy of a config's ``retention`` section."""
        return cls(
            poll_metrics_days=config.poll_metrics_days,
            unmatched_raw_days=config.unmatched_raw_days,
            sent_attempts_days=config.sent_attempts_days,
            ai_cache_days=config.ai_cache_days,
            batch_rows=config.batch_rows,
            pause_seconds=config.pause_seconds,
        )


@dataclass
class Pruned:
    """What one kind of row lost (or, in a dry run, would lose)."""

    table: str
    action: str  # "delete" or "clear raw of"
    what: str
    before: datetime
    rows: int = 0


@dataclass
class PruneReport:
    """One prune: per kind of row what it did, and how its batches went."""

    dry_run: bool
    at: datetime
    parts: list[Pruned] = field(default_factory=list)
    batches: int = 0
    largest_batch_rows: int = 0
    longest_batch_ms: float = 0.0
    stopped: bool = False  # a stop request ended it before it was done

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts)


# ---------------------------------------------------------------------- the kinds of rows
class _Kind(ABC):
    """One kind of row to prune: how to find candidates (reads) and change them (a batch)."""

    table: str
    action: str
    what: str

    def __init__(self, before: datetime) -> None:
        self.before = before
        self.cutoff = to_store(before)

    def start(self, db: Any) -> Any:
        """Where the walk begins."""
        return None

    def unsaved(self) -> bool:
        """Whether the walk went further than what the store remembers of it."""
        return False

    def save(self, db: Any) -> None:
        """Remember how far the walk went (inside a write transaction)."""
        return None

    @abstractmethod
    def find(
        self, store: Store, position: Any, limit: int, stopped: Callable[[], bool]
    ) -> tuple[list[int], Any, bool]:
        """Up to ``limit`` ids to change after ``position``: (ids, new position, done)."""

    @abstractmethod
    def apply(self, db: Any, ids: Sequence[int], position: Any) -> int:
        """Change ``ids`` that still qualify (inside a write transaction); how many changed."""


def _in_chunks(ids: Sequence[int]) -> list[tuple[str, Sequence[int]]]:
    return [
        (",".join("?" * len(ids[i : i + _PARAMS])), ids[i : i + _PARAMS])
        for i in range(0, len(ids), _PARAMS)
    ]


class PollMetrics(_Kind):
    """Poll metrics whose poll started before the cutoff, per source key (index range)."""

    table = "poll_metric"
    action = "delete"
    what = "poll metrics"

    def find(self, store, position, limit, stopped):
        db = store.db
        key, after_at, after_id = position or (None, "", 0)
        ids: list[int] = []
        while len(ids) < limit and not stopped():
            with store.read():
                if key is None:
                    key = db.execute_sql(
                        "SELECT MIN(source_key) FROM poll_metric WHERE source_key > ?",
                        (position[0] if position else "",),
                    ).fetchone()[0]
                    if key is None:
                        return ids, position, True
                want = limit - len(ids)
                # Index range on (source_key, started_at); rows already seen at the same
                # started_at are skipped inside SQLite, so LIMIT counts only new ones.
                rows = db.execute_sql(
                    "SELECT id, started_at FROM poll_metric WHERE source_key = ?"
                    " AND started_at >= ? AND started_at < ? AND NOT (started_at = ? AND id <= ?)"
                    " ORDER BY started_at, id LIMIT ?",
                    (key, after_at, self.cutoff, after_at, after_id, want),
                ).fetchall()
            ids.extend(r[0] for r in rows)
            if rows:
                after_at, after_id = rows[-1][1], rows[-1][0]
            position = (key, after_at, after_id)
            if len(rows) < want:  # this key is done: on to the next one
                key, after_at, after_id = None, "", 0
        return ids, position, False

    def apply(self, db, ids, position):
        changed = 0
        for marks, chunk in _in_chunks(ids):
            changed += db.execute_sql(
                f"DELETE FROM poll_metric WHERE id IN ({marks}) AND started_at < ?",
                (*chunk, self.cutoff),
            ).rowcount
        return changed


# Each event's first hit and its alert looked up by key, not EXISTS: PostgreSQL may answer an
# EXISTS by hashing the whole rule_hit (or alert) table, for a read of 2000 events.
_UNMATCHED = (
    "CASE WHEN raw IS NULL THEN 0"
    " WHEN (SELECT 1 FROM rule_hit WHERE rule_hit.event_id = event.id LIMIT 1) IS NOT NULL"
    " THEN 0 WHEN (SELECT 1 FROM alert WHERE alert.event_id = event.id) IS NOT NULL THEN 0"
    " ELSE 1 END"
)


class UnmatchedRaw(_Kind):
    """The raw JSON of events observed before the cutoff that no rule matched and no alert
    was made for, walked by id from the mark the last prune left."""

    table = "event"
    action = "clear raw of"
    what = "unmatched events"
    job = "event_raw"

    def __init__(self, before: datetime) -> None:
        super().__init__(before)
        self.decided = self.saved = 0
        self.young_seen = False

    def start(self, db):
        row = db.execute_sql(
            "SELECT through_id FROM retention_mark WHERE job = ?", (self.job,)
        ).fetchone()
        # Every event up to ``decided`` is old and done with; the mark moves only over such a
        # run of events, so one observed out of order (a clock set back) is never skipped.
        self.decided = self.saved = row[0] if row else 0
        self.young_seen = False
        return self.decided

    def find(self, store, position, limit, stopped):
        ids: list[int] = []
        while not stopped():
            with store.read():
                rows = store.db.execute_sql(
                    f"SELECT id, observed_at, {_UNMATCHED} FROM event WHERE id > ?"
                    " ORDER BY id LIMIT ?",
                    (position, READ_ROWS),
                ).fetchall()
            for event_id, observed_at, unmatched in rows:
                position = event_id
                if observed_at >= self.cutoff:
                    self.young_seen = True
                    continue
                if not self.young_seen:
                    self.decided = event_id
                if unmatched:
                    ids.append(event_id)
                    if len(ids) == limit:
                        return ids, position, False
            if len(rows) < READ_ROWS:
                return ids, position, True
        return ids, position, False

    def apply(self, db, ids, position):
        changed = 0
        for marks, chunk in _in_chunks(ids):
            changed += db.execute_sql(
                f"UPDATE event SET raw = NULL WHERE id IN ({marks}) AND {_UNMATCHED} = 1",
                tuple(chunk),
            ).rowcount
        self.save(db)  # in the same transaction: the mark never passes an uncleared event
        return changed

    def unsaved(self) -> bool:
        return self.decided > self.saved

    def save(self, db):
        if not self.unsaved():
            return
        # Never backwards: a prune of another process may have come further. (A CASE, not
        # MAX(a, b) or GREATEST: each backend knows only one of those.)
        db.execute_sql(
            "INSERT INTO retention_mark (job, through_id, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (job) DO UPDATE SET through_id = CASE WHEN excluded.through_id >"
            " retention_mark.through_id THEN excluded.through_id ELSE retention_mark.through_id"
            " END, updated_at = excluded.updated_at",
            (self.job, self.decided, to_store(utcnow())),
        )
        self.saved = self.decided


class SentAttempts(_Kind):
    """The attempts of deliveries sent before the cutoff, walked by attempt id."""

    table = "attempt"
    action = "delete"
    what = "attempts of sent deliveries"

    def find(self, store, position, limit, stopped):
        position = position or 0
        ids: list[int] = []
        while not stopped():
            with store.read():
                # A walk of attempts by id, each one's delivery looked up by key (not a join,
                # which PostgreSQL may answer by hashing every delivery for 2000 attempts).
                rows = store.db.execute_sql(
                    "SELECT a.id, (SELECT d.status = 'sent' AND d.sent_at < ? FROM delivery AS d"
                    " WHERE d.id = a.delivery_id) FROM attempt AS a WHERE a.id > ?"
                    " ORDER BY a.id LIMIT ?",
                    (self.cutoff, position, READ_ROWS),
                ).fetchall()
            for attempt_id, old in rows:
                position = attempt_id
                if old:
                    ids.append(attempt_id)
                    if len(ids) == limit:
                        return ids, position, False
            if len(rows) < READ_ROWS:
                return ids, position, True
        return ids, position, False

    def apply(self, db, ids, position):
        changed = 0
        for marks, chunk in _in_chunks(ids):
            changed += db.execute_sql(
                f"DELETE FROM attempt WHERE id IN ({marks}) AND EXISTS (SELECT 1 FROM delivery"
                " AS d WHERE d.id = attempt.delivery_id AND d.status = 'sent' AND d.sent_at < ?)",
                (*chunk, self.cutoff),
            ).rowcount
        return changed


# A group's window is closed once its group_interval (30 days at most) has passed since its
# last message: its row says no more than a missing one (the next hit opens a new window).
CLOSED_GROUP_DAYS = 31


class _UsedBefore(_Kind):
    """Rows of ``table`` whose ``column`` (a time) is before the cutoff, in that time's order
    (index range); a row whose time moved past the cutoff since the read is kept."""

    column = ""
    action = "delete"

    def find(self, store, position, limit, stopped):
        after_at, after_id = position or ("", 0)
        table, column = self.table, self.column
        with store.read():
            rows = store.db.execute_sql(
                f"SELECT id, {column} FROM {table} WHERE {column} >= ? AND {column} < ?"
                f" AND NOT ({column} = ? AND id <= ?) ORDER BY {column}, id LIMIT ?",
                (after_at, self.cutoff, after_at, after_id, limit),
            ).fetchall()
        if rows:
            position = (rows[-1][1], rows[-1][0])
        return [r[0] for r in rows], position, len(rows) < limit

    def apply(self, db, ids, position):
        changed = 0
        for marks, chunk in _in_chunks(ids):
            changed += db.execute_sql(
                f"DELETE FROM {self.table} WHERE id IN ({marks}) AND {self.column} < ?",
                (*chunk, self.cutoff),
            ).rowcount
        return changed


class ClosedGroups(_UsedBefore):
    """Group windows (``notice_group``) whose last message went out before the cutoff."""

    table = "notice_group"
    column = "last_sent_at"
    what = "closed group windows"


class UnusedAnswers(_UsedBefore):
    """The optional AI's answers (``ai_cache``) last used before the cutoff (a use since the
    read keeps the answer)."""

    table = "ai_cache"
    column = "used_at"
    what = "AI answers not used"


def kinds(policy: RetentionPolicy, now: datetime) -> list[_Kind]:
    """What a prune at ``now`` looks at, in the order it does."""
    return [
        PollMetrics(now - timedelta(days=policy.poll_metrics_days)),
        UnmatchedRaw(now - timedelta(days=policy.unmatched_raw_days)),
        SentAttempts(now - timedelta(days=policy.sent_attempts_days)),
        ClosedGroups(now - timedelta(days=CLOSED_GROUP_DAYS)),
        UnusedAnswers(now - timedelta(days=policy.ai_cache_days)),
    ]


# ---------------------------------------------------------------------- prune
def prune(
    store: Store,
    policy: RetentionPolicy,
    now: datetime,
    *,
    dry_run: bool = False,
    stop: threading.Event | None = None,
    actor: str = "engine",
) -> PruneReport:
    """Forget what ``policy`` lets go as of ``now``, in batches; with ``dry_run`` only count it.

    A set ``stop`` ends the prune between two batches (what is done stays done). A prune that
    changed rows writes one audit row with the count per table.
    """
    stop = stop or threading.Event()
    report = PruneReport(dry_run, now)
    for kind in kinds(policy, now):
        # Each kind starts small and doubles while its batches are quick: rows of one kind cost
        # alike, those of two kinds do not (an event's row is rewritten with its body, a metric
        # is a short row deleted), so no kind's first batch is a long one.
        size = (
            max(policy.batch_rows, READ_ROWS)
            if dry_run
            else min(policy.batch_rows, FIRST_BATCH_ROWS)
        )
        part = Pruned(kind.table, kind.action, kind.what, kind.before)
        report.parts.append(part)
        with store.read():
            position = kind.start(store.db)
        done = False
        while not done and not stop.is_set():
            ids, position, done = kind.find(store, position, size, stop.is_set)
            if dry_run:
                part.rows += len(ids)
                continue
            if not ids:
                continue
            with store.write():
                began = time.perf_counter()
                part.rows += kind.apply(store.db, ids, position)
            held = time.perf_counter() - began
            report.batches += 1
            report.largest_batch_rows = max(report.largest_batch_rows, len(ids))
            report.longest_batch_ms = max(report.longest_batch_ms, held * 1000)
            # Aim at a half of the target, so that a batch that meets a slow disk or a WAL
            # checkpoint still stays near it.
            if held > BATCH_TARGET_SECONDS / 2:
                size = max(size // 2, 1)
            elif held < BATCH_TARGET_SECONDS / 4:
                size = min(size * 2, policy.batch_rows)
            # Copy the batch from the WAL into the file now, outside the write lock (a passive
            # checkpoint waits for no one): else the commit that passes the WAL's autocheckpoint
            # size does it, holding the write lock 100-200 ms on a store of gigabytes.
            store.checkpoint()
            stop.wait(policy.pause_seconds)  # the writer is free for polls and deliveries
        if kind.unsaved() and not dry_run:
            with store.write():  # the walk went past events it had nothing to do with
                kind.save(store.db)
        if not done:
            report.stopped = True
            break
    if report.rows and not dry_run:
        with store.write():
            store.db.execute_sql(
                "INSERT INTO audit (at, actor, action, target, after) VALUES (?, ?, ?, ?, ?)",
                (
                    to_store(now),
                    actor,
                    "prune",
                    "store",
                    json.dumps({p.table: p.rows for p in report.parts}),
                ),
            )
    return report
