"""One poll of one source, committed as one transaction.

Fetching and rule evaluation happen outside the transaction (see :mod:`mrt_engine.batch`).
Then, under one write lock:
new events (every one, matched or not), their rule hits, alerts with one outbox row per channel,
the new cursor and validators, the items the source quarantined, and the poll's metrics commit
together or not at all. A failed poll commits only its error (consecutive failures, backoff) and
leaves the cursor where it was. A poll that changed nothing (an idle poll: a ``304``, or nothing
new with the same cursor and validators) commits nothing: its times and figures are held in
memory and written once a flush interval (:mod:`mrt_engine.idle_polls`).

A poll never raises: whatever fails inside it (the source, rule evaluation, the commit) is a
recorded poll failure, and when the store cannot even take that record, one log line says so.

If an operator changed the cursor while the fetch was under way (``cursor reset``), the state's
version no longer matches and the poll is discarded; the next poll starts from the new cursor.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from mrt_engine import incidents, quarantine
from mrt_engine.batch import CommitCounts, prepare_batch, write_batch
from mrt_engine.health import PROTECTED_TYPES, RECOVERED, UNHEALTHY, health_event
from mrt_engine.http import FetchError, HttpClient, PollSession, RateLimited, Stopped, Validators
from mrt_engine.idle_polls import IdlePolls, http_counts
from mrt_engine.incident_clusters import ClusterSettings
from mrt_engine.rules.matcher import RuleSet
from mrt_engine.secrets import shorten
from mrt_engine.silences import ActiveSilences
from mrt_engine.sources.base import PollResult, Source, SourceState
from mrt_engine.state_cache import StateCache
from mrt_engine.store.db import Store
from mrt_engine.store.migrations import POLL_METRIC_COUNTS
from mrt_engine.store.models import JsonField
from mrt_engine.store.models import SourceState as SourceStateRow
from mrt_engine.text import storable
from mrt_engine.timeutil import Clock, doubling, to_store, utcnow
from mrt_engine.wording import plural

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 1000
# An upstream's clock may run behind ours: what it dates just before our baseline may have
# happened after it. Events that recent are in the baseline anyway, so the margin costs nothing.
BASELINE_MARGIN = timedelta(minutes=10)


class ConcurrentChange(Exception):
    """The source state changed during the poll (an operator reset the cursor)."""


@dataclass(frozen=True)
class PollOutcome:
    """What one poll did, for logs, ``--once`` exit codes and tests."""

    source_key: str
    status: str  # ok | not_modified | error | backing_off | paused | busy | discarded
    events_fetched: int = 0
    events_new: int = 0
    events_matched: int = 0
    alerts_created: int = 0
    error: str | None = None
    quarantined: int = 0

    @property
    def failed(self) -> bool:
        """The source is failing: this poll failed, or it is still backing off from failures."""
        return self.status in ("error", "backing_off")


def ensure_state(store: Store, source: Source, now: datetime) -> SourceStateRow:
    """The source's state row, created on first sight."""
    row = load_state(store, source.key)
    if row is not None:
        return row
    with store.write():
        SourceStateRow.insert(
            source_key=source.key, platform=source.platform, updated_at=now, next_poll_at=now
        ).on_conflict_ignore().execute()
    return SourceStateRow.get(SourceStateRow.source_key == source.key)


# Every poll reads its state row and a successful one updates it: in plain SQL, because
# Peewee's building of those two queries cost more than SQLite's work for them (~0.5 ms a poll).
_STATE_FIELDS = SourceStateRow._meta.sorted_fields
_STATE_SELECT = (
    f"SELECT {', '.join(f.column_name for f in _STATE_FIELDS)} FROM source_state"
    " WHERE source_key = ?"
)
_STATE_UPDATES: dict[tuple[str, ...], str] = {}


