"""Read queries for the CLI and the console; they return the views of
:mod:`mrt_engine.store.views`, where text leaves the store cleaned, once.

Views are safe to print to a terminal as plain text (they may still contain ``[markup]``-like
text, which a console must show literally).
"""

from __future__ import annotations

import functools
import json
import operator
import re
from datetime import datetime
from typing import Any

from peewee import SQL, fn

from mrt_engine.delivery import STATUSES
from mrt_engine.store.models import (
    Alert,
    Attempt,
    Audit,
    Delivery,
    DeliveryCount,
    Event,
    PollMetric,
    Quarantine,
    RuleHitRow,
    Silence,
    SourceState,
)
from mrt_engine.store.views import (
    AlertView,
    AttemptView,
    AuditView,
    DeliveryTrace,
    DeliveryView,
    EventView,
    HitView,
    QuarantineView,
    SilenceView,
    SourceView,
    Trace,
    clean_json,
    to_plain,
)
from mrt_engine.text import clean
from mrt_engine.wording import plural

# The views are re-exported: callers read them together with the queries that build them.
__all__ = [
    "STATUSES",
    "AlertView",
    "AttemptView",
    "AuditView",
    "DeliveryTrace",
    "DeliveryView",
    "EventView",
    "HitView",
    "QuarantineView",
    "SilenceView",
    "SourceView",
    "Trace",
    "to_plain",
]

_HEX = re.compile(r"^[0-9a-f]{6,64}$")


# ---------------------------------------------------------------------- sources
def describe_cursor(cursor: dict[str, Any] | None) -> str:
    """A cursor in one short line: a time cursor as is, a snapshot as its size and sweep time."""
    if not cursor:
        return "-"
    if isinstance(cursor.get("models"), dict):
        text = f"snapshot of {plural(len(cursor['models']), 'model')}"
        if cursor.get("swept_at"):
            text += f", swept {cursor['swept_at']}"
        if cursor.get("since"):
            text += f", since {cursor['since']}"
        return text
    return json.dumps(cursor, ensure_ascii=False, sort_keys=True)


def source_states() -> list[SourceView]:
    """Every source key with its state and its quarantined items (how many, the latest)."""
    held = quarantine_by_source()
    return [
        SourceView.of(r, *held.get(r.source_key, (0, None)))
        for r in SourceState.select().order_by(SourceState.source_key)
    ]


def source_state(source_key: str) -> SourceView | None:
    row = SourceState.get_or_none(SourceState.source_key == source_key)
    return SourceView.of(row, *quarantine_by_source().get(source_key, (0, None))) if row else None


def quarantine_by_source() -> dict[str, tuple[int, QuarantineView]]:
    """``{source_key: (quarantined items, the one seen last)}``, in one query."""
    rows = Quarantine.raw(
        "SELECT * FROM (SELECT q.*, COUNT(*) OVER (PARTITION BY source_key) AS n,"
        " ROW_NUMBER() OVER (PARTITION BY source_key ORDER BY last_seen_at DESC, id DESC)"
        " AS latest FROM quarantine q) AS ranked WHERE latest = 1"
    )
    return {row.source_key: (row.n, QuarantineView.of(row)) for row in rows}


def quarantined(ref: str) -> list[QuarantineView]:
    """Quarantined items named by ``quarantine:ID``, their URL, or their upstream id."""
    ref = ref.strip()
    if ref.startswith(("quarantine:", "q:")):
        try:
            row = Quarantine.get_or_none(Quarantine.id == int(ref.split(":", 1)[1]))
        except ValueError:
            return []
        return [QuarantineView.of(row)] if row else []
    where = Quarantine.url == ref if "://" in ref else Quarantine.item_key == ref
    return [QuarantineView.of(r) for r in Quarantine.select().where(where).order_by(Quarantine.id)]


# ---------------------------------------------------------------------- outbox
def outbox_counts() -> dict[str, dict[str, int]]:
    """``{channel: {status: n}}`` plus a ``"*"`` total, from the counters that triggers keep
    (a handful of rows, whatever the size of the outbox)."""
    out: dict[str, dict[str, int]] = {"*": {s: 0 for s in STATUSES}}
    query = DeliveryCount.select().where(DeliveryCount.n != 0)
    for row in query:
        out.setdefault(row.channel, {s: 0 for s in STATUSES})[row.status] = row.n
        out["*"][row.status] = out["*"].get(row.status, 0) + row.n
    return out


