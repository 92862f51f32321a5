"""Paged reads for the console's live views: one window of rows at a time, newest first.

A window is bounded by ids (``before_id`` for older rows, ``after_id`` for newer ones), so a view
of a store with millions of events reads a page by the primary key and never holds them all.
Text leaves the store cleaned, as in :mod:`mrt_engine.store.queries`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import datetime, timedelta

from peewee import JOIN, SQL, fn

from mrt_engine.store import search
from mrt_engine.store.models import (
    Alert,
    Delivery,
    DeliveryCount,
    Event,
    RuleHitCount,
    RuleHitRow,
    database,
)
from mrt_engine.store.queries import DeliveryView, deliveries
from mrt_engine.text import clean
from mrt_engine.timeutil import from_store

PAGE = 200


@dataclass(frozen=True)
class EventFilter:
    """What the Events view shows: words in the title, source, event type, matched or not.

    Written as ``deepseek source:github type:pr_* matched:yes`` (``matched:no`` for unmatched).
    A word matches any part of the title as shown, in any case (see
    :mod:`mrt_engine.store.search`).
    """

    text: str = ""
    source: str | None = None
    event_type: str | None = None
    matched: bool | None = None

    @classmethod
    def parse(cls, query: str) -> EventFilter:
        try:
            parts = shlex.split(query)
        except ValueError:
            parts = query.split()
        words: list[str] = []
        fields: dict[str, object] = {}
        for part in parts:
            key, sep, value = part.partition(":")
            key = key.lower()
            if sep and value and key in ("source", "type", "matched"):
                if key == "matched":
                    fields["matched"] = value.lower() in ("yes", "y", "true", "1")
                else:
                    fields["event_type" if key == "type" else "source"] = value
            else:
                words.append(part)
        return cls(text=" ".join(words), **fields)  # type: ignore[arg-type]

    def describe(self) -> str:
        parts = [repr(self.text)] if self.text else []
        if self.source:
            parts.append(f"source:{self.source}")
        if self.event_type:
            parts.append(f"type:{self.event_type}")
        if self.matched is not None:
            parts.append("matched:" + ("yes" if self.matched else "no"))
        return " ".join(parts)

    @property
    def active(self) -> bool:
        return bool(self.text or self.source or self.event_type or self.matched is not None)


@dataclass(frozen=True)
class EventRow:
    """One line of the Events view."""

    id: int
    observed_at: datetime
    source: str
    source_key: str
    event_type: str
    title: str
    url: str
    rules: tuple[str, ...]
    alert_id: int | None
    baseline: bool


def _window(query, model, before_id: int | None, after_id: int | None, limit: int):
    """Rows of ``query`` below ``before_id`` or above ``after_id``, newest first either way."""
    if after_id is not None:
        rows = list(query.where(model.id > after_id).order_by(model.id.asc()).limit(limit))
        rows.reverse()
        return rows
    if before_id is not None:
        query = query.where(model.id < before_id)
    return list(query.order_by(model.id.desc()).limit(limit))


def event_rows(
    flt: EventFilter | None = None,
    *,
    before_id: int | None = None,
    after_id: int | None = None,
    limit: int = PAGE,
) -> list[EventRow]:
    """A window of the event feed, newest first, with the rules that hit each event.

    A filter is answered by :func:`mrt_engine.store.search.matching_ids` (its indexes), never
    by reading the table row by row.
    """
    flt = flt or EventFilter()
    query = Event.select(
        Event.id,
        Event.observed_at,
        Event.source,
        Event.source_key,
        Event.event_type,
        Event.title,
        Event.url,
        Event.baseline,
    )
    if flt.active:
        # One snapshot for the search's several reads and the rows it found.
        with database.atomic():
            ids = search.matching_ids(
                flt,
                database.execute_sql,
                before_id=before_id,
                after_id=after_id,
                limit=limit,
                dialect=search.dialect_of(database),
            )
            rows = list(query.where(Event.id.in_(ids)).order_by(Event.id.desc())) if ids else []
            return _event_rows(rows)
    return _event_rows(_window(query, Event, before_id, after_id, limit))


def _event_rows(rows: list[Event]) -> list[EventRow]:
    """The rows as the Events view shows them, with the rules that hit each event."""
    ids = [r.id for r in rows]
    rules: dict[int, list[str]] = {}
    alerts: dict[int, int] = {}
    if ids:
        for hit in (
            RuleHitRow.select(RuleHitRow.event, RuleHitRow.rule, RuleHitRow.suppressed)
            .where(RuleHitRow.event.in_(ids))
            .order_by(RuleHitRow.id)
            .tuples()
        ):
            name = hit[1] + (" (suppressed)" if hit[2] else "")
            rules.setdefault(hit[0], []).append(name)
        for alert_id, event_id in (
            Alert.select(Alert.id, Alert.event).where(Alert.event.in_(ids)).tuples()
        ):
            alerts[event_id] = alert_id
    return [
        EventRow(
            id=r.id,
            observed_at=r.observed_at,
            source=r.source,
            source_key=clean(r.source_key),
            event_type=r.event_type,
            title=clean(r.title),
            url=clean(r.url),
            rules=tuple(rules.get(r.id, ())),
            alert_id=alerts.get(r.id),
            baseline=bool(r.baseline),
        )
        for r in rows
    ]


def delivery_rows(
    status: str | None = None,
    channel: str | None = None,
    *,
    before_id: int | None = None,
    after_id: int | None = None,
    limit: int = PAGE,
) -> list[DeliveryView]:
    """A window of the outbox, newest first."""
    return deliveries(status, channel, limit, before_id=before_id, after_id=after_id)


def channel_names() -> list[str]:
    """Every channel the outbox has rows for (from the outbox counters, not the outbox)."""
    query = (
        DeliveryCount.select(DeliveryCount.channel)
        .where(DeliveryCount.n != 0)
        .distinct()
        .order_by(DeliveryCount.channel)
    )
    return [r[0] for r in query.tuples()]


@dataclass(frozen=True)
class RuleStats:
    rule: str
    last_hour: int
    last_day: int
    total: int
    last_hit: datetime | None


def rule_stats(now: datetime) -> dict[str, RuleStats]:
    """Hit counts per rule name (suppressed hits included) for the last hour, day and ever.

    Ever comes from the counter that triggers keep; the last hour and day are ranges, and the
    last hit the end, of the index on (rule, evaluated_at): no read grows with the history.
    """
    hour, day = now - timedelta(hours=1), now - timedelta(days=1)
    hits = RuleHitRow.alias("h")

    def in_index(value, *where):
        return hits.select(value).where(hits.rule == RuleHitCount.rule, *where)

    query = RuleHitCount.select(
        RuleHitCount.rule,
        in_index(fn.COUNT(SQL("*")), hits.evaluated_at >= hour),
        in_index(fn.COUNT(SQL("*")), hits.evaluated_at >= day),
        RuleHitCount.n,
        in_index(fn.MAX(hits.evaluated_at)),
    ).where(RuleHitCount.n != 0)
    out: dict[str, RuleStats] = {}
    for rule, in_hour, in_day, total, last in query.tuples():
        out[rule] = RuleStats(rule, in_hour, in_day, total, from_store(last) if last else None)
    return out


def recent_events(limit: int = 5000) -> list[Event]:
    """The newest stored events (rows), for a rule dry run."""
    return list(Event.select().order_by(Event.id.desc()).limit(limit))


def event_for_delivery(delivery_id: int) -> int | None:
    """The id of the event a delivery's alert is about."""
    row = (
        Delivery.select(Alert.event)
        .join(Alert, JOIN.INNER)
        .where(Delivery.id == delivery_id)
        .tuples()
        .first()
    )
    return row[0] if row else None