def load_state(store: Store, key: str) -> SourceStateRow | None:
    """The state row of source ``key`` as Peewee loads it; ``None`` before its first sight."""
    found = store.db.execute_sql(_STATE_SELECT, (key,)).fetchone()
    if found is None:
        return None
    values = {f.name: f.python_value(v) for f, v in zip(_STATE_FIELDS, found, strict=True)}
    row = SourceStateRow(__no_default__=1, **values)
    row._dirty.clear()  # as loaded, nothing to save
    return row


def update_state(store: Store, key: str, version: int, **changes: Any) -> int:
    """Set ``changes`` (field names and Python values) on the state row of ``key`` and bump its
    version, only while its version is still ``version``. The rows changed: 0 when an operator
    changed the row in the meantime."""
    fields = SourceStateRow._meta.fields
    sql = _STATE_UPDATES.get(tuple(changes))
    if sql is None:
        assigned = ", ".join(f"{fields[name].column_name} = ?" for name in changes)
        sql = _STATE_UPDATES[tuple(changes)] = (
            f"UPDATE source_state SET {assigned}, version = version + 1"
            " WHERE source_key = ? AND version = ?"
        )
    params = [fields[name].db_value(value) for name, value in changes.items()]
    return store.db.execute_sql(sql, (*params, key, version)).rowcount


def _read_state(store: Store, source: Source, now: datetime) -> tuple[SourceStateRow, SourceState]:
    row = ensure_state(store, source, now)
    return row, source_state_of(row)


def source_state_of(row: SourceStateRow) -> SourceState:
    return SourceState(
        cursor=row.cursor,
        validators=Validators(row.etag, row.last_modified),
        validated_url=row.validated_url,
        baseline_done=row.baseline_done,
        baseline_at=row.baseline_at,
    )