def deliveries(
    status: str | None = None,
    channel: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
    after_id: int | None = None,
) -> list[DeliveryView]:
    """Newest first; page with ``before_id`` (older rows) or ``after_id`` (newer rows)."""
    ids = delivery_ids(status, channel, limit, before_id=before_id, after_id=after_id)
    if not ids:
        return []
    query = (
        Delivery.select(Delivery, Alert, Event)
        .join(Alert)
        .join(Event)
        .where(Delivery.id.in_(ids))
        .order_by(Delivery.id.desc())
    )
    return [DeliveryView.of(d, d.alert.event) for d in query]


def delivery_ids(
    status: str | None,
    channel: str | None,
    limit: int,
    *,
    before_id: int | None = None,
    after_id: int | None = None,
) -> list[int]:
    """The ids of a page of the outbox, newest first, read without sorting the outbox.

    The ``(status, channel)`` index keeps the rows of each pair in id order. A status or a
    channel alone is one such range per pair, and SQLite merges ranges that are each in order
    (a compound SELECT ordered by id), stopping at ``limit``: a page costs its rows, not the
    matching rows (a million pending ones sorted for 50 was 4.4 s).
    """
    if status is None and channel is None:
        pairs: list[tuple[str, str] | None] = [None]  # the newest rows of the whole table
    else:
        pairs = [
            (s, c)
            for s in ([status] if status else STATUSES)
            for c in ([channel] if channel else delivery_channels(s))
        ]
    ranges = []
    for pair in pairs:
        query = Delivery.select(Delivery.id)
        if pair is not None:
            query = query.where((Delivery.status == pair[0]) & (Delivery.channel == pair[1]))
        if before_id is not None:
            query = query.where(Delivery.id < before_id)
        if after_id is not None:
            query = query.where(Delivery.id > after_id)
        ranges.append(query)
    if not ranges:
        return []
    union = functools.reduce(operator.add, ranges)  # UNION ALL
    if after_id is not None:  # the oldest rows above after_id, shown newest first
        return [r[0] for r in union.order_by(SQL('"id"')).limit(limit).tuples()][::-1]
    return [r[0] for r in union.order_by(SQL('"id" DESC')).limit(limit).tuples()]


def delivery_channels(status: str | None = None) -> list[str]:
    """The channels with deliveries (in ``status``), in name order: one index seek per channel
    and status (the outbox has a few channels and a million rows)."""
    found: set[str] = set()
    for each in [status] if status else STATUSES:
        last = ""
        while True:
            last = (
                Delivery.select(fn.MIN(Delivery.channel))
                .where((Delivery.status == each) & (Delivery.channel > last))
                .scalar()
            )
            if last is None:
                break
            found.add(last)
    return sorted(found)


def delivery(delivery_id: int) -> DeliveryView | None:
    row = (
        Delivery.select(Delivery, Alert, Event)
        .join(Alert)
        .join(Event)
        .where(Delivery.id == delivery_id)
        .first()
    )
    return DeliveryView.of(row, row.alert.event) if row else None


# ---------------------------------------------------------------------- trace
def find_events(ref: str) -> list[Event]:
    """Events named by a fingerprint (or a prefix of 6+ hex chars), a URL, or ``delivery:ID``."""
    ref = ref.strip()
    if ref.startswith(("delivery:", "d:")):
        try:
            delivery_id = int(ref.split(":", 1)[1])
        except ValueError:
            return []
        row = Delivery.get_or_none(Delivery.id == delivery_id)
        return [row.alert.event] if row else []
    if ref.startswith(("event:", "e:")):
        try:
            event_id = int(ref.split(":", 1)[1])
        except ValueError:
            return []
        row = Event.get_or_none(Event.id == event_id)
        return [row] if row else []
    if "://" in ref:
        return list(Event.select().where(Event.url == ref).order_by(Event.id))
    lowered = ref.lower()
    if _HEX.match(lowered):
        if len(lowered) == 64:
            row = Event.get_or_none(Event.fingerprint == lowered)
            return [row] if row else []
        # A range on the unique index, not LIKE (case-insensitive in SQLite: it cannot use the
        # index, and reads every event): fingerprints are lower-case hex.
        found = (
            Event.select()
            .where((Event.fingerprint >= lowered) & (Event.fingerprint < _after_prefix(lowered)))
            .order_by(Event.fingerprint)
            .limit(20)
        )
        return sorted(found, key=lambda e: e.id)
    return []


