"""Read queries for the CLI and the console. Text leaves the store here, cleaned once.

Every string that came from upstream passes through :func:`mrt_engine.text.clean` on its way
out, so no caller can forget it: views are safe to print to a terminal as plain text (they may
still contain ``[markup]``-like text, which a console must show literally).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from peewee import fn

from mrt_engine.store.models import (
    Alert,
    Attempt,
    Audit,
    Delivery,
    Event,
    PollMetric,
    RuleHitRow,
    SourceState,
)
from mrt_engine.text import clean

STATUSES = ("pending", "retrying", "sent", "dead")
_HEX = re.compile(r"^[0-9a-f]{6,64}$")


def _clean_json(value: Any) -> Any:
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, list):
        return [_clean_json(v) for v in value]
    if isinstance(value, dict):
        return {clean(str(k)): _clean_json(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class EventView:
    id: int
    fingerprint: str
    source: str
    source_key: str
    resource_type: str
    resource_id: str
    event_type: str
    event_id: str
    title: str
    summary: str
    url: str
    author: str
    labels: tuple[str, ...]
    occurred_at: datetime | None
    observed_at: datetime
    baseline: bool
    raw: dict[str, Any] | None = None

    @classmethod
    def of(cls, row: Event, with_raw: bool = False) -> EventView:
        return cls(
            id=row.id,
            fingerprint=row.fingerprint,
            source=row.source,
            source_key=clean(row.source_key),
            resource_type=row.resource_type,
            resource_id=clean(row.resource_id),
            event_type=row.event_type,
            event_id=clean(row.event_id),
            title=clean(row.title),
            summary=clean(row.summary),
            url=clean(row.url),
            author=clean(row.author),
            labels=tuple(clean(lb) for lb in (row.labels or [])),
            occurred_at=row.occurred_at,
            observed_at=row.observed_at,
            baseline=bool(row.baseline),
            raw=_clean_json(row.raw) if with_raw else None,
        )


@dataclass(frozen=True)
class HitView:
    rule: str
    action: str
    priority: int
    reason: str
    suppressed: bool
    origin: str
    evaluated_at: datetime

    @classmethod
    def of(cls, row: RuleHitRow) -> HitView:
        return cls(
            row.rule,
            row.action,
            row.priority,
            clean(row.reason),
            bool(row.suppressed),
            row.origin,
            row.evaluated_at,
        )


@dataclass(frozen=True)
class AlertView:
    id: int
    event_id: int
    rules: tuple[str, ...]
    priority: int
    tags: tuple[str, ...]
    origin: str
    created_at: datetime

    @classmethod
    def of(cls, row: Alert) -> AlertView:
        return cls(
            row.id,
            row.event_id,
            tuple(row.rules or []),
            row.priority,
            tuple(row.tags or []),
            row.origin,
            row.created_at,
        )


@dataclass(frozen=True)
class AttemptView:
    id: int
    delivery_id: int
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None
    outcome: str
    http_status: int | None
    reply: str | None
    error: str | None
    worker: str | None

    @classmethod
    def of(cls, row: Attempt) -> AttemptView:
        return cls(
            row.id,
            row.delivery_id,
            row.started_at,
            row.finished_at,
            row.duration_ms,
            row.outcome,
            row.http_status,
            clean(row.reply) if row.reply else None,
            clean(row.error) if row.error else None,
            row.worker,
        )


@dataclass(frozen=True)
class DeliveryView:
    id: int
    alert_id: int
    channel: str
    status: str
    attempts: int
    priority: int
    next_attempt_at: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    title: str = ""
    fingerprint: str = ""
    event_type: str = ""
    source_key: str = ""

    @classmethod
    def of(cls, row: Delivery, event: Event | None = None) -> DeliveryView:
        return cls(
            id=row.id,
            alert_id=row.alert_id,
            channel=row.channel,
            status=row.status,
            attempts=row.attempts,
            priority=row.priority,
            next_attempt_at=row.next_attempt_at,
            lease_owner=row.lease_owner,
            lease_expires_at=row.lease_expires_at,
            last_error=clean(row.last_error) if row.last_error else None,
            created_at=row.created_at,
            updated_at=row.updated_at,
            sent_at=row.sent_at,
            title=clean(event.title) if event else "",
            fingerprint=event.fingerprint if event else "",
            event_type=event.event_type if event else "",
            source_key=clean(event.source_key) if event else "",
        )


@dataclass(frozen=True)
class SourceView:
    source_key: str
    platform: str
    cursor: dict[str, Any] | None
    etag: str | None
    baseline_done: bool
    paused: bool
    poll_requested_at: datetime | None
    last_poll_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    consecutive_failures: int
    backoff_until: datetime | None
    next_poll_at: datetime | None
    rate_limit_remaining: int | None
    rate_limit_reset_at: datetime | None

    @classmethod
    def of(cls, row: SourceState) -> SourceView:
        return cls(
            source_key=clean(row.source_key),
            platform=row.platform,
            cursor=_clean_json(row.cursor),
            etag=clean(row.etag) if row.etag else None,
            baseline_done=bool(row.baseline_done),
            paused=bool(row.paused),
            poll_requested_at=row.poll_requested_at,
            last_poll_at=row.last_poll_at,
            last_success_at=row.last_success_at,
            last_error=clean(row.last_error) if row.last_error else None,
            last_error_at=row.last_error_at,
            consecutive_failures=row.consecutive_failures,
            backoff_until=row.backoff_until,
            next_poll_at=row.next_poll_at,
            rate_limit_remaining=row.rate_limit_remaining,
            rate_limit_reset_at=row.rate_limit_reset_at,
        )


@dataclass(frozen=True)
class DeliveryTrace:
    delivery: DeliveryView
    attempts: tuple[AttemptView, ...]


@dataclass(frozen=True)
class Trace:
    """fingerprint -> rule hits -> alert -> deliveries -> attempts."""

    event: EventView
    hits: tuple[HitView, ...]
    alert: AlertView | None
    deliveries: tuple[DeliveryTrace, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class AuditView:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    before: Any
    after: Any
    detail: str | None


def to_plain(value: Any) -> Any:
    """Views as JSON-ready data (datetimes as ISO strings)."""
    if hasattr(value, "__dataclass_fields__"):
        value = asdict(value)
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value


# ---------------------------------------------------------------------- sources
def describe_cursor(cursor: dict[str, Any] | None) -> str:
    """A cursor in one short line: a time cursor as is, a snapshot as its size and sweep time."""
    if not cursor:
        return "-"
    if isinstance(cursor.get("models"), dict):
        text = f"snapshot of {len(cursor['models'])} models"
        if cursor.get("swept_at"):
            text += f", swept {cursor['swept_at']}"
        if cursor.get("since"):
            text += f", since {cursor['since']}"
        return text
    return json.dumps(cursor, ensure_ascii=False, sort_keys=True)


def source_states() -> list[SourceView]:
    return [SourceView.of(r) for r in SourceState.select().order_by(SourceState.source_key)]


def source_state(source_key: str) -> SourceView | None:
    row = SourceState.get_or_none(SourceState.source_key == source_key)
    return SourceView.of(row) if row else None


# ---------------------------------------------------------------------- outbox
def outbox_counts() -> dict[str, dict[str, int]]:
    """``{channel: {status: n}}`` plus a ``"*"`` total."""
    out: dict[str, dict[str, int]] = {"*": {s: 0 for s in STATUSES}}
    query = Delivery.select(
        Delivery.channel, Delivery.status, fn.COUNT(Delivery.id).alias("n")
    ).group_by(Delivery.channel, Delivery.status)
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
            _clean_json(a.before),
            _clean_json(a.after),
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
