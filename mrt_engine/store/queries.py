"""Read queries for the CLI and the console; they return the views of
:mod:`mrt_engine.store.views`, where text leaves the store cleaned, once.

Views are safe to print to a terminal as plain text (they may still contain ``[markup]``-like
text, which a console must show literally).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from peewee import fn

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
    "SourceView",
    "Trace",
    "to_plain",
]

STATUSES = ("pending", "retrying", "sent", "dead")
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
        " AS latest FROM quarantine q) WHERE latest = 1"
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
) -> list[DeliveryView]:
    """Newest first; page with ``before_id``."""
    query = (
        Delivery.select(Delivery, Alert, Event)
        .join(Alert)
        .join(Event)
        .order_by(Delivery.id.desc())
        .limit(limit)
    )
    if status:
        query = query.where(Delivery.status == status)
    if channel:
        query = query.where(Delivery.channel == channel)
    if before_id is not None:
        query = query.where(Delivery.id < before_id)
    return [DeliveryView.of(d, d.alert.event) for d in query]


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
        return list(
            Event.select().where(Event.fingerprint.startswith(lowered)).order_by(Event.id).limit(20)
        )
    return []


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
    query = PollMetric.select().order_by(PollMetric.id.desc()).limit(limit)
    if source_key:
        query = query.where(PollMetric.source_key == source_key)
    return [
        {
            "source_key": m.source_key,
            "started_at": m.started_at,
            "duration_ms": m.duration_ms,
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


def attempt_outcomes() -> Counter:
    return Counter(
        {
            row.outcome: row.n
            for row in Attempt.select(Attempt.outcome, fn.COUNT(Attempt.id).alias("n")).group_by(
                Attempt.outcome
            )
        }
    )


def event_count() -> int:
    return Event.select().count()
