"""What one poll writes: events, their rule hits, alerts and outbox rows, as prepared rows.

Two steps, so the write lock is held only for the part that needs it:

* :func:`prepare_batch` (no lock, no store): drops duplicates within the batch, evaluates the
  rules and builds every row except the ids. Rules are pure, so this can run while another
  poll holds the write lock. Every text of a row is :func:`~mrt_engine.text.storable`, and an
  event whose row cannot be built (a field that is not text, say) is quarantined instead of
  failing the batch: a prepared row can always be written.
* :func:`write_batch` (inside :meth:`Store.write`): inserts the events, skipping those already
  stored (same fingerprint), then the rest's hits, alerts and outbox rows, one ``executemany``
  a table.

``executemany`` of one prepared statement rather than multi-row ``INSERT ... VALUES (...),
(...)``: a multi-row text changes with the row count, so SQLite compiles it again for most
batches, which cost more than the GIL that ``executemany`` takes back after every row. On the
real poll path (tests/perf/bench_pipeline.py) it used 7% less CPU with one poll worker and 18%
less with two. Multi-row texts of a few fixed sizes (compiled once each) were measured too, on
the rows of a bench run replayed: 20% more SQLite CPU than ``executemany`` (the FTS5 index
alone took 70% more instructions), though they would hand the GIL back far less often.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mrt_engine.delivery.groups import group_key
from mrt_engine.events import TrackerEvent, stored_raw
from mrt_engine.quarantine import Quarantined, quarantined
from mrt_engine.rules.matcher import Decision, RuleSet
from mrt_engine.silence import Silence, SilenceTarget, silencing
from mrt_engine.silences import ActiveSilences, active_now
from mrt_engine.store.db import Store
from mrt_engine.store.search import indexed_text
from mrt_engine.text import storable
from mrt_engine.timeutil import from_store, to_store


def _row_encoder() -> Callable[[Any], str]:
    """JSON of a value of a row: compact, keys sorted, non-ASCII as is.

    ``JSONEncoder.encode`` makes a new C encoder on every call, which cost more than encoding
    an event's labels (it runs four times an event). This is the C encoder ``encode`` makes,
    made once, without the cycle check (a row's values come from JSON: no cycles; one would be
    a ``RecursionError``, and the event is quarantined); ``encode`` itself where the
    interpreter has no such encoder or it does not write what ``encode`` writes.
    """
    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    try:
        encode = json.encoder.c_make_encoder(  # type: ignore[misc]
            None, encoder.default, json.encoder.encode_basestring, None, ":", ",", True, False, True
        )
        sample = {"b": [1, 2.5, None, True, "\u00e9\ud800", ()], "a": {"y": "x", "x": -0.0}}
        if "".join(encode(sample, 0)) != encoder.encode(sample):
            return encoder.encode
    except Exception:  # no C encoder (another interpreter), or another signature
        return encoder.encode
    return lambda value: "".join(encode(value, 0))


dumps = _row_encoder()

# The stored JSON of a list of names (an event's labels, an alert's rules and tags): a few
# combinations come back event after event, so each is encoded once. Bounded: emptied when full.
_NAMES_JSON: dict[tuple, str] = {}
_NAMES_JSON_MAX = 4096


def names_json(names: tuple) -> str:
    """``storable(dumps(names))`` of a tuple of names, encoded once per distinct tuple."""
    try:
        text = _NAMES_JSON.get(names)
    except TypeError:  # an unhashable member (a source's bug): encoded as is, not kept
        return storable(dumps(names))
    if text is None:
        if len(_NAMES_JSON) >= _NAMES_JSON_MAX:
            _NAMES_JSON.clear()
        text = _NAMES_JSON[names] = storable(dumps(names))
    return text


# An event already stored (same fingerprint) is skipped by the insert itself, which probes the
# unique index anyway: no SELECT of the batch's fingerprints first (a second probe each).
_EVENT_INSERT = (
    "INSERT INTO event (fingerprint, source, source_key, resource_type, resource_id, event_type,"
    " event_id, title, summary, url, author, labels, occurred_at, observed_at, raw, baseline,"
    " body) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (fingerprint) DO NOTHING"
)
_EVENT_INSERT_WITH_ID = _EVENT_INSERT.replace("(fingerprint,", "(id, fingerprint,", 1).replace(
    "VALUES (?,", "VALUES (?,?,", 1
)
_SEARCH_COLUMNS = "event_search (rowid, title)"
_HIT_COLUMNS = (
    "rule_hit (event_id, rule, action, priority, reason, suppressed, origin, evaluated_at)"
)
_ALERT_COLUMNS = "alert (id, event_id, rules, priority, tags, origin, created_at)"
_DELIVERY_COLUMNS = (
    "delivery (alert_id, channel, status, attempts, priority, next_attempt_at, created_at,"
    " updated_at, silence_id, group_key)"
)


def insert_rows(cursor, table: str, rows: Sequence[tuple]) -> None:
    """``INSERT INTO table VALUES`` each of ``rows`` (all of one width), in order."""
    if rows:
        cursor.executemany(f"INSERT INTO {table} VALUES ({','.join('?' * len(rows[0]))})", rows)


@dataclass(frozen=True)
class CommitCounts:
    new: int
    matched: int
    alerts: int


@dataclass(slots=True)
class PreparedEvent:
    """One event's rows without ids: the event row from ``fingerprint`` on, hit rows from
    ``rule`` on, and the alert (with its channels) if it notifies."""

    fingerprint: str
    event_row: tuple
    hit_rows: list[tuple]
    alert_row: tuple | None  # (rules, priority, tags, origin, created_at)
    channels: tuple[str, ...]
    priority: int
    search_title: str  # the title as the Events filter's word index holds it (indexed_text)
    notify_rules: tuple[str, ...] = ()  # the rules that notified (what a silence matches)
    group_key: str | None = None  # delivery.groups.group_key: None, never grouped


@dataclass(slots=True)
class PreparedBatch:
    events: list[PreparedEvent]
    now_s: str
    quarantined: list[Quarantined] = field(default_factory=list)


def prepare_batch(
    events: Sequence[TrackerEvent],
    rules: RuleSet,
    now: datetime,
    *,
    baseline: bool = False,
    baseline_at: datetime | None = None,
) -> PreparedBatch:
    """Evaluate and render ``events`` (first of each fingerprint) into rows; touches no store.

    A baseline batch records events and hits but creates no alert. So does an event that
    happened before ``baseline_at`` (the source's baseline time): it is history, however late it
    is seen (an issue closed years ago that a bot touches today). An event whose rows cannot be
    built is set aside in ``quarantined``; the others go on.
    """
    now_s = to_store(now)
    seen: set[str] = set()
    prepared: list[PreparedEvent] = []
    set_aside: list[Quarantined] = []
    observed: dict[datetime, str] = {}  # a poll's events share their observed_at: text once
    for event in events:
        try:
            fingerprint = event.fingerprint
            if fingerprint in seen:
                continue
            seen.add(fingerprint)
            history = baseline or is_history(event, baseline_at)
            observed_s = observed.get(event.observed_at)
            if observed_s is None:
                observed_s = to_store(event.observed_at)
                if observed_s is None:
                    raise ValueError("event without an observed_at time")
                observed[event.observed_at] = observed_s
            prepared.append(_prepare_event(event, fingerprint, rules, now_s, observed_s, history))
        except Exception as exc:  # one odd event never fails the rest of the poll
            set_aside.append(_event_quarantined(event, exc))
    return PreparedBatch(prepared, now_s, set_aside)


def _prepare_event(
    event: TrackerEvent,
    fingerprint: str,
    rules: RuleSet,
    now_s: str,
    observed_s: str,
    history: bool,
) -> PreparedEvent:
    """One event's rows; a ``history`` event is recorded as baseline and alerts nothing."""
    decision = rules.evaluate(event)
    hit_rows = [
        (
            storable(hit.rule),
            hit.action,
            hit.priority,
            storable(hit.reason),
            int(hit.suppressed),
            "poll",
            now_s,
        )
        for hit in decision.hits
    ]
    notify = decision.notify and not history
    key = None
    notify_rules: tuple[str, ...] = ()
    if notify:
        notify_rules = decision.notify_rules  # a property that walks the hits: once
        group_by = rules.group_by_of(notify_rules)
        key = _group_key(event, group_by, notify_rules[0]) if group_by else None
    raw = stored_raw(event)
    (
        source,
        source_key,
        resource_type,
        resource_id,
        event_type,
        event_id,
        title,
        summary,
        url,
        author,
    ) = storable_texts(
        (
            event.source,
            event.source_key,
            event.resource_type,
            event.resource_id,
            event.event_type,
            event.event_id,
            event.title,
            event.summary,
            event.url,
            event.author,
        )
    )
    body = event.body
    return PreparedEvent(
        fingerprint,
        (
            fingerprint,
            source,
            source_key,
            resource_type,
            resource_id,
            event_type,
            event_id,
            title,
            summary,
            url,
            author,
            names_json(event.labels),
            to_store(event.occurred_at),
            observed_s,
            storable(dumps(raw)) if raw else None,
            1 if history else 0,
            # Only when it says more than the summary, so replays read what rules read.
            storable(body) if body and body != event.summary else None,
        ),
        hit_rows,
        (
            (names_json(notify_rules), decision.priority, names_json(decision.tags), "poll", now_s)
            if notify
            else None
        ),
        decision.channels if notify else (),
        decision.priority,
        indexed_text(title),  # folded here, outside the write lock
        notify_rules,
        key,
    )


def storable_texts(texts: tuple[str, ...]) -> tuple[str, ...]:
    """``tuple(storable(t) for t in texts)``: an event's texts are checked all at once, since
    nearly always none needs a change (one search of their join for U+0000, and one UTF-8
    encoding of it when it is not ASCII); each is checked on its own only when one does, or
    when one is not text at all (which then fails as :func:`storable` fails on it)."""
    try:
        joined = "".join(texts)
    except TypeError:
        return tuple(storable(t) for t in texts)
    if "\x00" in joined or (not joined.isascii() and not _encodable(joined)):
        return tuple(storable(t) for t in texts)
    return texts


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# An alert's group key, for the fields it is made of: the same few come back event after event
# (one source's resource and event types), so each is made once. Bounded: emptied when full.
_GROUP_KEYS: dict[tuple, str | None] = {}
_GROUP_KEYS_MAX = 4096


def _group_key(event: TrackerEvent, group_by: tuple[str, ...], rule: str) -> str | None:
    """:func:`~mrt_engine.delivery.groups.group_key` of ``event``, made once for its fields."""
    fields = (
        group_by,
        rule,
        event.source,
        event.source_key,
        event.resource_type,
        event.resource_id,
        event.event_type,
    )
    try:
        key = _GROUP_KEYS[fields]
    except KeyError:
        key = group_key(event, group_by, rule)
        if len(_GROUP_KEYS) >= _GROUP_KEYS_MAX:
            _GROUP_KEYS.clear()
        _GROUP_KEYS[fields] = key
    except TypeError:  # a field that is not hashable (a source's bug): made as is
        key = group_key(event, group_by, rule)
    return key


def _event_quarantined(event: TrackerEvent, exc: Exception) -> Quarantined:
    """An event that cannot be stored, as a quarantined item named by its upstream id."""
    fields = {
        name: getattr(event, name, None)
        for name in ("event_type", "event_id", "resource_id", "title", "url")
    }
    wrong = [
        name
        for name in ("source_key", "resource_id", "event_type", "event_id", "title", "url")
        if not isinstance(getattr(event, name, None), str)
    ]
    if wrong:  # the usual cause, said plainly rather than as an AttributeError
        exc = TypeError(f"event fields that are not text: {', '.join(wrong)}")
    return quarantined(fields, exc, key=lambda f: f["event_id"])


def is_history(event: TrackerEvent, baseline_at: datetime | None) -> bool:
    """Whether ``event`` happened before the source's baseline (an unknown time is news)."""
    return (
        baseline_at is not None
        and event.occurred_at is not None
        and event.occurred_at < baseline_at
    )


def write_batch(
    store: Store, batch: PreparedBatch, silences: ActiveSilences | None = None
) -> CommitCounts:
    """Insert the events of ``batch`` not yet stored, with their hits, alerts and outbox rows.

    Must run inside :meth:`Store.write`. The events' ids: see :func:`_insert_events`; the
    alerts' come from :meth:`Store.new_ids`. An alert an active silence matches gets its
    outbox rows as ``silenced`` (``silences``: the engine's, kept while the store is
    unchanged; without it they are read, when an alert needs them).
    """
    if not batch.events:
        return CommitCounts(0, 0, 0)
    cursor = store.db.cursor()
    fresh = _insert_events(store, cursor, batch.events)
    if not fresh:
        return CommitCounts(0, 0, 0)
    now_s = batch.now_s
    alert_ids = store.new_ids(cursor, "alert", sum(p.alert_row is not None for _, p in fresh))
    search_rows, hit_rows, alert_rows, delivery_rows = [], [], [], []
    matched = 0
    active: list[Silence] | None = None  # read at the first alert that may be silenced
    for event_id, item in fresh:
        search_rows.append((event_id, item.search_title))
        if item.hit_rows:
            matched += 1
            hit_rows.extend((event_id, *hit) for hit in item.hit_rows)
        if item.alert_row is not None:
            alert_id = alert_ids[len(alert_rows)]
            alert_rows.append((alert_id, event_id, *item.alert_row))
            target = silence_target(item)
            silence = None
            if not target.protected:
                if active is None:
                    at = from_store(now_s)
                    assert at is not None
                    active = active_now(store, at, silences)
                silence = silencing(active, target, at)
            delivery_rows.extend(
                outbox_rows(
                    alert_id,
                    item.channels,
                    item.priority,
                    now_s,
                    item.group_key,
                    silence_id=silence.id if silence else None,
                )
            )
    # The Events filter's word index, in step with the events (same transaction).
    insert_rows(cursor, _SEARCH_COLUMNS, search_rows)
    insert_rows(cursor, _HIT_COLUMNS, hit_rows)
    insert_alerts(cursor, alert_rows, delivery_rows)
    return CommitCounts(len(fresh), matched, len(alert_rows))


def commit_events(
    store: Store,
    events: Sequence[TrackerEvent],
    rules: RuleSet,
    now: datetime,
    *,
    baseline: bool = False,
    baseline_at: datetime | None = None,
) -> CommitCounts:
    """:func:`prepare_batch` then :func:`write_batch`; must run inside :meth:`Store.write`."""
    return write_batch(
        store, prepare_batch(events, rules, now, baseline=baseline, baseline_at=baseline_at)
    )


def alert_tail(decision: Decision, origin: str, now_s: str) -> tuple:
    """An alert row without its id and event id."""
    return (
        names_json(decision.notify_rules),
        decision.priority,
        names_json(decision.tags),
        origin,
        now_s,
    )


def outbox_rows(
    alert_id: int,
    channels: Iterable[str],
    priority: int,
    now_s: str,
    group_key: str | None = None,
    *,
    silence_id: int | None = None,
) -> list[tuple]:
    """One delivery row per channel, in :func:`insert_alerts` shape: pending, or silenced by
    ``silence_id`` (stored, out of the queue). Rows with a ``group_key`` may go out bundled with
    others of their group (mrt_engine.delivery.bundles)."""
    status = "pending" if silence_id is None else "silenced"
    return [
        (alert_id, channel, status, 0, priority, now_s, now_s, now_s, silence_id, group_key)
        for channel in channels
    ]


def silence_target(item: PreparedEvent) -> SilenceTarget:
    """What a silence reads of a prepared event's alert (see :class:`PreparedEvent`)."""
    row = item.event_row  # (fingerprint, source, source_key, resource_type, resource_id,
    # event_type, event_id, title, summary, ...)
    return SilenceTarget(row[2], row[4], row[5], item.notify_rules, row[7], row[8])


def insert_alerts(cursor, alert_rows: list[tuple], delivery_rows: list[tuple]) -> None:
    """Insert alert rows (id, event id, then :func:`alert_tail`) and their outbox rows."""
    insert_rows(cursor, _ALERT_COLUMNS, alert_rows)
    insert_rows(cursor, _DELIVERY_COLUMNS, delivery_rows)


def _insert_events(store: Store, cursor, events: list[PreparedEvent]) -> list:
    """Insert the events not stored yet (same fingerprint: skipped); ``(id, event)`` of each
    one inserted, in order.

    On a store of one engine (SQLite, under its write lock) nothing else inserts: the insert
    skips stored fingerprints itself (one probe of the unique index each, no SELECT first) and
    the rows get the next ids in order (SQLite gives a new row the largest id plus one). On a
    store several engines write at once (PostgreSQL) ids come from the table's sequence, so
    the stored fingerprints are looked up first and the new rows get ids taken for them.
    """
    if store.shared:
        known = _existing_fingerprints(cursor, [p.fingerprint for p in events])
        fresh = [p for p in events if p.fingerprint not in known]
        ids = store.new_ids(cursor, "event", len(fresh))
        if fresh:
            cursor.executemany(
                _EVENT_INSERT_WITH_ID, [(i, *p.event_row) for i, p in zip(ids, fresh, strict=True)]
            )
        return list(zip(ids, fresh, strict=True))
    next_event = _next_id(cursor, "event")
    cursor.executemany(_EVENT_INSERT, [p.event_row for p in events])
    new = cursor.rowcount  # the rows inserted: a skipped one changes nothing
    if new <= 0:
        return []
    cursor.execute("SELECT last_insert_rowid()")
    if new == len(events) and cursor.fetchone()[0] == next_event + new - 1:
        return list(enumerate(events, next_event))
    cursor.execute(  # some were stored already: the rows inserted are the ``new`` from next_event
        "SELECT fingerprint, id FROM event WHERE id >= ? ORDER BY id LIMIT ?", (next_event, new)
    )
    ids = dict(cursor.fetchall())
    return [(ids[p.fingerprint], p) for p in events if p.fingerprint in ids]


def _existing_fingerprints(cursor, fingerprints: list[str]) -> set[str]:
    known: set[str] = set()
    for i in range(0, len(fingerprints), 500):
        chunk = fingerprints[i : i + 500]
        marks = ",".join("?" * len(chunk))
        cursor.execute(f"SELECT fingerprint FROM event WHERE fingerprint IN ({marks})", chunk)
        known.update(r[0] for r in cursor.fetchall())
    return known


def _next_id(cursor, table: str) -> int:
    cursor.execute(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {table}")
    return cursor.fetchone()[0]