def _after_prefix(prefix: str) -> str:
    """The first text after every text that starts with ``prefix`` (its last character + 1)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def trace_event(event: Event) -> Trace:
    hits = tuple(
        HitView.of(h)
        for h in RuleHitRow.select().where(RuleHitRow.event == event).order_by(RuleHitRow.id)
    )
    alert = Alert.get_or_none(Alert.event == event)
    delivery_traces: list[DeliveryTrace] = []
    if alert is not None:
        for d in Delivery.select().where(Delivery.alert == alert).order_by(Delivery.id):
            attempts = tuple(
                AttemptView.of(a)
                for a in Attempt.select().where(Attempt.delivery == d).order_by(Attempt.id)
            )
            delivery_traces.append(DeliveryTrace(DeliveryView.of(d, event), attempts))
    return Trace(
        event=EventView.of(event, with_raw=True),
        hits=hits,
        alert=AlertView.of(alert) if alert else None,
        deliveries=tuple(delivery_traces),
    )


def trace(ref: str) -> list[Trace]:
    return [trace_event(e) for e in find_events(ref)]


# ---------------------------------------------------------------------- metrics and audit
def recent_polls(source_key: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The newest poll metrics (of ``source_key``). A row of idle polls stands for ``polls``
    of them (``started_at`` the first's start, ``finished_at`` the last's end; ``duration_ms``
    their total, ``max_duration_ms`` the longest)."""
    query = PollMetric.select().limit(limit)
    if source_key:
        # In the order of the (source_key, started_at) index: nothing sorted before the limit.
        query = query.where(PollMetric.source_key == source_key).order_by(
            PollMetric.started_at.desc(), PollMetric.id.desc()
        )
    else:
        query = query.order_by(PollMetric.id.desc())
    return [
        {
            "source_key": m.source_key,
            "started_at": m.started_at,
            "finished_at": m.finished_at,
            "polls": m.polls,
            "duration_ms": m.duration_ms,
            "max_duration_ms": m.duration_ms if m.max_duration_ms is None else m.max_duration_ms,
            "outcome": m.outcome,
            "http_requests": m.http_requests,
            "events_fetched": m.events_fetched,
            "events_new": m.events_new,
            "events_matched": m.events_matched,
            "alerts_created": m.alerts_created,
            "error": clean(m.error) if m.error else None,
        }
        for m in query
    ]


def audit_log(limit: int = 50) -> list[AuditView]:
    return [
        AuditView(
            a.id,
            a.at,
            a.actor,
            a.action,
            clean(a.target),
            clean_json(a.before),
            clean_json(a.after),
            clean(a.detail) if a.detail else None,
        )
        for a in Audit.select().order_by(Audit.id.desc()).limit(limit)
    ]


# ---------------------------------------------------------------------- silences
def silences(
    now: datetime, *, include_expired: bool = False, limit: int = 500
) -> list[SilenceView]:
    """The silences not yet ended at ``now`` (active or to start), soonest end first; with
    ``include_expired`` also the ended ones (newest first, up to ``limit``), after them."""
    current = (
        Silence.select()
        .where(Silence.expired_at.is_null() & (Silence.ends_at > now))
        .order_by(Silence.ends_at, Silence.id)
    )
    rows = list(current)
    if include_expired:
        ended = (
            Silence.select()
            .where(Silence.expired_at.is_null(False) | (Silence.ends_at <= now))
            .order_by(Silence.id.desc())
            .limit(limit)
        )
        rows += list(ended)
    held = _silenced_counts([r.id for r in rows])
    return [_silence_view(r, now, held.get(r.id, 0)) for r in rows]


def silence(silence_id: int, now: datetime) -> SilenceView | None:
    row = Silence.get_or_none(Silence.id == silence_id)
    if row is None:
        return None
    return _silence_view(row, now, _silenced_counts([row.id]).get(row.id, 0))


def _silenced_counts(ids: list[int]) -> dict[int, int]:
    """``{silence id: deliveries it holds silenced}``, through the ``delivery_silence`` index."""
    found: dict[int, int] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        query = (
            Delivery.select(Delivery.silence_id, fn.COUNT(Delivery.id))
            .where(Delivery.silence_id.in_(chunk) & (Delivery.status == "silenced"))
            .group_by(Delivery.silence_id)
            .tuples()
        )
        found.update(dict(query))
    return found


def _silence_view(row: Silence, now: datetime, held: int) -> SilenceView:
    from mrt_engine.silences import silence_of

    s = silence_of(row, cleaned=True)
    return SilenceView(
        id=s.id,
        matchers=tuple(clean(str(m)) for m in s.matchers),
        starts_at=s.starts_at,
        ends_at=s.ends_at,
        author=s.author,
        comment=s.comment,
        created_at=s.created_at,  # type: ignore[arg-type]
        created_by=s.created_by,
        expired_at=s.expired_at,
        expired_by=s.expired_by,
        state=s.state(now),
        silenced=held,
    )
