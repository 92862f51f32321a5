"""What the store's rows look like to the CLI and the console: plain, cleaned views.

Every string that came from upstream passes through :func:`mrt_engine.text.clean` here, on its
way out of the store, so no caller can forget it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from mrt_engine.store.models import (
    Alert,
    Attempt,
    Delivery,
    Event,
    Quarantine,
    RuleHitRow,
    SourceState,
)
from mrt_engine.text import clean


def clean_json(value: Any) -> Any:
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, list):
        return [clean_json(v) for v in value]
    if isinstance(value, dict):
        return {clean(str(k)): clean_json(v) for k, v in value.items()}
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
    body: str | None = None  # the whole text rules read as the summary, when longer

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
            raw=clean_json(row.raw) if with_raw else None,
            body=clean(row.body) if with_raw and row.body else None,
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
    silence_id: int | None = None  # the silence that stopped it (status silenced)

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
            silence_id=row.silence_id,
        )


@dataclass(frozen=True)
class QuarantineView:
    """An upstream item set aside because it could not be processed."""

    id: int
    source_key: str
    item_key: str
    error: str
    excerpt: str
    url: str
    first_seen_at: datetime
    last_seen_at: datetime
    times: int

    @classmethod
    def of(cls, row: Quarantine) -> QuarantineView:
        return cls(
            id=row.id,
            source_key=clean(row.source_key),
            item_key=clean(row.item_key),
            error=clean(row.error),
            excerpt=clean(row.excerpt),
            url=clean(row.url),
            first_seen_at=row.first_seen_at,
            last_seen_at=row.last_seen_at,
            times=row.times,
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
    quarantined: int = 0  # items of this source set aside, and the latest of them
    quarantine_latest: QuarantineView | None = None

    @classmethod
    def of(
        cls, row: SourceState, quarantined: int = 0, latest: QuarantineView | None = None
    ) -> SourceView:
        return cls(
            source_key=clean(row.source_key),
            platform=row.platform,
            cursor=clean_json(row.cursor),
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
            quarantined=quarantined,
            quarantine_latest=latest,
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


@dataclass(frozen=True)
class SilenceView:
    """A silence as shown: its matchers as ``field=value`` texts, its state at the time it
    was read (active, pending, expired) and how many deliveries it holds silenced."""

    id: int
    matchers: tuple[str, ...]
    starts_at: datetime
    ends_at: datetime
    author: str
    comment: str
    created_at: datetime
    created_by: str
    expired_at: datetime | None
    expired_by: str | None
    state: str
    silenced: int = 0


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