class Pipeline:
    """Polls sources and commits what they found."""

    def __init__(
        self,
        store: Store,
        http: HttpClient,
        rules: RuleSet,
        *,
        clock: Clock = utcnow,
        max_backoff_seconds: float = 900.0,
        rng: random.Random | None = None,
        health: RuleSet | None = None,
        unhealthy_after: int = 5,
    ) -> None:
        self.store = store
        self.http = http
        self.rules = rules
        self.health = health
        self.unhealthy_after = unhealthy_after
        self.clock = clock
        self.max_backoff = max_backoff_seconds
        self.rng = rng or random.Random()
        self.idle = IdlePolls()  # polls that changed nothing, until the engine flushes them
        # Each source's state row as last read (and what its poll resumes from), while the
        # store is unchanged: an unchanged poll then reads nothing from it.
        self.states: StateCache[tuple[SourceStateRow, SourceState]] = StateCache(store.location)
        # The active silences a poll's alerts are matched against, read when the store changed.
        self.silences = ActiveSilences(store)
        self.incident_window = incidents.DEFAULT_WINDOW  # the engine's incidents.window_days
        self.clusters: ClusterSettings | None = None  # the engine's (AI3; None: off)

    def close(self) -> None:
        """Let go of what the pipeline holds open (the store itself is the caller's)."""
        self.states.close()
        self.silences.close()

    # ------------------------------------------------------------------ one poll
    def poll(self, source: Source, *, force: bool = False) -> PollOutcome:
        """Poll ``source`` once, unless it is paused or backing off (``force`` ignores both).

        Never raises: a failure anywhere in the poll is returned (and recorded) as an outcome.
        """
        started = self.clock()
        t0 = time.monotonic()
        try:
            row, state = self.states.get(
                source.key, lambda: _read_state(self.store, source, started)
            )
        except Exception as exc:  # the store itself fails: nothing can be recorded
            return self._unrecorded(source, exc)
        if not force:
            skip = self._skip_reason(row, source, started)
            if skip:
                log.debug("skipping %s: %s", source.key, skip[1])
                return PollOutcome(source.key, skip[0], error=skip[1])
        session = PollSession(self.http)
        try:
            result = source.poll(state, session, started)
        except Stopped:
            return PollOutcome(source.key, "discarded", error="engine stopping")
        except FetchError as exc:
            if self.http.stop.is_set():  # cut short by shutdown: not the upstream's fault
                return PollOutcome(source.key, "discarded", error="engine stopping")
            return self._failed(source, row, started, t0, session, exc, "source")
        except Exception as exc:  # a bug in a source must not stop the engine
            # The traceback is for developers (--log-level debug); the failure itself is
            # recorded and logged in one line below, and --once never prints a traceback.
            log.debug("source %s crashed", source.key, exc_info=True)
            return self._failed(source, row, started, t0, session, exc, "source")
        try:
            return self._commit(source, row, result, session, started, t0)
        except ConcurrentChange:
            log.info(
                "%s: cursor changed during the poll; discarded, next poll resumes from it",
                source.key,
            )
            return PollOutcome(source.key, "discarded", error="cursor changed during poll")
        except Exception as exc:  # rules, row building or the store: the cursor stays
            log.debug("committing a poll of %s failed", source.key, exc_info=True)
            return self._failed(source, row, started, t0, session, exc, "commit")

    def _skip_reason(
        self, row: SourceStateRow, source: Source, now: datetime
    ) -> tuple[str, str] | None:
        if row.paused:
            return "paused", "paused by an operator"
        if row.backoff_until and row.backoff_until > now:
            return (
                "backing_off",
                f"backing off until {to_store(row.backoff_until)}: {row.last_error}",
            )
        blocked = self.http.blocked_until(source.api_base)
        if blocked:
            return "backing_off", f"host rate-limited until {to_store(blocked)}"
        return None

    # ------------------------------------------------------------------ success
    def _commit(
        self,
        source: Source,
        row: SourceStateRow,
        result: PollResult,
        session: PollSession,
        started: datetime,
        t0: float,
    ) -> PollOutcome:
        finished = self.clock()
        validators = result.validators or Validators()
        fetched = len(result.events)
        status = "not_modified" if result.not_modified else "ok"
        rate = session.stats.rate_limit
        if _idle(row, result, validators):
            self.idle.record(
                source.key,
                outcome=status,
                started=started,
                finished=finished,
                next_poll_at=finished + timedelta(seconds=source.interval),
                http_requests=session.stats.requests,
                duration_ms=int((time.monotonic() - t0) * 1000),
                rate_limit=rate,
                http=session.stats,
            )
            return PollOutcome(source.key, status)
        # The first successful poll takes the baseline (a first run over a recent window: the
        # window's start); an operator's cursor reset moves it.
        baseline_at = row.baseline_at
        if not row.baseline_done:
            baseline_at = result.baseline_at or (started - BASELINE_MARGIN).replace(microsecond=0)
        recovers = row.consecutive_failures >= self.unhealthy_after  # a protected alert too
        batch = self._prepare(result.events, finished, result.baseline, baseline_at, recovers)
        if result.events and not batch.events:  # nothing usable: the answer, not an item
            raise quarantine.unusable("event", batch.quarantined)
        set_aside = [*result.quarantined, *batch.quarantined]
        incidents.embed_titles(batch, self.clusters, urgent=recovers)  # AI3: before the lock
        with self.idle.committing(self.store, source.key):
            counts = write_batch(self.store, batch, self.silences)
            if counts.alerts:  # the alerted events' incidents, in the same transaction
                incidents.assign(self.store, batch, self.incident_window, self.clusters)
            if set_aside:
                quarantine.upsert(self.store.db.cursor(), source.key, set_aside, batch.now_s)
            if recovers:
                self._health(source, RECOVERED, row.consecutive_failures, None, finished)
            updated = update_state(
                self.store,
                source.key,
                row.version,
                cursor=result.cursor,
                etag=validators.etag,
                last_modified=validators.last_modified,
                validated_url=result.validated_url,
                baseline_done=True,
                baseline_at=baseline_at,
                poll_requested_at=None,
                last_poll_at=started,
                last_success_at=finished,
                consecutive_failures=0,
                backoff_until=None,
                next_poll_at=finished + timedelta(seconds=source.interval),
                rate_limit_remaining=rate.remaining if rate else row.rate_limit_remaining,
                rate_limit_reset_at=rate.reset_at if rate else row.rate_limit_reset_at,
                updated_at=finished,
            )
            if updated != 1:
                raise ConcurrentChange(source.key)
            self._metric(source.key, started, finished, t0, status, session, fetched, counts, None)
        if counts.alerts:
            log.info(
                "%s: %s, %d matched, %s%s",
                source.key,
                plural(counts.new, "new event"),
                counts.matched,
                plural(counts.alerts, "alert"),
                " (baseline)" if result.baseline else "",
            )
        if set_aside:
            log.warning(
                "%s: %s quarantined, the rest of the answer went on (latest: %s: %s)",
                source.key,
                plural(len(set_aside), "item"),
                set_aside[-1].item_key,
                set_aside[-1].error,
            )
        return PollOutcome(
            source.key,
            status,
            fetched,
            counts.new,
            counts.matched,
            counts.alerts,
            quarantined=len(set_aside),
        )

    # ------------------------------------------------------------------ failure
    def _failed(
        self,
        source: Source,
        row: SourceStateRow,
        started: datetime,
        t0: float,
        session: PollSession,
        exc: BaseException,
        stage: str,
    ) -> PollOutcome:
        """Record the failure; when the store cannot take the record either, log one line."""
        self.store.fault(exc)  # a damaged file is remembered: the daemon stops on it
        try:
            return self._record_failure(source, row, started, t0, session, exc, stage)
        except Exception as second:
            return self._unrecorded(source, exc, second)

    def _unrecorded(
        self, source: Source, exc: BaseException, second: BaseException | None = None
    ) -> PollOutcome:
        """A failure the store could not record: one clear line, no traceback."""
        message = self._describe(exc)
        why = self._describe(second) if second is not None else message
        if why == message:
            log.error("%s: poll failed; the store could not record it: %s", source.key, message)
        else:
            log.error(
                "%s: poll failed (%s); the store could not record it: %s",
                source.key,
                message,
                why,
            )
        return PollOutcome(source.key, "error", error=message)

    def _describe(self, exc: BaseException) -> str:
        """One line for ``exc``: a store fault as the store names it, else its type and text."""
        fault = self.store.fault(exc)
        text = str(fault) if fault is not None else f"{type(exc).__name__}: {exc}"
        return storable(shorten(text, MAX_ERROR_CHARS))

    def _record_failure(
        self,
        source: Source,
        row: SourceStateRow,
        started: datetime,
        t0: float,
        session: PollSession,
        exc: BaseException,
        stage: str = "source",
    ) -> PollOutcome:
        finished = self.clock()
        message = shorten(str(exc) or type(exc).__name__, MAX_ERROR_CHARS, one_line=False)
        if not isinstance(exc, FetchError):
            message = f"internal error in {stage}: {type(exc).__name__}: {message}"
        message = storable(message)  # upstream text in an error must not fail its own record
        failures = row.consecutive_failures + 1
        if isinstance(exc, RateLimited):
            backoff_until = exc.until
        else:
            delay = doubling(source.interval, failures - 1, self.max_backoff)
            delay = max(delay, 1.0) * self.rng.uniform(0.8, 1.2)
            backoff_until = finished + timedelta(seconds=delay) if failures > 1 else None
        next_poll = max(backoff_until or finished, finished + timedelta(seconds=source.interval))
        rate = session.stats.rate_limit
        with self.idle.committing(self.store, source.key):
            SourceStateRow.update(
                last_poll_at=started,
                last_error=message,
                last_error_at=finished,
                consecutive_failures=SourceStateRow.consecutive_failures + 1,
                backoff_until=backoff_until,
                poll_requested_at=None,
                next_poll_at=next_poll,
                rate_limit_remaining=rate.remaining if rate else row.rate_limit_remaining,
                rate_limit_reset_at=rate.reset_at if rate else row.rate_limit_reset_at,
                updated_at=finished,
            ).where(SourceStateRow.source_key == source.key).execute()
            self._metric(source.key, started, finished, t0, "error", session, 0, None, message)
            if failures == self.unhealthy_after:
                self._health(source, UNHEALTHY, failures, message, finished)
        log.warning("%s: poll failed (%d in a row): %s", source.key, failures, message)
        return PollOutcome(source.key, "error", error=message)

    def _prepare(
        self,
        events: list,
        now: datetime,
        baseline: bool,
        baseline_at: datetime | None,
        urgent: bool = False,
    ):
        """Rows for ``events``: protected types by the protected rules, the rest by the user's.
        Events that happened before ``baseline_at`` are history (stored, never alerted).
        ``urgent``: the poll commits a protected alert besides (so does one with protected
        events): nothing in it waits for the AI."""
        protected = [e for e in events if e.event_type in PROTECTED_TYPES]
        if not protected or self.health is None:
            return prepare_batch(
                events, self.rules, now, baseline=baseline, baseline_at=baseline_at, urgent=urgent
            )
        batch = prepare_batch(
            [e for e in events if e.event_type not in PROTECTED_TYPES],
            self.rules,
            now,
            baseline=baseline,
            baseline_at=baseline_at,
            urgent=True,
        )
        judged = prepare_batch(
            protected, self.health, now, baseline=baseline, baseline_at=baseline_at
        )
        batch.events += judged.events
        batch.quarantined += judged.quarantined
        return batch

    def _health(
        self, source: Source, kind: str, failures: int, error: str | None, now: datetime
    ) -> None:
        """Record a health event and its alert (inside the caller's transaction)."""
        if self.health is None:
            return
        event = health_event(source.key, kind, failures, error, now)
        write_batch(self.store, prepare_batch([event], self.health, now))
        log.warning("%s: %s", source.key, event.title)

    def _metric(
        self,
        source_key: str,
        started: datetime,
        finished: datetime,
        t0: float,
        outcome: str,
        session: PollSession,
        fetched: int,
        counts: CommitCounts | None,
        error: str | None,
    ) -> None:
        duration_ms = int((time.monotonic() - t0) * 1000)
        rate = session.stats.rate_limit
        self.store.db.execute_sql(
            _INSERT_METRIC,
            (
                source_key,
                to_store(started),
                to_store(finished),
                duration_ms,
                outcome,
                session.stats.requests,
                fetched,
                counts.new if counts else 0,
                counts.matched if counts else 0,
                counts.alerts if counts else 0,
                error,
                duration_ms,
                *http_counts(session.stats),
                rate.remaining if rate else None,
            ),
        )


_JSON = JsonField()
_INSERT_METRIC = (
    "INSERT INTO poll_metric (source_key, started_at, finished_at, duration_ms, outcome,"
    " http_requests, events_fetched, events_new, events_matched, alerts_created, error,"
    f" max_duration_ms, {', '.join(POLL_METRIC_COUNTS)}, rate_limit_remaining)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def _idle(row: SourceStateRow, result: PollResult, validators: Validators) -> bool:
    """The poll changed nothing the store keeps but its times: no events, no quarantined
    items, the same cursor and validators, on a healthy source with its baseline taken and no
    poll requested (those flags are cleared by a commit)."""
    return (
        not result.events
        and not result.quarantined
        and row.baseline_done
        and not row.consecutive_failures
        and row.backoff_until is None
        and row.poll_requested_at is None
        and validators.etag == row.etag
        and validators.last_modified == row.last_modified
        and result.validated_url == row.validated_url
        # The cursor it resumed from (a 304 hands it back), or one the store would write the
        # same: key order and tuple/list differences do not count.
        and (
            result.cursor is row.cursor
            or _JSON.db_value(result.cursor) == _JSON.db_value(row.cursor)
        )
    )
